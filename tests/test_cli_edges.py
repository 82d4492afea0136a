"""The command line at its edges: a folder that holds no store is not turned into one by a
read, a setting is named as it was set, tables keep every figure and id whole at 80 columns,
and `config apply --json` says what it is about to change before it asks."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.test_readme import free_port

NARROW = {"COLUMNS": "80"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _ingest(*events: dict[str, object]) -> None:
    cli("init")
    cli("publish", input=b"".join(json.dumps(e).encode() + b"\n" for e in events))
    cli("worker", "--until-idle")


def test_a_read_in_a_folder_without_a_store_creates_none(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    result = cli("query", "series", "--json", env={"BA_DATA_DIR": str(folder)}, check=False)
    assert result.returncode == 1 and result.stdout == b""
    assert f"no data at {folder}: nothing was written there yet" in result.stderr.decode()
    assert list(folder.iterdir()) == []


def test_a_data_folder_that_is_a_file_is_called_one(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = cli("query", "profile", "u1", env={"BA_DATA_DIR": str(afile)}, check=False)
    assert result.returncode == 1
    assert f"BA_DATA_DIR {afile} is a file, not a folder" in result.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["init"], ["publish"], ["worker", "--until-idle"], ["api", "--port", "PORT"]]
)
@pytest.mark.parametrize("below", [False, True], ids=["the folder", "a parent"])
def test_commands_that_write_say_a_data_folder_is_a_file_in_one_line(
    tmp_path: Path, command: list[str], below: bool
) -> None:
    """Not `[Errno 17] File exists` (nor a traceback from `api`), and `init` does not say it
    created the folder first."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder = afile / "data" if below else afile
    command = [str(free_port()) if part == "PORT" else part for part in command]
    result = cli(*command, env={"BA_DATA_DIR": str(folder)}, input=b"", check=False)
    assert result.returncode == 1
    where = f"cannot be created: {afile} is a file" if below else "is a file"
    assert result.stderr.decode().splitlines() == [
        f"error: BA_DATA_DIR {folder} {where}, not a folder: point BA_DATA_DIR at your data"
    ]
    assert b"created" not in result.stdout


def test_an_empty_data_folder_setting_is_refused() -> None:
    result = cli("query", "series", env={"BA_DATA_DIR": ""}, check=False)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("error: invalid BA_DATA_DIR: empty")


def test_a_publish_without_a_worker_is_told_apart(tmp_path: Path) -> None:
    cli("publish", input=b'{"event_type": "login", "user_id": "u1"}\n')
    result = cli("dlq", "list", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 1
    assert f"no store at {tmp_path / 'data'} yet: no worker has run there" in (
        result.stderr.decode()
    )
    assert not (tmp_path / "data" / "store.db").exists()


def test_doctor_in_a_folder_without_a_store_creates_none(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = cli("doctor", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 1 and "no data at" in result.stderr.decode()
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("name", ["BA_API_PORT", "PORT", "ba_api_port", ".env BA_API_PORT"])
def test_a_refused_value_is_named_by_the_variable_that_set_it(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("BA_API_PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    if name.startswith(".env "):
        name = name.removeprefix(".env ")
        (tmp_path / ".env").write_text(f"{name}=abc\n")
        env = {}
    else:
        env = {name: "abc"}
    result = cli("query", "series", env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.decode().startswith(f"error: invalid {name.upper()}: ")


@pytest.mark.slow
def test_a_long_breakdown_value_wraps_and_every_figure_shows() -> None:
    long_page = "/p/" + "x" * 170
    _ingest(
        {"event_type": "page_view", "user_id": "u1", "timestamp": _now(),
         "properties": {"page_url": f"https://example.com{long_page}"}},
        {"event_type": "page_view", "user_id": "u2", "timestamp": _now(),
         "properties": {"page_url": "https://example.com/short"}},
    )  # fmt: skip
    out = cli("query", "breakdown", "page", env=NARROW).stdout.decode()
    rows = [line for line in out.splitlines() if "/p/" in line or "/short" in line]
    for row in rows:  # value, events, share, unique users, sessions
        assert [cell.strip() for cell in row.strip("│ ").split("│")][1:] == ["1", "50.0%", "1", "1"]
    assert "".join(line.split("│")[1].strip() for line in out.splitlines()[4:-3]).count("x") == 170
    # Narrower than the figures' headers: they wrap, whole, rather than being cut.
    narrow = cli("query", "breakdown", "page", env={"COLUMNS": "34"}).stdout.decode()
    page, events, share, users, sessions = _columns(narrow)
    assert page.count("x") == 170 and "/short" in page and page.endswith("total")
    assert (events, share, users, sessions) == ("112", "50.0%50.0%", "11", "112")


def _columns(table: str) -> list[str]:
    """Each column's text, its cells' lines joined, top to bottom (a wrapped cell reads whole)."""
    rows = [line.split("│")[1:-1] for line in table.splitlines() if line.startswith("│")]
    return ["".join(cell.strip() for cell in column) for column in zip(*rows, strict=True)]


@pytest.mark.slow
def test_identity_links_show_whole_ids_at_80_columns() -> None:
    anonymous, user = "anon-0123456789abcdef0123456789", "user-abcdef0123456789abcdef012345"
    _ingest({"event_type": "identify", "anonymous_id": anonymous, "user_id": user,
             "timestamp": _now()})  # fmt: skip
    out = cli("query", "links", user, env=NARROW).stdout.decode()
    columns = _columns(out)
    assert columns[0] == anonymous and columns[1] == user and "…" not in out


@pytest.mark.slow
def test_cut_properties_end_in_an_ellipsis() -> None:
    _ingest({"event_type": "page_view", "user_id": "u1", "timestamp": _now(),
             "properties": {"page_url": "https://example.com/" + "y" * 200}})  # fmt: skip
    out = cli("query", "timeline", "u1", env={"COLUMNS": "300"}).stdout.decode()
    (row,) = [line for line in out.splitlines() if "page_view" in line]
    assert row.split("│")[-2].strip().endswith("…")


@pytest.mark.slow
def test_json_apply_says_what_it_would_change_before_asking() -> None:
    _ingest({"event_type": "login", "user_id": "u1", "timestamp": _now()})
    env = {"BA_TIMEZONE": "Europe/Paris", "COLUMNS": "200"}
    asked = cli("config", "apply", "--json", env=env, input=b"n\n", check=False)
    assert asked.returncode == 1 and asked.stdout == b""
    err = asked.stderr.decode()
    assert err.index("will change timezone: UTC") < err.index("Record these values")
    applied = cli("config", "apply", "--json", "--yes", env={"BA_TIMEZONE": "Asia/Tokyo"})
    assert "will change" not in applied.stderr.decode()
    assert json.loads(applied.stdout)["applied"] is True


@pytest.mark.slow
def test_a_funnel_the_environment_adds_is_said_to_need_recording() -> None:
    _ingest({"event_type": "login", "user_id": "u1", "timestamp": _now()})
    funnels = json.dumps([{"name": "signup", "steps": ["page_view", "signup"]}])
    result = cli("query", "funnel", "signup", env={"BA_FUNNELS": funnels, "COLUMNS": "300"},
                 check=False)  # fmt: skip
    assert result.returncode == 1
    assert "funnel 'signup' is in BA_FUNNELS but the store has not recorded it" in (
        result.stderr.decode()
    )


def test_a_blank_group_id_is_refused_as_user_ids_are() -> None:
    result = cli("query", "group", " ", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 2
    assert "group id ' ': expected a group id that is not empty or blank" in result.stderr.decode()


def test_an_unreadable_env_line_is_named_once_with_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text('BA_TIMEZONE="UTC\nBA_SESSION_GAP=30\n')
    cli("init")
    err = cli("query", "series", env={"COLUMNS": "300"}).stderr.decode()
    assert err.count("line 1 is not NAME=value") == 1
    assert f"warning: {tmp_path / '.env'} line 1 is not NAME=value: ignored" in err
    assert "python-dotenv" not in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("-g", "hour", "--to", "9999-12-31"),
         "--from/--to: '9999-12-31' ends past the last instant that can be named"),
        (("-g", "day", "--from", "1970-01-01", "--to", "9999-12-31", "--compare"),
         "--compare: the comparison of 1970-01-01..9999-12-31 would start before year 1000"),
        (("-g", "day", "--from", ""), "--from/--to: '' is neither a period label"),
        (("-g", "day", "--to", ""), "--from/--to: '' is neither a period label"),
    ],
)  # fmt: skip
def test_bounds_past_the_named_years_are_one_line(args: tuple[str, ...], said: str) -> None:
    cli("init")
    result = cli("query", "series", *args, env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 2 and result.stderr.decode().startswith(f"error: {said}")
    assert "Traceback" not in result.stderr.decode()


def test_forget_before_any_worker_erases_the_waiting_messages(tmp_path: Path) -> None:
    cli("publish", input=b'{"event_type": "login", "user_id": "u9"}\n')
    out = cli("forget", "u9", "--yes", "--json").stdout
    assert json.loads(out)["broker_messages_deleted"] == 1
    assert (tmp_path / "data" / "store.db").exists()  # where its tombstone is kept


def test_an_env_file_that_is_no_text_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"\xff\xfe\n")
    result = cli("query", "series", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"error: {tmp_path / '.env'} is not UTF-8 text (byte 0): fix or remove it\n"
    )


def _letters(lines: bytes) -> None:
    cli("init")
    cli("publish", input=lines)
    cli("worker", "--until-idle")


@pytest.mark.slow
def test_a_dead_letter_never_drives_the_terminal() -> None:
    _letters(b"bad \x1b[2J\x1b]0;pwned\x07 \x1b[31mRED\x00\n")
    for columns in ("80", "200"):
        out = cli("dlq", "list", env={"COLUMNS": columns}).stdout.decode()
        assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
        assert "\\x1b[2J" in out.replace("\n", "").replace("│", "").replace(" ", "")


@pytest.mark.slow
def test_cut_dead_letter_cells_say_so() -> None:
    _letters(json.dumps({"event_type": "x", "note": "y" * 300}).encode() + b"\n")
    out = cli("dlq", "list", env={"COLUMNS": "200"}).stdout.decode()
    assert "…" in out  # the data, cut at 60 characters


@pytest.mark.slow
def test_purge_counts_in_the_right_number_on_one_line() -> None:
    _letters(b"not json\n")
    result = cli("dlq", "purge", "--older-than-days", "0", "--yes", env={"COLUMNS": "300"})
    assert result.stdout.decode() == "purged 1 dead letter (so far, by reason: not_json 1)\n"


@pytest.mark.slow
def test_purging_letters_before_their_retention_asks_first() -> None:
    _letters(b"not json\n")
    refused = cli("dlq", "purge", "--older-than-days", "0", input=b"", check=False)  # no answer
    assert refused.returncode == 1
    assert "1 dead letter held. Purge every one recorded more than 0 days ago" in (
        refused.stderr.decode()
    )
    assert "nothing was changed" in refused.stderr.decode()
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 1
    declined = cli("dlq", "purge", "--older-than-days", "0", input=b"n\n", check=False)
    assert declined.returncode == 1
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 1
    assert json.loads(cli("dlq", "purge", "--json").stdout)["purged"] == 0  # the expired: asks not
    beyond = cli("dlq", "purge", "--older-than-days", "400", "--json", input=b"")
    assert json.loads(beyond.stdout)["purged"] == 0 and "Purge" not in beyond.stderr.decode()
    answered = cli("dlq", "purge", "--older-than-days", "0", "--json", input=b"y\n")
    assert json.loads(answered.stdout)["purged"] == 1


@pytest.mark.slow
def test_a_question_on_a_closed_stdin_changes_nothing() -> None:
    _letters(b"not json\n")
    command = f"{shlex.quote(sys.executable)} -m behavioral_analytics.cli dlq purge "
    result = subprocess.run(
        ["bash", "-c", command + "--older-than-days 0 <&-"], capture_output=True, timeout=120
    )
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 1


@pytest.mark.slow
def test_an_id_named_twice_is_replayed_once() -> None:
    _letters(b"not json\n")
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    result = cli("dlq", "replay", "--id", letter["id"], "--id", letter["id"])
    assert "replayed 1 dead letter" in result.stderr.decode()


@pytest.mark.slow
def test_replaying_a_replayed_letter_says_so() -> None:
    _letters(b"not json\n")
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    first = cli("dlq", "replay", "--id", letter["id"], env={"COLUMNS": "300"})
    assert "was replayed already" not in first.stderr.decode()
    again = cli("dlq", "replay", "--id", letter["id"], env={"COLUMNS": "300"})
    assert f"dead letter {letter['id']} was replayed already" in again.stderr.decode()


@pytest.mark.slow
def test_a_clients_text_in_a_table_is_never_markup() -> None:
    page = "https://example.com/c/[/z]/[link=https://evil.example]x[/link]/[id]"
    _ingest({"event_type": "page_view", "user_id": "u[1]", "timestamp": _now(),
             "properties": {"page_url": page}})  # fmt: skip
    _letters(b"bad [/z] [link=https://evil.example]x[/link]\n")
    out = cli("query", "breakdown", "page", env={"COLUMNS": "300"}).stdout.decode()
    assert "/c/[/z]/[link=https://evil.example]x[/link]/[id]" in out
    listed = cli("dlq", "list", env={"COLUMNS": "200"}).stdout.decode()
    assert "\x1b" not in listed
    data = _columns(listed)[5]  # id, recorded, source, reason, detail, data, replayed
    assert data == "bad [/z] [link=https://evil.example]x[/link]"
    timeline = cli("query", "timeline", "u[1]", env={"COLUMNS": "300"}).stdout.decode()
    assert "u[1]" in timeline


@pytest.mark.slow
def test_a_clients_text_in_a_tables_title_or_header_is_never_markup() -> None:
    who, kind = "u[/z]:smile:", "[bold]signup[/bold]:thumbs_up:"
    _ingest({"event_type": kind, "user_id": who, "timestamp": _now()})
    profile = cli("query", "profile", who, env={"COLUMNS": "300"}).stdout.decode()
    assert f"profile {who}" in profile and f"  {kind}" in profile
    series = cli("query", "series", "--granularity", "minute", env={"COLUMNS": "300"})
    assert kind in series.stdout.decode()
    links = cli("query", "links", who, env={"COLUMNS": "300"}).stdout.decode()
    assert f"identity links of {who}" in links


@pytest.mark.slow
def test_a_clients_text_in_a_message_is_never_markup() -> None:
    who, group = "u[/z]:smile:", "g[/z][bold]"
    _ingest(
        {"event_type": "group", "call": "group", "user_id": who, "timestamp": _now(),
         "properties": {"groupId": group, "traits": {"plan": "[red]pro"}}},
        {"event_type": "[/z]signup", "user_id": who, "timestamp": _now()},
    )  # fmt: skip
    shown = cli("query", "group", group, env={"COLUMNS": "300"}).stdout.decode()
    assert f"group {group}: 1 member" in shown and f"members: {who}" in shown
    assert "[red]pro" in shown
    retention = cli("query", "retention", "--start-event", "[/z]none", env={"COLUMNS": "300"})
    assert "nobody" in retention.stdout.decode() and "[/z]none" in retention.stdout.decode()
    forgot = cli("forget", who, "--yes", env={"COLUMNS": "300"}).stdout.decode()
    assert f"forgot {who}:" in forgot
    assert "Traceback" not in forgot


@pytest.mark.slow
def test_bounds_are_read_in_the_zone_the_store_recorded() -> None:
    """From a plain shell (no BA_TIMEZONE), a label the store wrote in its own zone names its
    period: New York's repeated hour `…-01b` (06:30Z is 01:30 EST, the second pass)."""
    old = {"BA_MAX_EVENT_AGE_DAYS": "3000", "BA_RAW_RETENTION_DAYS": "3100"}
    event = {"event_id": "e1", "user_id": "u", "event_type": "visit"}
    lines = b"".join(
        json.dumps({**event, "event_id": f"e{i}", "timestamp": at}).encode() + b"\n"
        for i, at in enumerate(("2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"))
    )
    york = {**old, "BA_TIMEZONE": "America/New_York"}
    cli("init", env=york)
    cli("publish", input=lines, env=york)
    cli("worker", "--until-idle", env=york)
    span = ("--from", "2026-11-01-01b", "--to", "2026-11-01-01b", "--json")
    points = json.loads(cli("query", "series", *span, env=old).stdout)["points"]
    assert [(p["period"], p["total_events"]) for p in points] == [("2026-11-01-01b", 1)]
    sessions = json.loads(cli("query", "sessions", "--json", env=old).stdout)
    assert sessions["timezone"] == "America/New_York"


def test_the_data_folder_init_creates_is_its_owners_alone(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "data"
    cli("init", env={"BA_DATA_DIR": str(folder)})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
