"""The retention rule (core, no store): cohorts by first active day, returning per day and per
week, periods not yet begun left out, and the checks of a request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import DEFAULT_LIMITS
from behavioral_analytics.retention import (
    MAX_OFFSET,
    RetentionCohort,
    RetentionError,
    cohorts,
    day_after,
    plan,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
MONTH_S = 30 * 86400.0


def table(
    active: dict[str, set[str]], start: str, end: str, max_offset: int = 30, unit: str = "day"
) -> list[tuple[str, int, list[int]]]:
    read = plan(Periods(), start, end, max_offset, unit, now=NOW, raw_retention_s=MONTH_S)
    return [(c.cohort, c.size, c.returning) for c in cohorts(active, read)]


def test_cohort_is_the_first_active_day_and_returning_counts_each_later_day() -> None:
    active = {
        "ann": {"2026-11-20", "2026-11-21", "2026-11-23"},
        "bob": {"2026-11-20", "2026-11-23"},
        "cy": {"2026-11-21", "2026-11-22"},
        "old": {"2026-11-19", "2026-11-20"},  # first seen before the range: in no cohort
    }
    assert table(active, "2026-11-20", "2026-11-21", max_offset=3) == [
        ("2026-11-20", 2, [2, 1, 0, 2]),
        ("2026-11-21", 1, [1, 1, 0, 0]),
    ]


def test_weeks_are_seven_day_blocks_from_the_cohort_day() -> None:
    active = {
        "ann": {"2026-11-02", "2026-11-08"},  # day 6: still week 0
        "bob": {"2026-11-02", "2026-11-09", "2026-11-15"},  # days 7 and 13: week 1 once
        "cy": {"2026-11-02", "2026-11-16"},  # day 14: week 2
    }
    assert table(active, "2026-11-02", "2026-11-02", max_offset=3, unit="week") == [
        ("2026-11-02", 3, [3, 1, 1, 0])
    ]


def test_periods_not_begun_by_today_are_left_out() -> None:
    active = {"ann": {"2026-11-29", "2026-11-30"}, "bob": {"2026-11-30"}}
    assert table(active, "2026-11-28", "2026-11-30", max_offset=5) == [
        ("2026-11-29", 1, [1, 1]),
        ("2026-11-30", 1, [1]),
    ]
    # Week 1 of a cohort 7 days before today has begun (today is its first day).
    assert table({"cy": {"2026-11-23", "2026-11-30"}}, "2026-11-23", "2026-11-23", 4, "week") == [
        ("2026-11-23", 1, [1, 1])
    ]


def test_a_reporting_zone_day_is_a_calendar_day_across_a_clock_change() -> None:
    periods = Periods("America/New_York")
    now = datetime(2026, 11, 5, 12, tzinfo=UTC).timestamp()
    read = plan(periods, "2026-10-31", "2026-10-31", 3, "day", now=now, raw_retention_s=MONTH_S)
    # 2026-11-01 has 25 hours there; the first second of 11-02 is still day 2.
    assert periods.end_of("day", "2026-11-01") - periods.start_of("day", "2026-11-01") == 90000
    assert read.first_seen_until == periods.start_of("day", "2026-11-01")
    got = cohorts({"ann": {"2026-10-31", "2026-11-02"}}, read)
    assert got == [RetentionCohort("2026-10-31", 1, [1, 0, 1, 0])]


def test_to_dict_gives_rates() -> None:
    assert RetentionCohort("2026-11-20", 4, [4, 1, 0]).to_dict() == {
        "cohort": "2026-11-20",
        "size": 4,
        "returning": [4, 1, 0],
        "rates": [1.0, 0.25, 0.0],
    }


def test_plan_reads_the_days_the_last_cohort_needs() -> None:
    read = plan(Periods(), "2026-11-10", "2026-11-12", 2, "week", now=NOW, raw_retention_s=MONTH_S)
    assert read.last_day == day_after("2026-11-12", 20) == "2026-12-02"
    assert read.today == "2026-11-30"


@pytest.mark.parametrize(
    ("start", "end", "max_offset", "unit", "code"),
    [
        ("2026-11-1", "2026-11-02", 3, "day", "invalid_period"),
        ("2026-11-31", "2026-12-01", 3, "day", "invalid_period"),
        ("2026-11-20", "2026-11-19", 3, "day", "invalid_range"),
        ("2026-11-20", "2026-11-21", -1, "day", "invalid_range"),
        ("2026-11-20", "2026-11-21", MAX_OFFSET["week"] + 1, "week", "invalid_range"),
        ("2026-11-20", "2026-11-21", 3, "month", "invalid_range"),
        # 30 days of raw retention at 2026-11-30 12:00: 10-31 has lost its morning's events.
        ("2026-10-31", "2026-11-02", 3, "day", "before_horizon"),
    ],
)
def test_requests_it_refuses(start: str, end: str, max_offset: int, unit: str, code: str) -> None:
    with pytest.raises(RetentionError) as refused:
        plan(Periods(), start, end, max_offset, unit, now=NOW, raw_retention_s=MONTH_S)
    assert refused.value.code == code


def test_the_horizon_day_itself_is_answered() -> None:
    read = plan(Periods(), "2026-11-01", "2026-11-01", 0, "day", now=NOW, raw_retention_s=MONTH_S)
    assert read.start_day == "2026-11-01"


def test_a_start_event_is_limited_as_event_types_are() -> None:
    """The start event takes the event types' limit (`Limits.max_event_type_chars`), no
    longer one of its own: a type no event can have is refused, not answered empty."""
    longest = DEFAULT_LIMITS.max_event_type_chars

    def check(start_event: str) -> None:
        plan(Periods(), "2026-11-20", "2026-11-21", 3, "day", now=NOW, raw_retention_s=MONTH_S,
             start_event=start_event)  # fmt: skip

    check("x" * longest)
    with pytest.raises(RetentionError) as refused:
        check("x" * (longest + 1))
    assert refused.value.code == "invalid_event_type"
    assert f"1 to {longest} characters" in refused.value.detail
