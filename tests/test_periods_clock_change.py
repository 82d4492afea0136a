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
    ("Pacific/Chatham", "2026-04-04T00:00:00+00:00", "2026-04-05T12:00:00+00:00"),
    ("Pacific/Chatham", "2026-09-26T00:00:00+00:00", "2026-09-27T12:00:00+00:00"),
    ("Antarctica/Troll", "2026-10-24T12:00:00+00:00", "2026-10-26T00:00:00+00:00"),
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


def test_chatham_goes_back_at_03_45_and_labels_keep_time_order() -> None:
    periods = Periods("Pacific/Chatham")
    # 03:45 +13:45 goes back to 02:45 +12:45 at 14:00 UTC: the second pass comes after `03`,
    # a letter for each of its wall-clock hours (02 and 03).
    hours = [
        (periods.label("hour", _ts(f"2026-04-04T{utc}:00+00:00")), utc)
        for utc in ("13:50", "14:10", "14:45", "15:10", "15:15")
    ]
    assert hours == [
        ("2026-04-05-03", "13:50"),
        ("2026-04-05-03b", "14:10"),  # 02:55 +12:45
        ("2026-04-05-03c", "14:45"),  # 03:30 +12:45
        ("2026-04-05-03c", "15:10"),  # 03:55 +12:45 follows the hour's second pass
        ("2026-04-05-04", "15:15"),
    ]
    assert periods.label("minute", _ts("2026-04-04T14:10:00+00:00")) == "2026-04-05-03b-55"
    assert periods.label("minute", _ts("2026-04-04T15:10:00+00:00")) == "2026-04-05-03c-55"
    spans = {
        label: (periods.start_of("hour", label), periods.end_of("hour", label))
        for label in ("2026-04-05-03", "2026-04-05-03b", "2026-04-05-03c")
    }
    assert spans == {
        "2026-04-05-03": (_ts("2026-04-04T13:15:00+00:00"), _ts("2026-04-04T14:00:00+00:00")),
        "2026-04-05-03b": (_ts("2026-04-04T14:00:00+00:00"), _ts("2026-04-04T14:15:00+00:00")),
        "2026-04-05-03c": (_ts("2026-04-04T14:15:00+00:00"), _ts("2026-04-04T15:15:00+00:00")),
    }
    assert periods.start_of("minute", "2026-04-05-03b-55") == _ts("2026-04-04T14:10:00+00:00")
    assert periods.end_of("minute", "2026-04-05-03b-59") == _ts("2026-04-04T14:15:00+00:00")
    assert label_granularity("2026-04-05-03-55", periods) is None  # 03:55 +13:45 never was
    assert label_granularity("2026-04-05-02b", periods) is None


def test_troll_goes_back_two_hours() -> None:
    periods = Periods("Antarctica/Troll")
    # 03:00 +02 goes back to 01:00 +00 at 01:00 UTC.
    hours = [
        periods.label("hour", _ts(f"2026-10-25T{utc}:30:00+00:00"))
        for utc in ("00", "01", "02", "03")
    ]
    assert hours == ["2026-10-25-02", "2026-10-25-02b", "2026-10-25-02c", "2026-10-25-03"]


def test_an_hour_entered_after_clocks_skip_into_it_starts_at_the_skip() -> None:
    periods = Periods("Pacific/Chatham")
    # 02:45 +12:45 skips to 03:45 +13:45 at 14:00 UTC: hour 03 is 03:45-04:00.
    assert periods.label("hour", _ts("2026-09-26T14:00:00+00:00")) == "2026-09-27-03"
    assert periods.start_of("hour", "2026-09-27-03") == _ts("2026-09-26T14:00:00+00:00")
    assert periods.end_of("hour", "2026-09-27-03") == _ts("2026-09-26T14:15:00+00:00")
    assert periods.end_of("hour", "2026-09-27-02") == _ts("2026-09-26T14:00:00+00:00")
    assert label_granularity("2026-09-27-03", periods) == "hour"


def test_a_skipped_hour_is_refused_saying_so() -> None:
    with pytest.raises(ValueError, match="skipped that hour"):
        Periods("America/New_York").start_of("hour", "2026-03-08-02")
