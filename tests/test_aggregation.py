"""The fold: events → deltas, independent of order, in the reporting time zone."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.aggregation import Periods, fold
from behavioral_analytics.events import Event, dedupe_key

T0 = 1_764_320_000.0  # 2025-11-28 08:53:20 UTC


def event(who: str, event_type: str, ts: float, n: int = 0) -> Event:
    return Event(
        key=dedupe_key(f"e{n}", who, event_type, ts),
        event_id=f"e{n}",
        user_id=who,
        anonymous_id=None,
        event_type=event_type,
        timestamp=ts,
        session_id=None,
        properties={},
        received_at=ts,
    )


def test_period_labels_match_the_recipe_document_names() -> None:
    assert Periods("UTC").of(T0) == ("2025-11-28-08-53", "2025-11-28-08", "2025-11-28")


def test_reporting_time_zone_moves_buckets() -> None:
    # 08:53 UTC is 14:23 in Kolkata (+05:30): a half-hour offset moves the hour and minute.
    assert Periods("Asia/Kolkata").of(T0) == ("2025-11-28-14-23", "2025-11-28-14", "2025-11-28")
    # 23:30 UTC on the 27th is already the 28th in Tokyo.
    late = datetime(2025, 11, 27, 23, 30, tzinfo=UTC).timestamp()
    assert Periods("UTC").label("day", late) == "2025-11-27"
    assert Periods("Asia/Tokyo").label("day", late) == "2025-11-28"


def test_fold_counts_buckets_types_uniques_and_profiles() -> None:
    events = [
        event("u1", "page_view", T0, 1),
        event("u1", "purchase", T0 + 30, 2),
        event("u2", "page_view", T0 + 3600, 3),
    ]
    deltas = fold(events, Periods())
    hour = deltas.buckets["hour", "2025-11-28-08"]
    assert hour.total == 2 and hour.by_type == {"page_view": 1, "purchase": 1}
    day = deltas.buckets["day", "2025-11-28"]
    assert day.total == 3
    uniques = deltas.unique_users()
    assert uniques["day", "2025-11-28"] == 2
    assert uniques["hour", "2025-11-28-08"] == 1
    assert uniques["hour", "2025-11-28-09"] == 1
    assert ("minute", "2025-11-28-08-53") not in uniques
    u1 = deltas.profiles["u1"]
    assert u1.total == 2 and u1.first_seen == T0 and u1.last_activity == T0 + 30
    assert u1.by_type == {"page_view": 1, "purchase": 1}


def _normal(deltas):  # type: ignore[no-untyped-def]
    return (
        {k: (b.total, dict(b.by_type)) for k, b in deltas.buckets.items()},
        deltas.markers,
        {
            w: (p.total, dict(p.by_type), p.first_seen, p.last_activity)
            for w, p in deltas.profiles.items()
        },
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "team/alice", "u.4"]),
            st.sampled_from(["page_view", "checkout.step_2", "purchase"]),
            st.floats(min_value=T0 - 3 * 86400, max_value=T0 + 86400, allow_nan=False),
        ),
        max_size=60,
    ),
    st.randoms(),
)
def test_fold_does_not_depend_on_arrival_order(rows, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    events = [event(w, t, ts, i) for i, (w, t, ts) in enumerate(rows)]
    shuffled = events[:]
    rnd.shuffle(shuffled)
    periods = Periods("Europe/Paris")
    assert _normal(fold(events, periods)) == _normal(fold(shuffled, periods))


@given(st.lists(st.floats(min_value=T0 - 86400, max_value=T0 + 86400), min_size=1, max_size=40))
def test_fold_of_parts_sums_to_fold_of_whole(stamps: list[float]) -> None:
    events = [event(f"u{i % 3}", "page_view", ts, i) for i, ts in enumerate(stamps)]
    periods = Periods()
    whole = fold(events, periods)
    half = len(events) // 2
    a, b = fold(events[:half], periods), fold(events[half:], periods)
    for key, bucket in whole.buckets.items():
        parts = sum(x.buckets[key].total for x in (a, b) if key in x.buckets)
        assert parts == bucket.total
    assert whole.markers == a.markers | b.markers


@pytest.mark.parametrize("day", ["1800-01-01", "1883-11-18", "1883-11-19"])
def test_a_day_of_local_mean_time_is_labelled_by_its_own_start(day: str) -> None:
    """Before 18 Nov 1883 Los Angeles kept local mean time, UTC-7:52:58: an offset of whole
    minutes no more. Its days' first instants were labelled as the day before (the labels were
    looked up per UTC minute), so `from=1800-01-01` named no period."""
    periods = Periods("America/Los_Angeles")
    start, end = periods.start_of("day", day), periods.end_of("day", day)
    assert periods.label("day", start) == periods.label("day", end - 0.001) == day
    assert periods.label("hour", start) == f"{day}-00"
    assert periods.label("minute", end - 0.001) == f"{day}-23-59"
