"""`Store.commit`: raw events created once, the deltas of exactly the created ones applied,
whatever is redelivered, duplicated or reordered."""

from __future__ import annotations

import random

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.store import Store
from tests.conftest import FakeClock
from tests.contract.builders import DAY_START, HOUR, NOW, assert_recounts, ev
from tests.faults import assert_exact, commit_shuffled, make_workload


def test_commit_creates_the_events_and_applies_exactly_their_deltas(
    store: Store, clock: FakeClock
) -> None:
    batch = [
        ev(1, 0, user="u1"),
        ev(2, 60, user="u1", kind="purchase"),
        ev(3, HOUR, user="u2"),
    ]
    clock.advance(5)
    result = store.commit(batch)
    assert (result.created, result.duplicates, result.dead_letters) == (3, 0, 0)
    assert result.created_by_type == {"page_view": 2, "purchase": 1}
    assert result.max_lag_s == clock.now - NOW  # processed at the clock, received at NOW

    profile = store.profile("u1")
    assert profile is not None
    assert (profile.who, profile.total_events) == ("u1", 2)
    assert profile.events_by_type == {"page_view": 1, "purchase": 1}
    assert (profile.first_seen, profile.last_activity) == (DAY_START, DAY_START + 60)
    day = [(p.period, p.total_events, p.unique_users) for p in store.series("day")]
    assert day == [("2025-11-27", 3, 2)]
    hours = [(p.period, p.total_events, p.unique_users) for p in store.series("hour")]
    assert hours == [("2025-11-27-09", 2, 1), ("2025-11-27-10", 1, 1)]
    minutes = store.series("minute")
    assert [(p.period, p.total_events) for p in minutes] == [
        ("2025-11-27-09-00", 1),
        ("2025-11-27-09-01", 1),
        ("2025-11-27-10-00", 1),
    ]
    assert all(p.unique_users is None for p in minutes)  # not kept per minute
    assert_recounts(store)


def test_a_redelivered_batch_changes_nothing(store: Store) -> None:
    batch = [ev(i, 60 * i, user=f"u{i % 3}") for i in range(10)]
    store.commit(batch)
    before = store.snapshot()
    again = store.commit(batch)
    assert (again.created, again.duplicates, again.created_by_type) == (0, 10, {})
    assert store.snapshot() == before
    assert len(list(store.iter_raw_events())) == store.count_events() == 10


def test_give_up_is_asked_only_while_waiting_for_a_lock_another_process_holds(
    store: Store,
) -> None:
    """A stopping worker passes a `give_up` that says True at once: with no other writer there
    is nothing to wait for, so the commit is made (SQLite asks only between tries at a write
    lock another connection holds: tests/test_worker_stop_bounds.py; Firestore never asks)."""
    asked: list[bool] = []

    def give_up() -> bool:
        asked.append(True)
        return True

    result = store.commit([ev(1, 0, user="u1"), ev(2, 60, user="u2")], give_up=give_up)
    assert (result.created, asked) == (2, [])
    assert store.count_events() == 2


def test_a_partly_new_batch_counts_only_its_new_events(store: Store) -> None:
    store.commit([ev(1, 0, user="u1"), ev(2, 60, user="u1")])
    result = store.commit([ev(2, 60, user="u1"), ev(3, 120, user="u1"), ev(3, 120, user="u1")])
    assert (result.created, result.duplicates) == (1, 2)  # one stored before, one twice here
    profile = store.profile("u1")
    assert profile is not None and profile.total_events == 3
    day = store.series("day")[0]
    assert (day.total_events, day.unique_users) == (3, 1)
    assert_recounts(store)


def test_batches_in_any_order_with_redelivery_equal_the_recount(store: Store) -> None:
    """Generated traffic (visits down the funnel, identifies, bots, weak ids colliding across
    users), shuffled out of time order, committed in random batches with part redelivered."""
    workload = make_workload(200, 1, NOW, behavior=True)
    events = list(workload.distinct.values())
    rng = random.Random(1)
    rng.shuffle(events)
    commit_shuffled(store, events, rng)
    snap = store.snapshot()
    assert snap.bot_events and snap.session_stats and snap.funnel_users and store.stored_links()
    assert_exact(store, workload, Periods())
    assert_recounts(store)


def test_awkward_user_ids_event_types_and_property_keys_round_trip(store: Store) -> None:
    properties = {"a.b": 1, "__reserved__": {"x/y": [{"__n__": 2}]}, "`q`": "v"}
    batch = [
        ev(1, 0, user="team/alice", kind="checkout.step_2"),
        ev(2, 1, user="team/alice", kind="`odd`.type"),
        ev(3, 2, user="..", kind="__x__"),
        ev(4, 3, user="%2F", kind="~tilde", **properties),
    ]
    assert store.commit(batch).created == 4
    alice = store.profile("team/alice")
    assert alice is not None
    assert alice.events_by_type == {"checkout.step_2": 1, "`odd`.type": 1}
    dots = store.profile("..")
    assert dots is not None and dots.events_by_type == {"__x__": 1}
    assert store.profile("%2F") is not None and store.profile("/") is None
    [stored] = store.timeline("%2F").items
    assert stored.event.properties == properties
    assert [s.event.key for s in store.events_by_type("checkout.step_2").items] == [batch[0].key]
    types = store.series("day")[0].events_by_type
    assert types == {"checkout.step_2": 1, "`odd`.type": 1, "__x__": 1, "~tilde": 1}
    assert_recounts(store)
