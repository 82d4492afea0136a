"""The reads: profiles, timelines and events by type with their cursors, stored events by key,
time series by period, active users and freshness."""

from __future__ import annotations

import base64

import pytest

from behavioral_analytics.store import Freshness, InvalidCursor, Store, encode_cursor
from tests.conftest import FakeClock
from tests.contract.builders import DAY_START, HOUR, NOW, ev, every_page

# Not cursors a store hands out: not base64, no "time|key" inside, a key with a slash.
BAD_CURSORS = [
    "garbage!",
    base64.urlsafe_b64encode(b"no separator").decode(),
    encode_cursor(1.0, "a/b"),
]


def test_profile_of_an_unknown_user_is_none_and_spans_event_times(store: Store) -> None:
    assert store.profile("nobody") is None
    store.commit([ev(1, 600, user="u1"), ev(2, 0, user="u1", kind="search")])
    store.commit([ev(3, 300, user="u1", kind="search")])  # in between: moves neither end
    profile = store.profile("u1")
    assert profile is not None
    assert profile.to_dict() == {
        "user_id": "u1",
        "total_events": 3,
        "events_by_type": {"page_view": 1, "search": 2},
        "first_seen": DAY_START,
        "last_activity": DAY_START + 600,
    }
    anonymous = ev(4, 10, anon="a1")
    store.commit([anonymous])
    assert anonymous.who == "anonymous:a1"
    assert store.profile("anonymous:a1") is not None and store.profile("a1") is None


def test_timeline_pages_newest_first_through_ties_and_only_the_users_events(
    store: Store,
) -> None:
    mine = [ev(i, i // 2, user="u7") for i in range(25)]  # pairs share a timestamp
    store.commit([*mine, ev(99, 5, user="other")])
    pages = every_page(lambda cursor: store.timeline("u7", limit=4, cursor=cursor))
    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 4, 1]
    seen = [stored.event for page in pages for stored in page]
    assert sorted(e.key for e in seen) == sorted(e.key for e in mine)
    order = [(e.timestamp, e.key) for e in seen]
    assert order == sorted(order, reverse=True)  # newest first, ties by key
    assert store.timeline("nobody").items == [] and store.timeline("nobody").next_cursor is None


def test_events_by_type_pages_newest_first(store: Store) -> None:
    store.commit([ev(i, i, user="u1", kind="search" if i % 2 else "page_view") for i in range(7)])
    first = store.events_by_type("search", limit=2)
    assert [s.event.event_id for s in first.items] == ["e5", "e3"]
    rest = store.events_by_type("search", limit=2, cursor=first.next_cursor)
    assert [s.event.event_id for s in rest.items] == ["e1"] and rest.next_cursor is None
    assert store.events_by_type("signup").items == []


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_cursor_the_store_did_not_hand_out_is_refused(store: Store, cursor: str) -> None:
    store.commit([ev(1, 0, user="u1")])
    with pytest.raises(InvalidCursor):
        store.timeline("u1", cursor=cursor)
    with pytest.raises(InvalidCursor):
        store.events_by_type("page_view", cursor=cursor)


def test_get_events_returns_the_stored_ones_as_committed(store: Store, clock: FakeClock) -> None:
    batch = [ev(1, 0, user="u1", page_url="/p/1"), ev(2, 10, anon="a1", session="s1")]
    clock.advance(2)
    store.commit(batch)
    missing = ev(3, 20, user="u1")
    found = store.get_events([batch[1].key, missing.key, batch[0].key])
    assert sorted((s.event for s in found), key=lambda e: e.key) == sorted(
        batch, key=lambda e: e.key
    )
    assert all(s.processed_at == clock.now for s in found)
    assert store.get_events([]) == [] and store.get_events([missing.key]) == []


def test_series_is_oldest_first_within_an_inclusive_range(store: Store) -> None:
    store.commit([ev(i, i * HOUR + 60, user=f"u{i % 2}") for i in range(5)])
    store.commit([ev(9, 86400 + 60, user="u0")])  # the next day
    hours = store.series("hour", "2025-11-27-10", "2025-11-27-12")
    assert [(p.period, p.total_events, p.unique_users) for p in hours] == [
        ("2025-11-27-10", 1, 1),
        ("2025-11-27-11", 1, 1),
        ("2025-11-27-12", 1, 1),
    ]
    assert [p.period for p in store.series("hour", start="2025-11-27-13")] == [
        "2025-11-27-13",
        "2025-11-28-09",
    ]
    assert [p.period for p in store.series("hour", end="2025-11-27-09")] == ["2025-11-27-09"]
    days = store.series("day")
    assert [(p.period, p.total_events, p.unique_users) for p in days] == [
        ("2025-11-27", 5, 2),
        ("2025-11-28", 1, 1),
    ]
    assert store.series("day", "2025-11-29") == []


def test_active_users_counts_profiles_active_at_or_after_a_time(store: Store) -> None:
    assert store.active_users(0) == 0
    store.commit([ev(1, 0, user="a"), ev(2, 600, user="b"), ev(3, 1200, anon="c")])
    store.commit([ev(4, 1800, user="a")])  # a's last activity moves on
    assert store.active_users(DAY_START + 1200) == 2  # a and anonymous c; the bound included
    assert store.active_users(DAY_START + 1201) == 1
    assert store.active_users(DAY_START) == 3
    assert store.active_users(DAY_START + 1801) == 0


def test_freshness_follows_the_commits_that_create_events(store: Store, clock: FakeClock) -> None:
    assert store.freshness() == Freshness(None, None, None)
    clock.advance(3)
    store.commit([ev(1, 600, user="u1"), ev(2, 300, user="u1")])
    assert store.freshness() == Freshness(DAY_START + 600, NOW + 3, 3.0)
    clock.advance(4)
    store.commit([ev(3, 100, user="u1")])  # older events do not move the newest back
    assert store.freshness() == Freshness(DAY_START + 600, NOW + 7, 7.0)
    clock.advance(5)
    store.commit([ev(3, 100, user="u1")])  # nothing created: nothing processed either
    assert store.freshness() == Freshness(DAY_START + 600, NOW + 7, 7.0)
