"""Comparison ranges (`period_bounds.previous_range`): the same number of days or hour periods
in the reporting zone, ending just before `from`, clock-change days included; and the CLI's
`--compare` on series, sessions and funnels (current and previous, each with its bounds)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.period_bounds import MAX_COMPARE_HOURS, PeriodError, previous_range
from tests.conftest import cli

NEW_YORK = Periods("America/New_York")


@pytest.mark.parametrize(
    ("first", "last", "granularity", "zone", "expected"),
    [
        # Three days compare with the three days before.
        ("2026-11-04", "2026-11-06", "day", "UTC", ("2026-11-01", "2026-11-03")),
        # A day range across a month and a year end.
        ("2027-01-01", "2027-01-01", "day", "UTC", ("2026-12-31", "2026-12-31")),
        ("2026-03-01", "2026-03-02", "day", "UTC", ("2026-02-27", "2026-02-28")),
        # The 25-hour day when New York's clocks go back is one day...
        ("2026-11-02", "2026-11-02", "day", "America/New_York", ("2026-11-01", "2026-11-01")),
        # ...and 25 hour periods: the hourly range compares with the 25 hours before it.
        (
            "2026-11-01-00",
            "2026-11-01-23",
            "hour",
            "America/New_York",
            ("2026-10-30-23", "2026-10-31-23"),
        ),
        # 24 hours after the 25-hour day: the repeated hour is one of the 24 before.
        (
            "2026-11-02-00",
            "2026-11-02-23",
            "hour",
            "America/New_York",
            ("2026-11-01-01", "2026-11-01-23"),
        ),
        # Two hours starting at the repeated one.
        (
            "2026-11-01-01b",
            "2026-11-01-02",
            "hour",
            "America/New_York",
            ("2026-11-01-00", "2026-11-01-01"),
        ),
        # The 23-hour day clocks go forward: 02 is skipped, so 03 follows 01.
        (
            "2026-03-08-03",
            "2026-03-08-04",
            "hour",
            "America/New_York",
            ("2026-03-08-00", "2026-03-08-01"),
        ),
        ("2026-11-28-13", "2026-11-28-13", "hour", "UTC", ("2026-11-28-12", "2026-11-28-12")),
        # Minutes of the repeated hour, then the first pass of it before.
        (
            "2026-11-01-01b-00",
            "2026-11-01-01b-09",
            "minute",
            "America/New_York",
            ("2026-11-01-01-50", "2026-11-01-01-59"),
        ),
    ],
)
def test_the_previous_range_has_as_many_periods_and_ends_just_before(
    first: str, last: str, granularity: str, zone: str, expected: tuple[str, str]
) -> None:
    periods = Periods(zone)
    before = previous_range(first, last, granularity, periods)  # type: ignore[arg-type]  # parametrized literal
    assert before == expected
    # The ranges touch: the previous one ends where the asked one starts.
    assert periods.end_of(granularity, before[1]) == periods.start_of(granularity, first)  # type: ignore[arg-type]  # parametrized literal


def test_an_hourly_range_too_long_to_walk_is_refused_in_one_line() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    last = (start + timedelta(hours=MAX_COMPARE_HOURS)).strftime("%Y-%m-%d-%H")
    with pytest.raises(PeriodError) as raised:
        previous_range("2020-01-01-00", last, "hour", Periods("UTC"))
    assert raised.value.code == "invalid_range" and "\n" not in str(raised.value)


def _publish_days(days_ago: dict[int, int]) -> datetime:
    """`days_ago → events` at 00:30 UTC of each day, one user per event; returns today 00:00."""
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    lines = []
    for ago, count in days_ago.items():
        moment = today - timedelta(days=ago) + timedelta(minutes=30)
        for i in range(count):
            event = {
                "event_id": f"e{ago}_{i}",
                "user_id": f"u{i}",
                "event_type": "page_view",
                "timestamp": moment.timestamp() + i,
                "session_id": f"s{ago}_{i}",
            }
            lines.append(json.dumps(event))
    cli("init")
    cli("publish", input="\n".join(lines).encode())
    cli("worker", "--until-idle")
    return today


def _day(today: datetime, ago: int) -> str:
    return (today - timedelta(days=ago)).strftime("%Y-%m-%d")


@pytest.mark.slow
def test_series_and_sessions_compare_three_days_with_the_three_before() -> None:
    # Days 7 and 0 are outside both ranges; 6..4 are the previous range, 3..1 the current.
    today = _publish_days({7: 5, 6: 2, 4: 1, 3: 3, 1: 4, 0: 6})
    args = ("--from", _day(today, 3), "--to", _day(today, 1), "--compare", "--json")
    body = json.loads(cli("query", "series", "-g", "day", *args).stdout)
    assert body["current"]["from"] == _day(today, 3) and body["current"]["to"] == _day(today, 1)
    assert (body["previous"]["from"], body["previous"]["to"]) == (_day(today, 6), _day(today, 4))
    totals = {
        name: {p["period"]: p["total_events"] for p in body[name]["points"]}
        for name in ("current", "previous")
    }
    assert totals == {
        "current": {_day(today, 3): 3, _day(today, 1): 4},
        "previous": {_day(today, 6): 2, _day(today, 4): 1},
    }
    sessions = json.loads(cli("query", "sessions", *args).stdout)
    started = {
        name: sum(p["sessions"] for p in sessions[name]["points"])
        for name in ("current", "previous")
    }
    assert started == {"current": 7, "previous": 3}

    # Without --compare the shape is the one it always was.
    plain = json.loads(cli("query", "series", "-g", "day", *args[:4], "--json").stdout)
    assert "current" not in plain and len(plain["points"]) == 2

    table = cli("query", "series", "-g", "day", *args[:5], env={"COLUMNS": "200"}).stdout.decode()
    assert f"current: {_day(today, 3)} to {_day(today, 1)}" in table
    assert f"previous: {_day(today, 6)} to {_day(today, 4)}" in table


@pytest.mark.slow
def test_a_funnel_compares_its_entry_days() -> None:
    env = {"BA_FUNNELS": '[{"name": "browse", "steps": ["page_view", "signup"]}]'}
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    lines = [
        json.dumps(
            {
                "event_id": f"f{ago}_{user}",
                "user_id": f"u{user}",
                "event_type": "page_view",
                "timestamp": (today - timedelta(days=ago, hours=-12)).timestamp() + user,
            }
        )
        for ago, users in ((4, 5), (3, 2), (2, 1))
        for user in range(users)
    ]
    cli("init", env=env)
    cli("publish", input="\n".join(lines).encode(), env=env)
    cli("worker", "--until-idle", env=env)
    day = _day(today, 2)
    body = json.loads(
        cli(
            "query", "funnel", "browse", "--from", day, "--to", day, "--compare", "--json", env=env
        ).stdout
    )
    assert body["previous"]["from"] == body["previous"]["to"] == _day(today, 3)
    assert [(d["day"], d["users"][0]) for d in body["current"]["days"]] == [(day, 1)]
    assert [(d["day"], d["users"][0]) for d in body["previous"]["days"]] == [(_day(today, 3), 2)]


def test_compare_without_from_is_one_line_and_exit_2() -> None:
    cli("init")
    result = cli("query", "series", "--compare", check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1
    assert "--compare needs --from" in err
