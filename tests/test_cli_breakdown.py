"""`query breakdown DIMENSION`: the rows (`breakdown_report.summarize`: sorted by events,
`(other)` last, unique users only where they can be given) and the command over the SQLite
store: table, `--json`, `--limit`, `--compare`, an unknown dimension."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from behavioral_analytics.breakdown_report import (
    HOUR_NOTE,
    MULTI_DAY_NOTE,
    SESSIONS_ONLY_NOTE,
    FilterError,
    filtered_series,
    parse_filter,
    summarize,
)
from behavioral_analytics.breakdowns import OTHER
from tests.conftest import cli


@dataclass(frozen=True)
class Point:
    period: str
    events: dict[str, int]
    unique_users: dict[str, int] | None
    other_events: int
    sessions: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period}


def test_rows_sort_by_events_then_value_with_other_last_however_large() -> None:
    point = Point("2026-11-28", {"/b": 3, "/a": 3, "/c": 1}, {"/a": 2, "/b": 1, OTHER: 4}, 9)
    summary = summarize([point], "day", "2026-11-28", "2026-11-28", 2)
    assert [(r.value, r.events, r.unique_users) for r in summary.rows] == [
        ("/a", 3, 2),
        ("/b", 3, 1),
        (OTHER, 9, 4),
    ]
    assert summary.total_events == 16 and summary.values_not_shown == 1
    assert summary.unique_users_note is None
    assert [r.share for r in summary.rows] == [0.1875, 0.1875, 0.5625]


def test_a_session_dimension_is_ranked_and_totalled_by_its_sessions_over_the_range() -> None:
    hours = [
        Point("2026-11-28-10", {}, None, 0, {"/a": 1, "/b": 2, OTHER: 1}),
        Point("2026-11-28-11", {}, None, 0, {"/a": 3}),
    ]
    summary = summarize(hours, "hour", "2026-11-28-10", "2026-11-28-11", 10)
    assert [(r.value, r.events, r.sessions, r.share) for r in summary.rows] == [
        ("/a", 0, 4, 0.5714),
        ("/b", 0, 2, 0.2857),
        (OTHER, 0, 1, 0.1429),
    ]
    assert (summary.total_events, summary.total_sessions) == (0, 7)


def test_a_session_dimensions_day_gives_no_unique_users_and_says_why() -> None:
    """Entry and exit pages count sessions only: a one-day range gave `unique_users` 0 beside
    their sessions (the CLI's default range), where the API's week gave null."""
    day = Point("2026-11-28", {}, None, 0, {"/a": 3, "/b": 1})
    summary = summarize([day], "day", "2026-11-28", "2026-11-28", 10)
    assert [(r.value, r.sessions, r.unique_users) for r in summary.rows] == [
        ("/a", 3, None),
        ("/b", 1, None),
    ]
    assert summary.unique_users_note == SESSIONS_ONLY_NOTE
    assert summarize([], "day", "2026-11-28", "2026-11-28", 10).unique_users_note is None


def test_sessions_per_value_ride_beside_events_where_the_store_keeps_them() -> None:
    day = Point("2026-11-28", {"/a": 5, "/b": 1}, {"/a": 2, "/b": 1}, 2, {"/a": 2, OTHER: 1})
    summary = summarize([day], "day", "2026-11-28", "2026-11-28", 10)
    assert [(r.value, r.events, r.sessions) for r in summary.rows] == [
        ("/a", 5, 2),
        ("/b", 1, 0),
        (OTHER, 2, 1),
    ]
    assert (summary.total_events, summary.total_sessions) == (8, 3)
    without = summarize([Point("2026-11-28", {"/a": 1}, None, 0)], "day", "x", "y", 10)
    assert without.total_sessions is None and without.rows[0].sessions is None


def test_days_are_summed_for_events_but_never_for_unique_users() -> None:
    days = [
        Point("2026-11-27", {"/a": 2}, {"/a": 2}, 0),
        Point("2026-11-28", {"/a": 1, "/b": 1}, {"/a": 1, "/b": 1}, 0),
    ]
    summary = summarize(days, "day", "2026-11-27", "2026-11-28", 10)
    assert [(r.value, r.events, r.unique_users) for r in summary.rows] == [
        ("/a", 3, None),
        ("/b", 1, None),
    ]
    assert summary.unique_users_note == MULTI_DAY_NOTE
    hours = summarize(
        [Point("2026-11-28-10", {"/a": 1}, None, 0)], "hour", "2026-11-28-10", "2026-11-28-10", 5
    )
    assert hours.rows[0].unique_users is None and hours.unique_users_note == HOUR_NOTE
    assert summarize([], "day", "2026-11-28", "2026-11-28", 5).to_dict() == {
        "total_events": 0,
        "total_sessions": None,
        "values": [],
        "values_not_shown": 0,
        "unique_users_note": None,
    }


def _publish(pages_by_day: dict[int, list[tuple[str, str]]]) -> datetime:
    """days ago → [(user, page path)], published and processed; returns today 00:00 UTC."""
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    lines = [
        json.dumps(
            {
                "event_id": f"e{ago}_{i}",
                "user_id": user,
                "event_type": "page_view",
                "timestamp": (today - timedelta(days=ago) + timedelta(minutes=30)).timestamp() + i,
                "properties": {"page_url": f"https://shop.example{page}"},
            }
        )
        for ago, visits in pages_by_day.items()
        for i, (user, page) in enumerate(visits)
    ]
    cli("init")
    cli("publish", input="\n".join(lines).encode())
    cli("worker", "--until-idle")
    return today


def _day(today: datetime, ago: int) -> str:
    return (today - timedelta(days=ago)).strftime("%Y-%m-%d")


@pytest.mark.slow
def test_the_command_answers_the_apis_shape_and_prints_a_table() -> None:
    today = _publish(
        {
            1: [("u1", "/a"), ("u2", "/a"), ("u1", "/a"), ("u3", "/b")],
            2: [("u1", "/a"), ("u4", "/pricing")],
            3: [("u9", "/b")],
        }
    )
    day = _day(today, 1)
    one = json.loads(cli("query", "breakdown", "page", "--from", day, "--to", day, "--json").stdout)
    assert one["dimension"] == "page" and one["granularity"] == "day"
    assert [(v["value"], v["events"], v["unique_users"]) for v in one["values"]] == [
        ("/a", 3, 2),
        ("/b", 1, 1),
    ]
    assert one["total_events"] == 4 and one["unique_users_note"] is None

    args = ("query", "breakdown", "page", "--from", _day(today, 2), "--to", day)
    both = json.loads(cli(*args, "--compare", "--limit", "1", "--json").stdout)
    current, previous = both["current"], both["previous"]
    assert [(v["value"], v["events"], v["unique_users"]) for v in current["values"]] == [
        ("/a", 4, None)
    ]
    assert current["values_not_shown"] == 2 and current["unique_users_note"] == MULTI_DAY_NOTE
    assert (previous["from"], previous["to"]) == (_day(today, 4), _day(today, 3))
    assert [(v["value"], v["events"]) for v in previous["values"]] == [("/b", 1)]

    table = cli(*args, "--compare", env={"COLUMNS": "200"}).stdout.decode()
    assert f"current: {_day(today, 2)} to {day}" in table
    assert f"previous: {_day(today, 4)} to {_day(today, 3)}" in table
    assert table.index("/a") < table.index("/pricing") and "unique users are kept per day" in table

    # A session-only dimension counts no events: its table has no events or users columns.
    entry = cli("query", "breakdown", "entry_page", "--from", day, "--to", day).stdout.decode()
    header = next(line for line in entry.splitlines() if "entry_page" in line and "┃" in line)
    assert header.split("┃")[2:4] == [" sessions ", " share "], entry
    rows = [line.split("│")[1:3] for line in entry.splitlines() if "│" in line]
    assert [(value.strip(), count.strip()) for value, count in rows] == [
        ("/a", "2"),
        ("/b", "1"),
        ("total", "3"),
    ], entry


def test_an_unknown_dimension_is_one_line_naming_the_configured_ones() -> None:
    cli("init")
    result = cli("query", "breakdown", "planet", check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1, err
    assert "'planet'" in err and "page, referrer" in err


def test_a_filtered_series_is_exact_unless_the_value_may_be_in_other() -> None:
    days = [
        Point("2026-11-26", {"/a": 2}, {"/a": 1}, 0),
        Point("2026-11-27", {"/b": 2}, {"/b": 2}, 0),  # every value admitted: /a had none
        Point("2026-11-28", {"/b": 2}, {"/b": 2, OTHER: 3}, 5),  # /a may be among the 5
    ]
    assert [(p.total_events, p.unique_users, p.exact) for p in filtered_series(days, "/a")] == [
        (2, 1, True),
        (0, 0, True),
        (0, 0, False),
    ]
    assert [p.total_events for p in filtered_series(days, OTHER)] == [0, 0, 5]
    dimensions = ("page", "property:plan", "property:plan:tier")
    assert parse_filter("page:/a:b", dimensions) == ("page", "/a:b")
    assert parse_filter("property:plan:tier:gold", dimensions) == ("property:plan:tier", "gold")
    for bare in ("page:", "page"):
        with pytest.raises(FilterError, match=f"{bare!r} names no value"):
            parse_filter(bare, dimensions)
    with pytest.raises(FilterError, match="configured dimension"):
        parse_filter("country:FR", dimensions)
    with pytest.raises(FilterError, match="filter on page"):
        parse_filter("entry_page:/a", dimensions)
    with pytest.raises(FilterError, match="not one value"):
        parse_filter(f"page:{OTHER}", dimensions)
    assert parse_filter('page:"(other)"', dimensions) == ("page", '"(other)"')


@pytest.mark.slow
def test_the_series_command_takes_a_filter() -> None:
    today = _publish({1: [("u1", "/a"), ("u2", "/a"), ("u1", "/a"), ("u3", "/b")]})
    day = _day(today, 1)
    body = json.loads(
        cli(
            "query",
            "series",
            "-g",
            "day",
            "--from",
            day,
            "--to",
            day,
            "--filter",
            "page:/a",
            "--json",
        ).stdout
    )
    assert body["filters"] == [{"dimension": "page", "value": "/a"}]
    assert body["answered_from"] == "aggregates"
    assert [(p["total_events"], p["unique_users"], p["exact"]) for p in body["points"]] == [
        (3, 2, True)
    ]
    refused = cli("query", "series", "--filter", "planet:mars", check=False)
    assert refused.returncode == 2 and b"--filter" in refused.stderr


@pytest.mark.slow
def test_values_past_the_admitted_ones_count_under_other_shown_last() -> None:
    env = {"BA_BREAKDOWN_VALUES": "2", "COLUMNS": "200"}
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    visits = [("u1", "/a"), ("u2", "/b"), ("u3", "/c"), ("u4", "/c"), ("u5", "/c"), ("u1", "/a")]
    lines = [
        json.dumps(
            {
                "event_id": f"o{i}",
                "user_id": user,
                "event_type": "page_view",
                "timestamp": (today - timedelta(days=1, minutes=-30)).timestamp() + i,
                "properties": {"page_url": f"https://shop.example{page}"},
            }
        )
        for i, (user, page) in enumerate(visits)
    ]
    cli("init", env=env)
    cli("publish", input="\n".join(lines).encode(), env=env)
    cli("worker", "--until-idle", env=env)
    day = _day(today, 1)
    args = ("query", "breakdown", "page", "--from", day, "--to", day)
    body = json.loads(cli(*args, "--json", env=env).stdout)
    # /c came third: past the two admitted values, its three events count under (other).
    assert [(v["value"], v["events"], v["unique_users"]) for v in body["values"]] == [
        ("/a", 2, 1),
        ("/b", 1, 1),
        (OTHER, 3, 3),
    ]
    table = cli(*args, env=env).stdout.decode()
    assert table.index("/b") < table.index(OTHER) < table.index("total")
