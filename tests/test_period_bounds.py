"""Period bounds: one parser for the CLI and the API (`period_bounds`), its rules held on
labels, coarser and finer labels, times, nonsense and reversed ranges, and the CLI's one-line
errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.period_bounds import (
    PeriodError,
    label_granularity,
    resolve_bound,
    resolve_range,
)
from tests.conftest import cli

UTC_PERIODS = Periods("UTC")


@pytest.mark.parametrize(
    ("value", "granularity", "end", "expected"),
    [
        ("2026-10-24-13", "hour", False, "2026-10-24-13"),
        ("2026-10-24", "hour", False, "2026-10-24-00"),
        ("2026-10-24", "hour", True, "2026-10-24-23"),
        ("2026-10-24", "minute", True, "2026-10-24-23-59"),
        ("2026-10-24-13", "minute", False, "2026-10-24-13-00"),
        ("2026-10-24T13:05:00Z", "hour", True, "2026-10-24-13"),
        ("2026-10-24T13:05:00+02:00", "hour", False, "2026-10-24-11"),
        (str(datetime(2026, 10, 24, 13, tzinfo=UTC).timestamp()), "day", False, "2026-10-24"),
    ],
)
def test_labels_and_times_resolve(value: str, granularity: str, end: bool, expected: str) -> None:
    assert resolve_bound(value, granularity, UTC_PERIODS, end=end) == expected  # type: ignore[arg-type]  # parametrized literal


@pytest.mark.parametrize(
    ("value", "granularity"),
    [
        ("yesterday", "hour"),
        ("foo", "day"),
        ("2026-13-45-99", "hour"),
        ("2026-02-30", "day"),
        ("2026-10-24-13", "day"),  # finer than the range
        ("2026-10-24-13-05", "hour"),
        ("2026-01-02T00:00:00", "day"),  # a time without an offset
        ("", "hour"),
    ],
)
def test_what_names_no_period_is_refused(value: str, granularity: str) -> None:
    with pytest.raises(PeriodError) as raised:
        resolve_bound(value, granularity, UTC_PERIODS, end=False)  # type: ignore[arg-type]  # parametrized literal
    assert raised.value.code == "invalid_period"
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("value", ["0999-01-01", "0999-12-31-23", "0500-06-01T00:00:00Z"])
def test_a_year_before_1000_is_named_as_out_of_range(value: str) -> None:
    with pytest.raises(PeriodError, match=r"outside the periods that can be named \(years 1000"):
        resolve_bound(value, "day", UTC_PERIODS, end=False)


def test_a_finer_label_says_why() -> None:
    with pytest.raises(PeriodError, match="hour label, finer than this day range"):
        resolve_bound("2026-10-24-13", "day", UTC_PERIODS, end=True)
    with pytest.raises(PeriodError, match="minute label, finer than this hour range: give an hour"):
        resolve_bound("2026-10-24-13-05", "hour", UTC_PERIODS, end=True)


def test_a_reversed_range_is_refused_and_a_coarse_one_spans_its_day() -> None:
    with pytest.raises(PeriodError) as raised:
        resolve_range("2026-10-25", "2026-10-24", "hour", UTC_PERIODS)
    assert raised.value.code == "invalid_range"
    assert resolve_range("2026-10-24", "2026-10-24", "hour", UTC_PERIODS) == (
        "2026-10-24-00",
        "2026-10-24-23",
    )
    assert resolve_range(None, None, "hour", UTC_PERIODS) == (None, None)


def test_every_label_periods_writes_on_a_clock_change_day_is_accepted() -> None:
    """Whatever labels `Periods` gives the hours of a day when clocks go back, each is read
    back as a label of its granularity (so a repeated hour can be asked for by its label)."""
    periods = Periods("America/New_York")
    start = datetime(2026, 11, 1, 4, tzinfo=UTC).timestamp()  # 00:00 EDT, the fall-back day
    for step in range(26):
        instant = start + step * 3600
        for granularity in ("minute", "hour", "day"):
            label = periods.label(granularity, instant)
            assert label_granularity(label, periods) == granularity, (label, granularity)
            assert resolve_bound(label, granularity, periods, end=False) == label


def test_an_hour_skipped_when_clocks_go_forward_is_refused() -> None:
    periods = Periods("America/New_York")
    with pytest.raises(PeriodError):
        resolve_bound("2026-03-08-02", "hour", periods, end=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("query", "series", "--from", "yesterday"),
        ("query", "series", "--from", "foo"),
        ("query", "series", "--from", "2026-13-45-99"),
        ("query", "series", "--from", "2026-10-25", "--to", "2026-10-24"),
        ("query", "series", "-g", "day", "--from", "2026-10-24-13"),
        ("query", "sessions", "--from", "yesterday"),
        ("query", "funnel", "purchase", "--from", "2026-13-45"),
    ],
)
def test_the_cli_refuses_a_bad_period_with_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    env = {"BA_FUNNELS": '[{"name": "purchase", "steps": ["search", "purchase"]}]'}
    result = cli(*args, env=env, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2, err
    assert err.startswith("error: --from/--to:") and len(err.splitlines()) == 1, err
    assert result.stdout == b""


@pytest.mark.slow
def test_the_cli_takes_a_coarser_label_as_an_hourly_bound() -> None:
    day = datetime.fromtimestamp(time.time() - 2 * 86400, UTC).replace(hour=0, minute=0)
    times = [day.replace(hour=1), day.replace(hour=22), day.replace(hour=1) + timedelta(days=1)]
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": "u1",
                "event_type": "page_view",
                "timestamp": moment.timestamp(),
            }
        )
        for i, moment in enumerate(times)
    ]
    cli("init")
    cli("publish", input="\n".join(lines).encode())
    cli("worker", "--until-idle")
    label = day.strftime("%Y-%m-%d")
    result = cli("query", "series", "--from", label, "--to", label, "--json")
    points = json.loads(result.stdout)["points"]
    assert [(p["period"], p["total_events"]) for p in points] == [
        (f"{label}-01", 1),
        (f"{label}-22", 1),
    ]


ZONES = ("UTC", "America/Los_Angeles", "Etc/GMT+12", "Pacific/Kiritimati", "Australia/Lord_Howe")


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    ("granularity", "label", "length_s"),
    [("day", "9999-12-31", 86400.0), ("hour", "9999-12-31-23", 3600.0)],
)
def test_the_last_day_and_hour_of_year_9999_end_where_they_should(
    zone: str, granularity: str, label: str, length_s: float
) -> None:
    """The period after them (year 10000) is no `datetime`: they end one second after their
    last second, a whole period after they start (no clock change there in these zones)."""
    periods = Periods(zone)
    start = periods.start_of(granularity, label)  # type: ignore[arg-type]  # parametrized literal
    assert periods.end_of(granularity, label) - start == length_s  # type: ignore[arg-type]  # parametrized literal
    last_second = datetime(9999, 12, 31, 23, 59, 59, tzinfo=ZoneInfo(zone)).timestamp()
    assert periods.end_of(granularity, label) == last_second + 1.0  # type: ignore[arg-type]  # parametrized literal


def test_the_day_before_keeps_its_calendar_end() -> None:
    periods = Periods("America/Los_Angeles")
    assert periods.end_of("day", "9999-12-30") == periods.start_of("day", "9999-12-31")
    assert periods.end_of("hour", "9999-12-30-23") == periods.start_of("day", "9999-12-31")


@pytest.mark.parametrize(
    ("zone", "granularity", "last"),
    [
        ("UTC", "hour", "9999-12-31-23"),
        ("UTC", "minute", "9999-12-31-23-59"),
        # West of UTC the hours after 9999-12-31T23:59:59Z have no label.
        ("America/Los_Angeles", "hour", "9999-12-31-15"),
        ("America/Los_Angeles", "minute", "9999-12-31-15-59"),
        ("Etc/GMT+12", "hour", "9999-12-31-11"),
    ],
)
def test_the_last_day_as_to_of_a_finer_range_names_its_last_period_there_is(
    zone: str, granularity: str, last: str
) -> None:
    """Its end (year 10000) has no label: refused, the message naming the period to give
    instead (it said 2026-11-28-13, an example label), which is taken."""
    periods = Periods(zone)
    with pytest.raises(PeriodError, match=rf"give the last {granularity} a label names, {last},"):
        resolve_bound("9999-12-31", granularity, periods, end=True)  # type: ignore[arg-type]  # parametrized literal
    assert resolve_bound(last, granularity, periods, end=True) == last  # type: ignore[arg-type]  # parametrized literal
    assert resolve_bound("9999-12-31", granularity, periods, end=False).startswith("9999-12-31-00")  # type: ignore[arg-type]  # parametrized literal


def test_east_of_utc_the_last_day_ends_before_the_last_instant_and_is_taken() -> None:
    periods = Periods("Pacific/Kiritimati")
    assert resolve_bound("9999-12-31", "hour", periods, end=True) == "9999-12-31-23"


def test_a_label_past_the_last_instant_names_the_last_one_there_is() -> None:
    periods = Periods("America/Los_Angeles")
    with pytest.raises(PeriodError, match=r"give 9999-12-31-15 or earlier") as raised:
        resolve_bound("9999-12-31-23", "hour", periods, end=True)
    assert raised.value.code == "invalid_period"
