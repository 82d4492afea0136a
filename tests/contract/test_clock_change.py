"""Hour and minute buckets are distinct for every instant when clocks go back (issue #16, case
4; docs/behavior.md, "Periods when clocks change"): the repeated wall-clock hour is its own
period, labelled with a `b` (`2025-11-02-01b`), sorted in time order and accepted back as a
bound; every other hour keeps its plain label."""

from __future__ import annotations

from datetime import datetime

from tests.conftest import FakeClock
from tests.contract.builders import MakeStore, assert_recounts
from tests.faults import behavior_event


def _at(n: int, utc: str, user: str) -> object:
    timestamp = datetime.fromisoformat(utc).timestamp()
    return behavior_event(n, timestamp, received_at=timestamp + 60, user=user)


def test_the_repeated_hour_of_a_fall_back_day_is_its_own_period(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = datetime.fromisoformat("2025-11-03T12:00:00+00:00").timestamp()
    store = make_store(timezone="America/New_York")
    store.commit(
        [
            _at(1, "2025-11-02T05:30:00+00:00", "u1"),  # 01:30 EDT
            _at(2, "2025-11-02T06:30:00+00:00", "u2"),  # 01:30 EST
            _at(3, "2025-11-02T06:45:00+00:00", "u1"),  # 01:45 EST
            _at(4, "2025-11-02T07:30:00+00:00", "u1"),  # 02:30 EST
        ]
    )
    hours = {p.period: (p.total_events, p.unique_users) for p in store.series("hour")}
    assert hours == {
        "2025-11-02-01": (1, 1),
        "2025-11-02-01b": (2, 2),
        "2025-11-02-02": (1, 1),
    }
    assert [p.period for p in store.series("hour")] == sorted(hours)
    minutes = [(p.period, p.total_events) for p in store.series("minute")]
    assert minutes == [
        ("2025-11-02-01-30", 1),
        ("2025-11-02-01b-30", 1),
        ("2025-11-02-01b-45", 1),
        ("2025-11-02-02-30", 1),
    ]
    only = store.series("hour", "2025-11-02-01b", "2025-11-02-01b")
    assert [(p.period, p.total_events) for p in only] == [("2025-11-02-01b", 2)]
    (day,) = store.series("day")
    assert (day.period, day.total_events, day.unique_users) == ("2025-11-02", 4, 2)
    assert_recounts(store)
