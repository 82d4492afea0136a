"""A new user's trial: `query profile --json` of nobody prints only the error, a bad `--cursor`
is a usage error, a missing `publish` file is one plain line, the retention error's numbers
add up, `up` with stdout in a file says where the dashboard is at once, an empty listing says
under its table that nothing was found (and where a visitor's events are), `publish` says which
lines are no JSON object, and a folder whose store is another program's gets no broker file."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from behavioral_analytics.cli.errors import user_errors
from behavioral_analytics.settings import ConfigError, load_settings, unknown_names
from tests.conftest import cli, wait_until

WIDE = {"COLUMNS": "300"}
UP_ARGS = ("--workers", "1", "--rate", "0", "--port")


def test_a_missing_profile_with_json_prints_only_the_error() -> None:
    cli("init")
    result = cli("query", "profile", "nobody", "--json", env=WIDE, check=False)
    assert result.returncode == 1
    assert result.stdout == b""
    assert "no profile for user 'nobody'" in result.stderr.decode()


@pytest.mark.slow
def test_a_folder_whose_store_is_another_programs_gets_no_broker_file(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    with sqlite3.connect(folder / "store.db") as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    for command in (("worker", "--until-idle"), ("init",)):
        refused = cli(*command, env=WIDE, check=False)
        err = refused.stderr.decode().strip()
        assert refused.returncode == 1, err
        assert "is a SQLite file but not a behavioral-analytics store" in err, err
        assert sorted(p.name for p in folder.iterdir()) == ["store.db"]


def test_publishing_a_pretty_printed_file_says_its_lines_are_not_events() -> None:
    """Each line is a message, as documented; a note says which ones no worker takes as an
    event, where before nothing did until `dlq list`."""
    pretty = b'{\n  "event_type": "page_view",\n  "user_id": "u1"\n}\n'
    err = cli("publish", input=pretty, env=WIDE).stderr.decode().strip().splitlines()
    assert err[0].startswith("published 4 messages to user-events")
    assert err[1].startswith(
        "note: 4 lines of the input are not a JSON object: publish takes one event per line (NDJSON"
    ), err
    good = b'{"event_type": "page_view", "user_id": "u1"}\n\n[1]\n'
    err = cli("publish", input=good, env=WIDE).stderr.decode().strip().splitlines()
    assert len(err) == 2 and err[1].startswith("note: 1 line of the input is not"), err
    # A number past 64-bit floats is refused by the worker (`invalid_number`), not by this note.
    huge = b'{"event_type": "page_view", "user_id": "u1", "properties": {"x": 1e400}}\n'
    err = cli("publish", input=huge, env=WIDE).stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("published 1 message"), err


@pytest.mark.slow
def test_an_empty_listing_says_so_under_its_table() -> None:
    cli("init")
    cli("publish", input=b'{"anonymous_id": "dev-A", "event_type": "page_view"}\n')
    cli("worker", "--until-idle")

    def last_line(*args: str) -> str:
        return cli(*args, env=WIDE).stdout.decode().strip().splitlines()[-1]

    assert last_line("query", "timeline", "nobody") == "no events of 'nobody'"
    assert last_line("query", "timeline", "dev-A") == (
        "no events of 'dev-A'; the anonymous id 'dev-A' has some: `query timeline anonymous:dev-A`"
    )
    visitor = cli("query", "timeline", "anonymous:dev-A", env=WIDE).stdout.decode()
    assert "page_view" in visitor and "no events" not in visitor
    profile = cli("query", "profile", "dev-A", env=WIDE, check=False)
    assert profile.returncode == 1 and profile.stderr.decode().endswith(
        "; the anonymous id 'dev-A' has some: `query profile anonymous:dev-A`\n"
    )
    assert last_line("query", "events", "--type", "Page_View") == (
        "no 'Page_View' events (types match exactly, case included)"
    )
    assert last_line("query", "links", "nobody") == "no identity links of 'nobody'"
    # The hint is a command to paste: an id with a space is quoted.
    cli("publish", input=b'{"anonymous_id": "a b", "event_type": "page_view"}\n')
    cli("worker", "--until-idle")
    assert last_line("query", "timeline", "a b").endswith("`query timeline 'anonymous:a b'`")
    # --json stays the document alone.
    assert cli("query", "timeline", "nobody", "--json").stdout.decode().strip().startswith("{")
    # An anonymous id whose events count for the user it signed in as names that user.
    signed_in = b'{"anonymous_id": "dev-A", "user_id": "ann", "event_type": "identify"}\n'
    cli("publish", input=signed_in)
    cli("worker", "--until-idle")
    linked = (
        "; the anonymous id 'dev-A' is linked to user 'ann', and its events count for them: "
        "`query {} ann` (`query links anonymous:dev-A`)"
    )
    assert last_line("query", "timeline", "dev-A") == "no events of 'dev-A'" + linked.format(
        "timeline"
    )
    gone = cli("query", "profile", "anonymous:dev-A", env=WIDE, check=False)
    assert gone.returncode == 1 and gone.stderr.decode().endswith(linked.format("profile") + "\n")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [("query", "timeline", "bob"), ("query", "events", "--type", "page_view"), ("dlq", "list")],
)
def test_a_malformed_cursor_is_a_usage_error_naming_the_option(command: tuple[str, ...]) -> None:
    cli("init")
    result = cli(*command, "--cursor", "garbage", env=WIDE, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2, err
    assert len(err.splitlines()) == 1 and "--cursor 'garbage'" in err
    assert result.stdout == b""


def test_publishing_a_missing_file_is_one_plain_line(tmp_path: Path) -> None:
    result = cli("publish", str(tmp_path / "nosuchfile.ndjson"), env=WIDE, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2, err
    assert err == f"error: cannot read {tmp_path / 'nosuchfile.ndjson'}: no such file or directory"
    # Refused before the broker was opened: no data folder was made for nothing.
    assert not (tmp_path / "data").exists()


def test_the_retention_error_separates_the_total_from_the_reach_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BA_MAX_EVENT_AGE_DAYS", "40")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "BA_RAW_RETENTION_DAYS=30 is shorter than the 41.0208 d it needs" in message
    # The default session cap (24 h) plus its gap (30 min): 1.0208 d back, not 41.
    assert "(BA_MAX_EVENT_AGE_DAYS=40)" in message and "reach back (1.0208 d)" in message
    assert len(message.splitlines()) == 1


def test_up_with_stdout_in_a_file_names_the_dashboard_at_once(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out_path = tmp_path / "up_out.txt"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "behavioral_analytics.cli", "up", *UP_ARGS, str(port)],
            env={**os.environ, **WIDE},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        address = f"dashboard http://127.0.0.1:{port}/"
        wait_until(lambda: address in out_path.read_text(), 60, "the dashboard's address")
        assert proc.poll() is None, "the address must be there while up runs, not at its exit"
        assert f"logs {tmp_path / 'data' / 'up.log'}" in out_path.read_text()
    finally:
        # Ctrl-C, so that `up` stops its worker and API too (a kill would orphan them).
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_misspelt_setting_is_a_warning_naming_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("BA_SESION_GAP=10\nBA_TIMEZONE=UTC\n")
    environ = {"BA_FLUSH_INTERVAL": "1", "BA_WRITE_KEY": "k", "BA_ZZZ": "1", "HOME": "/"}
    assert unknown_names(environ) == ["BA_SESION_GAP (did you mean BA_SESSION_GAP?)", "BA_ZZZ"]
    cli("init")
    shown = cli("config", "show", env={**WIDE, "BA_TIMEZON": "UTC"})
    warnings = shown.stderr.decode().splitlines()
    assert warnings == [
        "warning: BA_SESION_GAP (did you mean BA_SESSION_GAP?) is not a setting: ignored",
        "warning: BA_TIMEZON (did you mean BA_TIMEZONE?) is not a setting: ignored",
    ]


@pytest.mark.parametrize("database", ["Bad DB!", "ab", "UPPER", "1abc", "abc-"])
def test_a_firestore_database_id_firestore_refuses_is_a_configuration_error(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused when the settings load (exit 2, as every wrong setting), by Firestore's rule:
    the emulator took such ids and answered with errors that had no message."""
    monkeypatch.setenv("FIRESTORE_DATABASE", database)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert f"FIRESTORE_DATABASE: {database!r} is not a valid Firestore database id" in message
    assert "4 to 63 characters" in message


@pytest.mark.parametrize("database", ["(default)", "behavioral-analytics", "test-0a1b2c3d4e"])
def test_valid_firestore_database_ids_load(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_DATABASE", database)
    assert load_settings().firestore_database == database


def test_a_google_client_error_an_adapter_let_through_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Firestore read at query time retried by the library until its deadline ended in a
    `RetryError` traceback."""
    google_exceptions = pytest.importorskip("google.api_core.exceptions")
    cause = google_exceptions.ServiceUnavailable("failed to connect to all addresses")
    with pytest.raises(typer.Exit) as exited, user_errors():
        raise google_exceptions.RetryError("Timeout of 300.0s exceeded", cause)
    assert exited.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: Google Cloud RetryError: Timeout of 300.0s exceeded, last exception: 503 failed "
        "to connect to all addresses"
    )
    with pytest.raises(ValueError), user_errors():
        raise ValueError("a bug is still a traceback")
