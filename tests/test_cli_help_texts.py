"""Every option of every command and subcommand says what it does in `--help` (so a new option
without a help text fails here); the texts a user's trial found vague say what docs/cli.md
says; and `query events --type ''` is refused as `query retention --start-event ''` is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from behavioral_analytics.cli import app, behavior, breakdown, query
from behavioral_analytics.cli.help_text import plain_metavars
from tests.conftest import cli

WIDE = {"COLUMNS": "300"}


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under `command` (a click command built by typer), with its path."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


ROOT = plain_metavars(typer.main.get_command(app))
COMMANDS = list(_commands(ROOT))


def test_the_walk_finds_every_command_group() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"worker", "publish", "dlq list", "query series", "query events", "up"} <= paths
    assert len(paths) > 25


@pytest.mark.parametrize(
    "command", [c for _, c in COMMANDS], ids=[" ".join(p) or "(root)" for p, _ in COMMANDS]
)
def test_every_option_has_a_help_text(command: Any) -> None:
    missing = [
        "/".join(param.opts)
        for param in command.get_params(command.context_class(command))
        if param.param_type_name == "option" and not (param.help or "").strip()
    ]
    assert missing == [], f"options without a help text: {missing}"


def _help(*args: str) -> str:
    """`--help` of the command at `args` as one line: its panels' borders and line breaks
    (where a text wraps) taken out."""
    said = cli(*args, "--help", env=WIDE).stdout.decode()
    return " ".join(said.replace("│", " ").split())


def test_dlq_list_cursor_says_where_it_comes_from() -> None:
    assert "--cursor CURSOR From a previous page's next_cursor" in _help("dlq", "list")


def test_worker_until_idle_says_what_docs_cli_says() -> None:
    said = _help("worker")
    assert "Exit once the subscription is drained" not in said
    assert "Exit once every message published before it started is acked" in said


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (
            ("query", "series"),
            [
                "Default: every stored period",
                "with --filter: the last 1 hour (minute), 48 hours (hour) or 30 days (day)",
            ],
        ),
        (("query", "sessions"), ["Default: every stored period", "with --filter: the last 30"]),
        (
            ("query", "breakdown"),
            ["Default: every stored period", "with --filter: the last 48 hours (hour) or 7 days"],
        ),
    ],
)
def test_ranged_queries_state_their_default_range(
    command: tuple[str, ...], defaults: list[str]
) -> None:
    # The windows the texts name (change a text with its window).
    hour, day = 3600.0, 86400.0
    series_windows, breakdown_windows = query._FILTERED_WINDOWS_S, breakdown._DEFAULT_WINDOWS_S
    assert series_windows == {"minute": hour, "hour": 48 * hour, "day": 30 * day}
    assert breakdown_windows == {"hour": 48 * hour, "day": 6 * day}  # 7 days with today
    assert behavior.DEFAULT_DAYS == 30
    said = _help(*command)
    for default in defaults:
        assert default in said, said


@pytest.mark.slow
@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_event_type_is_refused_as_a_blank_start_event_is(blank: str) -> None:
    cli("init")
    retention = cli("query", "retention", "--start-event", blank, env=WIDE, check=False)
    events = cli("query", "events", "--type", blank, env=WIDE, check=False)
    assert (retention.returncode, events.returncode) == (2, 2)
    assert events.stdout == b""
    lines = events.stderr.decode().strip().splitlines()
    assert lines == [
        f"error: event type {blank!r} is blank: expected an event type of 1 to 128 characters, "
        "not blank"
    ]
    # The same for `query series --type`, which would count no events of a blank type.
    series = cli("query", "series", "--type", blank, env=WIDE, check=False)
    assert series.returncode == 2
    assert series.stderr.decode().strip().splitlines() == lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("query", "profile"),
        ("query", "timeline"),
        ("query", "links"),
        ("forget", "--yes"),
    ],
    ids=["profile", "timeline", "links", "forget"],
)
def test_a_blank_user_id_is_a_usage_error_not_a_missing_user(command: tuple[str, ...]) -> None:
    """No event has an empty or blank user id: `query profile ""` said there was no profile
    for user '' and exited 1, as for a user not seen yet."""
    cli("init")
    for blank in ("", " "):
        result = cli(*command, blank, env=WIDE, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.decode().strip() == (
            f"error: user id {blank!r}: expected a user id that is not empty or blank"
        )


@pytest.mark.slow
def test_links_of_a_bare_anonymous_id_point_to_its_spelling() -> None:
    """`query links dev-A` (an anonymous id without `anonymous:`) printed an empty table."""
    cli("init")
    cli("publish", input=b'{"user_id": "bob", "anonymous_id": "dev-A", "event_type": "identify"}\n')
    cli("worker", "--until-idle")
    table = cli("query", "links", "dev-A", env=WIDE).stdout.decode()
    assert "no identity links" not in table  # the note on stderr says where they are
    result = cli("query", "links", "dev-A", "--json", env=WIDE)
    assert result.stdout.decode().strip() == "[]"
    assert result.stderr.decode().strip() == (
        "note: no links of user 'dev-A'; the anonymous id 'dev-A' has some: "
        "`query links anonymous:dev-A`"
    )


def test_a_blank_anonymous_id_is_named_as_one() -> None:
    """`query links "anonymous:"` named the user id `''` in its refusal."""
    cli("init")
    result = cli("query", "links", "anonymous: ", env=WIDE, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().strip() == (
        "error: anonymous id ' ': expected an anonymous id that is not empty or blank"
    )


def test_filter_says_where_each_command_answers_it() -> None:
    """Series and sessions answer a filter on a kept dimension from the aggregates; funnels,
    breakdowns and retention read the raw events whatever it names (docs/cli.md)."""
    filters = {}
    for path, command in COMMANDS:
        for param in command.get_params(command.context_class(command)):
            if "--filter" in param.opts:
                filters[" ".join(path)] = param.help or ""
    assert set(filters) == {
        "query series",
        "query sessions",
        "query funnel",
        "query breakdown",
        "query retention",
    }
    for name, said in filters.items():
        from_aggregates = name in ("query series", "query sessions")
        assert ("read from the aggregates" in said) is from_aggregates, name
