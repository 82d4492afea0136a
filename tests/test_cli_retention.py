"""`query retention` from the command line: JSON and table answers over a local store, and the
one-line refusals (exit 2) of a bad unit and of cohort days before the raw-event retention;
`--filter` keeping the people whose cohort day holds a matching event."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from behavioral_analytics.events import DEFAULT_LIMITS
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import cli
from tests.faults import behavior_event

DAY_S = 86400.0


def _local_store(
    tmp_path: Path, events: list[tuple[int, str, str]]
) -> tuple[dict[str, str], str, str]:
    """A local store (`init`, then committed directly) holding one event per (days before
    today's noon UTC, user, event type), numbered in order; the CLI's environment and the ISO
    dates of four and three days ago."""
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    cli("init", env=env)
    today = datetime.now(UTC).date()
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC).timestamp()
    store = SQLiteStore(tmp_path / "data" / "store.db")
    try:
        store.commit(
            [
                behavior_event(n, noon - days * DAY_S, received_at=noon, user=user, kind=kind)
                for n, (days, user, kind) in enumerate(events, start=1)
            ]
        )
    finally:
        store.close()
    first, second = (today - timedelta(days=4)).isoformat(), (today - timedelta(days=3)).isoformat()
    return env, first, second


@pytest.mark.slow
def test_query_retention(tmp_path: Path) -> None:
    env, first, second = _local_store(
        tmp_path,
        [
            (4, "ann", "page_view"),
            (3, "ann", "page_view"),
            (4, "bob", "page_view"),
            (3, "cy", "page_view"),
        ],
    )

    args = ("query", "retention", "--from", first, "--to", second, "--max", "2")
    body = json.loads(cli(*args, "--json", env=env).stdout)
    assert (body["from"], body["to"], body["unit"], body["max"]) == (first, second, "day", 2)
    assert [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]] == [
        (first, 2, [2, 1, 0]),
        (second, 1, [1, 0, 0]),
    ]
    table = cli(*args, env=env).stdout.decode()
    assert "day 2" in table and "1 (50%)" in table
    # The default --max (30) shows only the periods begun, and no more than 80 columns hold.
    narrow = {**env, "COLUMNS": "80"}
    default = cli("query", "retention", "--from", first, "--to", second, env=narrow).stdout
    lines = default.decode().splitlines()
    assert "day 4" in default.decode() and "day 5" not in default.decode()
    assert max(len(line) for line in lines) <= 80 and "50%" in default.decode()

    bad = cli("query", "retention", "--unit", "month", env=env, check=False)
    assert bad.returncode == 2 and "--unit must be day or week" in bad.stderr.decode()
    old = (date.fromisoformat(first) - timedelta(days=56)).isoformat()  # 60 days ago
    refused = cli("query", "retention", "--from", old, env=env, check=False)
    assert refused.returncode == 2 and "raw-event retention" in refused.stderr.decode()


@pytest.mark.slow
def test_query_retention_by_a_start_event(tmp_path: Path) -> None:
    env, first, second = _local_store(
        tmp_path,
        [
            (4, "ann", "page_view"),
            (3, "ann", "signup"),
            (2, "ann", "page_view"),
            (4, "bob", "signup"),
            (3, "cy", "page_view"),
        ],
    )

    args = ("query", "retention", "--from", first, "--to", second, "--max", "1")
    body = json.loads(cli(*args, "--start-event", "signup", "--json", env=env).stdout)
    assert body["start_event"] == "signup"
    # ann's cohort is her signup day, not her first-seen day; cy never signed up.
    assert [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]] == [
        (first, 1, [1, 0]),
        (second, 1, [1, 1]),
    ]
    table = cli(*args, "--start-event", "signup", env=env).stdout.decode()
    assert "cohorts by first signup" in table and "1 (100%)" in table
    none = cli(*args, "--start-event", "never_sent", env=env).stdout.decode()
    assert "nobody did never_sent for the first time on those days" in none
    bad = cli(*args, "--start-event", " ", env=env, check=False)
    assert bad.returncode == 2 and "expected an event type" in bad.stderr.decode()


@pytest.mark.slow
def test_query_retention_start_event_takes_the_event_type_limit(tmp_path: Path) -> None:
    """`--start-event` is refused past `Limits.max_event_type_chars` (128), exit 2 with the
    line of `query events --type`, even where no data folder exists (checked first)."""
    longest = DEFAULT_LIMITS.max_event_type_chars
    env, first, second = _local_store(tmp_path, [(3, "ann", "x" * longest)])
    args = ("query", "retention", "--from", first, "--to", second, "--max", "0")
    body = json.loads(cli(*args, "--start-event", "x" * longest, "--json", env=env).stdout)
    assert [(c["cohort"], c["size"]) for c in body["cohorts"]] == [(second, 1)]
    nowhere = {**env, "BA_DATA_DIR": str(tmp_path / "none")}
    for where in (env, nowhere):
        too_long = cli(*args, "--start-event", "x" * (longest + 1), env=where, check=False)
        events = cli("query", "events", "--type", "x" * (longest + 1), env=where, check=False)
        lines = too_long.stderr.decode().splitlines()
        assert too_long.returncode == 2 and len(lines) == 1, too_long.stderr
        assert f"expected an event type of 1 to {longest} characters" in lines[0]
        assert f"'{'x' * 64}…' ({longest + 1} characters)" in lines[0]
        assert events.returncode == 2 and lines == events.stderr.decode().splitlines()


@pytest.mark.slow
def test_query_retention_narrowed_by_filters(tmp_path: Path) -> None:
    env, first, second = _local_store(
        tmp_path,
        [
            # ann searches on her first day; bob only the day after his; cy on hers.
            (4, "ann", "search"),
            (3, "ann", "page_view"),
            (4, "bob", "page_view"),
            (3, "bob", "search"),
            (3, "cy", "search"),
        ],
    )

    args = ("query", "retention", "--from", first, "--to", second, "--max", "1")
    body = json.loads(cli(*args, "--filter", "event_type:search", "--json", env=env).stdout)
    assert body["filters"] == [{"dimension": "event_type", "value": "search"}]
    assert body["answered_from"] == "raw_events" and body["scanned_events"] == 5
    assert [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]] == [
        (first, 1, [1, 1]),
        (second, 1, [1, 0]),
    ]
    table = cli(*args, "--filter", "event_type:search", env=env).stdout.decode()
    assert "1 (100%)" in table and "filter: event_type = search" in table
    assert "answered from raw events (5 scanned)" in table
    # Everyone was first seen in the range; the filter, not the range, left nobody.
    unmatched = cli(*args, "--filter", "event_type:checkout", env=env).stdout.decode()
    assert "nobody was first seen on those days with an event there matching every filter" in (
        " ".join(unmatched.split())
    )
    # A range with no events at all: nobody was seen, whatever the filter.
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in (12, 11)]
    before = ("query", "retention", "--from", days[0], "--to", days[1], "--max", "1")
    empty = cli(*before, "--filter", "event_type:search", env=env).stdout.decode()
    assert "nobody was first seen on those days\n" in empty and "(0 scanned)" in empty, empty
    bad = cli(*args, "--filter", "nope", env=env, check=False)
    assert bad.returncode == 2 and "--filter" in bad.stderr.decode()
    bounded = {**env, "BA_RAW_SCAN_MAX_EVENTS": "3"}
    refused = cli(*args, "--filter", "event_type:search", env=bounded, check=False)
    assert refused.returncode == 2 and "BA_RAW_SCAN_MAX_EVENTS" in refused.stderr.decode()
