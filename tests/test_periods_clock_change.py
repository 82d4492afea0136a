"""Every instant has one minute, hour and day label in the reporting zone, two different
wall-clock hours never share one, labels sort in time order, and each label is read back
(docs/behavior.md, "Periods when clocks change")."""

from __future__ import annotations

from datetime import datetime

import pytest

from behavioral_analytics.aggregation import GRANULARITIES, Periods
from behavioral_analytics.period_bounds import label_granularity


def _ts(utc: str) -> float:
    return datetime.fromisoformat(utc).timestamp()


# (zone, a window around a clock change, UTC): fall back, spring forward, a 30-minute shift.
DAYS = [
    ("America/New_York", "2026-11-01T00:00:00+00:00", "2026-11-02T12:00:00+00:00"),
    ("America/New_York", "2026-03-08T00:00:00+00:00", "2026-03-09T12:00:00+00:00"),
    ("Europe/Berlin", "2026-10-24T18:00:00+00:00", "2026-10-26T06:00:00+00:00"),
    ("Australia/Lord_Howe", "2026-04-04T10:00:00+00:00", "2026-04-05T20:00:00+00:00"),
    ("Australia/Lord_Howe", "2026-10-03T10:00:00+00:00", "2026-10-04T20:00:00+00:00"),
    ("UTC", "2026-11-01T00:00:00+00:00", "2026-11-01T06:00:00+00:00"),
]


@pytest.mark.parametrize(("zone", "first", "last"), DAYS)
def test_labels_are_distinct_in_time_order_and_read_back(zone: str, first: str, last: str) -> None:
    periods = Periods(zone)
    seen: dict[str, list[str]] = {g: [] for g in GRANULARITIES}
    at = _ts(first)
    while at < _ts(last):
        for granularity, label in zip(GRANULARITIES, periods.of(at), strict=True):
            assert periods.start_of(granularity, label) <= at < periods.end_of(granularity, label)
            if not seen[granularity] or seen[granularity][-1] != label:
                seen[granularity].append(label)
        at += 60.0
    for granularity, labels in seen.items():
        assert labels == sorted(labels) and len(set(labels)) == len(labels), granularity
        for label in labels:
            assert label_granularity(label, periods) == granularity


def test_the_issue_case_new_york_fall_back() -> None:
    periods = Periods("America/New_York")
    assert periods.of(_ts("2026-11-01T05:30:00+00:00")) == (
        "2026-11-01-01-30",
        "2026-11-01-01",
        "2026-11-01",
    )
    assert periods.of(_ts("2026-11-01T06:30:00+00:00"))[:2] == (
        "2026-11-01-01b-30",
        "2026-11-01-01b",
    )
    assert periods.label("hour", _ts("2026-11-01T07:30:00+00:00")) == "2026-11-01-02"
    assert periods.start_of("hour", "2026-11-01-01b") == _ts("2026-11-01T06:00:00+00:00")
    assert periods.end_of("hour", "2026-11-01-01") == _ts("2026-11-01T06:00:00+00:00")


def test_lord_howe_repeats_half_an_hour() -> None:
    periods = Periods("Australia/Lord_Howe")
    # 02:00 +11 goes back to 01:30 +10:30 at 15:00 UTC.
    assert periods.label("hour", _ts("2026-04-04T14:59:00+00:00")) == "2026-04-05-01"
    assert periods.label("hour", _ts("2026-04-04T15:00:00+00:00")) == "2026-04-05-01b"
    assert periods.start_of("hour", "2026-04-05-01b") == _ts("2026-04-04T15:00:00+00:00")
    assert periods.end_of("hour", "2026-04-05-01b") == _ts("2026-04-04T15:30:00+00:00")


def test_a_b_label_of_an_hour_that_is_not_repeated_is_refused() -> None:
    assert label_granularity("2026-06-01-01b", Periods("America/New_York")) is None
    assert label_granularity("2026-11-01-02b", Periods("America/New_York")) is None
