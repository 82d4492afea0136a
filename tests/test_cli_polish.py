"""The first hour's polish: plain `--help`, counts in the right number, `forget` of nobody,
read commands that neither create the data folder nor hide which one they read, one-line
setting errors."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, cli

COMMANDS = [
    (),
    ("init",),
    ("publish",),
    ("worker",),
    ("up",),
    ("forget",),
    ("query", "series"),
    ("query", "sessions"),
    ("query", "funnel"),
    ("query", "profile"),
    ("dlq", "list"),
]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_names_values_plainly(command: tuple[str, ...]) -> None:
    out = cli(*command, "--help", env={"COLUMNS": "100"}).stdout.decode()
    assert not re.search(r"<(bool|str|int|float|int range|float range|path)>", out), out


def test_up_workers_has_a_description() -> None:
    out = cli("up", "--help", env={"COLUMNS": "120"}).stdout.decode()
    line = next(line for line in out.splitlines() if "--workers" in line)
    assert "Worker processes to start." in line


def test_one_message_is_singular() -> None:
    cli("init")
    event = {"event_id": "e1", "user_id": "u1", "event_type": "login", "timestamp": 1.7e9}
    err = cli("publish", input=json.dumps(event).encode()).stderr.decode()
    assert "published 1 message to user-events" in err


def test_forgetting_nobody_says_nothing_was_found(tmp_path: Path) -> None:
    cli("init")
    out = cli("forget", "nobody_here", "--yes", env={"COLUMNS": "200"}).stdout.decode()
    assert out.startswith(f"nothing found for nobody_here in {tmp_path / 'data'}"), out
    # Forgetting someone twice: the second finds nothing, and says why it may be so.
    assert "an id forgotten before has nothing left" in " ".join(out.split()), out


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("query", "series"),
        ("query", "profile", "user_42"),
        ("query", "events", "-t", "purchase"),
        ("query", "sessions"),
        ("dlq", "list"),
        ("forget", "user_42", "--yes"),
    ],
)
def test_a_read_command_does_not_create_the_data_folder(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = cli(*command, env={"COLUMNS": "300"}, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 1, err
    assert err == (
        f"error: no data at {tmp_path / 'data'}: nothing was written there yet (run "
        "`behavioral-analytics init` there, or point BA_DATA_DIR at your data)"
    )
    assert not (tmp_path / "data").exists()


def test_a_missing_profile_names_the_data_it_looked_in(tmp_path: Path) -> None:
    cli("init")
    result = cli("query", "profile", "nobody", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 1
    assert f"no profile for user 'nobody' in {tmp_path / 'data'}" in result.stderr.decode()


@pytest.mark.slow
def test_a_user_seen_only_as_a_crawler_is_told_apart_from_one_never_seen(
    tmp_path: Path,
) -> None:
    """A headless browser's events are crawlers' (crawlerdetect): `query profile` said only
    "no profile", as for a user never seen, while `query timeline` listed the events."""
    headless = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36"
    )
    event = {"user_id": "web_b1", "event_type": "page_view", "properties": {"user_agent": headless}}
    cli("init")
    cli("publish", input=json.dumps(event).encode() + b"\n")
    cli("worker", "--until-idle")
    result = cli("query", "profile", "web_b1", env={"COLUMNS": "300"}, check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"error: no profile for user 'web_b1' in {tmp_path / 'data'}: every event of theirs "
        "(1 event) is flagged as a crawler's ($bot 'Headless'): counted apart (bot_events), "
        "never in a profile; `query timeline` lists them"
    )
    # Counted apart, and shown: the series table has a column for them (only --json had).
    table = cli("query", "series", "-g", "day", env={"COLUMNS": "300"}).stdout.decode()
    header, row = (line for line in table.splitlines() if "period" in line or "│ 20" in line)
    assert [c.strip() for c in header.strip("┃").split("┃")][:4] == [
        "period",
        "total",
        "unique users",
        "bots",
    ]
    assert [c.strip() for c in row.strip("│").split("│")][1:4] == ["0", "0", "1"]


def test_a_bad_funnels_setting_is_one_plain_line() -> None:
    result = cli("query", "series", env={"BA_FUNNELS": "{", "COLUMNS": "300"}, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: invalid BA_FUNNELS: not JSON (") and "expected a list" in err


def test_init_on_a_new_folder_says_it_created_the_topic_and_subscription(
    tmp_path: Path,
) -> None:
    first = cli("init", env={"COLUMNS": "300"}).stdout.decode()
    assert f"created the data folder {tmp_path / 'data'}" in first
    assert "topic user-events: created" in first
    assert "subscription analytics-processor on user-events: created" in first
    again = cli("init", env={"COLUMNS": "300"}).stdout.decode()
    assert "topic user-events: exists" in again and "created" not in again


def test_a_message_longer_than_the_console_stays_one_line_in_a_pipe(tmp_path: Path) -> None:
    """Piped, rich's console is 80 columns wide; a message is not broken at them (a log or
    a script reads it whole), and a table still fits them."""
    narrow = {"COLUMNS": "80"}
    lines = cli("init", env=narrow).stdout.decode().splitlines()
    [subscription] = [line for line in lines if "subscription analytics-processor" in line]
    assert len(subscription) > 80 and subscription.endswith("ordering off)"), lines
    out = cli("forget", "nobody_here", "--yes", env=narrow).stdout.decode()
    assert len(out.splitlines()) == 1 and len(out) > 80, out
    series = cli("query", "series", env=narrow).stdout.decode().splitlines()
    assert series and max(len(line) for line in series) <= 80, series


def test_help_flows_paragraphs_instead_of_breaking_at_source_lines() -> None:
    out = cli("--help", env={"COLUMNS": "250"}).stdout.decode()
    assert "one message per line (malformed lines included: the worker dead-letters" in out
    assert "ack. SIGTERM/SIGINT drain and exit within 8 s." in out


@pytest.mark.parametrize("command", ["loadtest", "generate"])
def test_via_http_without_a_collector_stops_at_once_with_one_line(command: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = cli(command, "--via", "http", "--url", url, "-n", "10", check=False)
    err = result.stderr.decode().strip()
    # loadtest: 2, the test could not run (1 is an event missing or counted twice).
    assert result.returncode == {"loadtest": 2, "generate": 1}[command], err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: no collector at {url} (Connection refused)"), err


@pytest.mark.parametrize("command", ["loadtest", "generate"])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("127.0.0.1:8080", "expected http://HOST[:PORT]"),
        ("ftp://127.0.0.1:21", "expected http://HOST[:PORT]"),
    ],
    ids=["port", "no-scheme", "scheme"],
)
def test_a_url_that_is_no_collector_address_is_a_usage_error(
    command: str, url: str, said: str
) -> None:
    result = cli(command, "--via", "http", "--url", url, "-n", "10", check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --url {url!r}: ") and said in err, err


def test_a_web_server_that_is_no_collector_is_named_in_one_line() -> None:
    """A plain web server at `--url` answers POST with a page of HTML: one line, not ten."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("generate", "--via", "http", "--url", url, "-n", "5", check=False)
    finally:
        server.shutdown()
        server.server_close()
    *progress, err = result.stderr.decode().strip().splitlines()  # the bar, then the error
    assert result.returncode == 2 and all("publishing" in line for line in progress), progress
    assert err.startswith(
        "error: POST /v1/events answered 501 (is the collector at this address?): <!DOCTYPE HTML>"
    ), err


def test_generate_counts_what_it_made_in_the_right_number() -> None:
    def summary(events: int) -> str:
        args = ("generate", "-n", str(events), "--seed", "3", "--start", "2026-12-01T00:00:00Z")
        return cli(*args, env={"COLUMNS": "200"}).stderr.decode().strip()

    assert summary(1).startswith("generated 1 message → stdout")
    assert summary(100).startswith("generated 100 messages, 1 duplicate → stdout")


def test_the_loadtest_docs_http_command_has_no_placeholder() -> None:
    docs = (REPO / "docs" / "loadtest.md").read_text()
    commands = [line for line in docs.splitlines() if "--via http" in line and "generate" in line]
    assert commands and all("…" not in line for line in commands)


@pytest.mark.slow
def test_generate_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    """`generate | head -1`: the reader closes the pipe after a line; the command stops with
    exit code 0 and says so, not an error about a broken pipe."""
    env = {**os.environ, "BA_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "behavioral_analytics.cli", "generate", "--events", "200000"]
    # No malformed lines (0.5 % by default, a random seed): the first line is then an event.
    command += ["--malformed-rate", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert json.loads(first)["event_type"]
    assert code == 0, stderr
    assert "generation stopped: the reader closed stdout" in stderr
    assert "Broken pipe" not in stderr and "error" not in stderr
