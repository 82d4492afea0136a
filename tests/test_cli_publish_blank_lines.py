"""`publish` publishes every line, blank ones too (docs/cli.md: "one message per line
(malformed lines too)"): the worker rejects a blank one as `empty_message` and keeps it as a
dead letter, so nothing is dropped without a trace. They were skipped without a word (six
lines, two blank: `published 4 messages`). The newline ending the input is not a line."""

from __future__ import annotations

import json
import uuid

import pytest

from behavioral_analytics.cli.pipeline import EMPTY_LINE
from tests.conftest import cli
from tests.emulators import Emulators

GOOD = b'{"user_id": "u%d", "event_type": "page_view"}'


@pytest.mark.slow
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_blank_lines_are_published_and_dead_lettered_as_empty_messages(ending: bytes) -> None:
    lines = [GOOD % 1, b"", GOOD % 2, b"   \t", GOOD % 3, GOOD % 4]
    cli("init")
    published = cli("publish", input=ending.join(lines) + ending)
    assert "published 6 messages" in published.stderr.decode()
    cli("worker", "--until-idle")
    letters = json.loads(cli("dlq", "list", "--json").stdout)
    assert letters["total"] == 2
    assert sorted(d["reason"] for d in letters["items"]) == ["empty_message", "empty_message"]
    assert sorted(d["attributes"].get(EMPTY_LINE) for d in letters["items"]) == ["2", "4"]
    for n in range(1, 5):
        assert cli("query", "profile", f"u{n}", check=False).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 160], ids=["blocks", "table"])
def test_dlq_list_shows_the_input_line_of_an_empty_one(columns: int) -> None:
    """The line number an empty line carries (`ba_empty_line`) was in `dlq list --json` only:
    the text shows it too, as `input line`, in the blocks of a narrow terminal (80 columns,
    none wider) as in the table."""
    cli("init")
    cli("publish", input=b"\n".join([GOOD % 1, b"\xff no utf8", b"", GOOD % 3, b" \t ", b"{"]))
    cli("worker", "--until-idle")
    out = cli("dlq", "list", env={"COLUMNS": str(columns)}).stdout.decode()
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns, out
    # Data that would print as nothing or as whitespace says what it is.
    assert "(blank: 3 bytes)" in out, out
    assert "(empty)" in out, out
    assert "\\xff no utf8" in out, out  # its bytes, not a replacement character
    if columns < 140:
        shown = [line.strip() for line in lines if "input line" in line]
        assert shown == ["input line: 5", "input line: 3"], out  # newest first
        data = [line.strip() for line in lines if line.strip().startswith("data:")]
        assert data == [
            "data: {",
            "data: (blank: 3 bytes)",
            "data: (empty)",
            "data: \\xff no utf8",
        ], out
        assert sum("reason: not_json" in line for line in lines) == 1, out
        # A detail is wrapped, not cut: its end says what to do (RFC 8259's rule here).
        flat = " ".join(out.split())
        assert "…" not in " ".join(line for line in lines if "detail:" in line), out
        assert "RFC 8259" in flat, out
    else:
        (header,) = [line for line in lines if " reason " in line]
        assert "input line" in header, out
        rows = [line.split("│") for line in lines if "empty_message" in line]
        column = [cell.strip() for cell in header.split("┃")].index("input line")
        assert [row[column].strip() for row in rows] == ["5", "3"], out


@pytest.mark.slow
def test_the_final_newline_is_not_a_line_and_a_last_line_without_one_is() -> None:
    cli("init")
    assert "published 2 messages" in cli("publish", input=GOOD % 1 + b"\n\n").stderr.decode()
    assert "published 1 message " in cli("publish", input=GOOD % 2).stderr.decode()
    assert "published 0 messages" in cli("publish", input=b"").stderr.decode()


@pytest.mark.gcp
def test_an_empty_line_is_published_to_pubsub_with_its_line_number(
    emulators: Emulators, database: str
) -> None:
    """Pub/Sub refuses a message with neither data nor attributes ("Some messages are
    empty"), and the whole batch with it: an empty line carries `ba_empty_line`, and a blank
    one too, so that `dlq list` says where each was."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **emulators.env(),
        "BA_BACKEND": "gcp",
        "BA_METRICS_EXPORTER": "none",
        "FIRESTORE_DATABASE": database,
        "PUBSUB_TOPIC": f"user-events-{tag}",
        "PUBSUB_SUBSCRIPTION": f"analytics-processor-{tag}",
    }
    cli("init", env=env)
    published = cli("publish", env=env, input=b"\n".join([GOOD % 1, b"", b"  ", GOOD % 2]))
    assert "published 4 messages" in published.stderr.decode()
    cli("worker", "--until-idle", env=env)
    letters = json.loads(cli("dlq", "list", "--json", env=env).stdout)["items"]
    assert sorted(d["reason"] for d in letters) == ["empty_message", "empty_message"]
    assert sorted(d["attributes"].get(EMPTY_LINE, "-") for d in letters) == ["2", "3"]


@pytest.mark.slow
def test_a_line_nested_too_deep_for_the_decoder_is_published_with_the_rest() -> None:
    """`publish` counted the lines that are no JSON object with a decoder that recursed past
    Python's limit on 1,000 nested arrays: a traceback, and the good lines before it unsent.
    The line is an object at its top; the worker dead-letters it as `too_deep`."""
    deep = b'{"user_id": "u9", "event_type": "x", "properties": {"a": ' + b"[" * 5000
    deep += b"]" * 5000 + b"}}"
    lines = [GOOD % 1, GOOD % 2, deep, GOOD % 3]
    cli("init")
    published = cli("publish", input=b"\n".join(lines) + b"\n")
    assert published.stderr.decode().startswith("published 4 messages"), published.stderr
    assert "not a JSON object" not in published.stderr.decode()
    cli("worker", "--until-idle")
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    assert letter["reason"] == "too_deep", letter
    series = json.loads(cli("query", "series", "-g", "day", "--json").stdout)
    assert sum(point["total_events"] for point in series["points"]) == 3, series
