"""What `verify` reads and what `verify --repair` writes: every raw event, every aggregate in
comparable form, and the aggregates rebuilt from a stream of raw events."""

from __future__ import annotations

from behavioral_analytics.events import Event
from behavioral_analytics.store import AggregateSnapshot, Store
from tests.contract.builders import BOT_AGENT, assert_counts, assert_recounts, ev


def _traffic() -> list[Event]:
    """An anonymous visit that identifies, a user down the funnel, a bot: every figure kind."""
    return [
        ev(1, 0, anon="a1"),
        ev(2, 60, anon="a1", kind="search"),
        ev(3, 120, user="alice", anon="a1", kind="identify"),
        ev(4, 300, user="bob"),
        ev(5, 360, user="bob", kind="search"),
        ev(6, 420, user="bob", kind="add_to_cart"),
        ev(7, 480, user="bob", kind="purchase"),
        ev(8, 3 * 3600, user="bob"),
        ev(9, 30, anon="crawler", user_agent=BOT_AGENT),
    ]


def test_iter_raw_events_yields_every_stored_event_once(store: Store) -> None:
    assert list(store.iter_raw_events()) == []
    events = _traffic()
    store.commit(events[:5])
    store.commit(events[3:])
    raw = list(store.iter_raw_events())
    assert len(raw) == len(events)
    assert sorted(raw, key=lambda e: e.key) == sorted(events, key=lambda e: e.key)


def test_snapshot_holds_every_figure_a_recount_gives(store: Store) -> None:
    assert store.snapshot() == AggregateSnapshot()
    events = _traffic()
    store.commit(events)
    snap = store.snapshot()
    assert snap.buckets and snap.unique_users and snap.markers and snap.profiles
    assert snap.bot_events and snap.session_stats and snap.funnel_users
    assert_counts(store, events)


def test_rebuild_replaces_the_aggregates_by_those_of_the_events_given(store: Store) -> None:
    events = _traffic()
    store.commit(events)
    before = store.snapshot()
    part = [e for e in events if e.who != "bob"]
    store.rebuild(iter(part))  # as if bob's events had never been counted: drift
    assert store.profile("bob") is None
    assert_counts(store, part)
    store.rebuild(store.iter_raw_events())  # the repair
    assert store.snapshot() == before
    assert_recounts(store)
    assert store.commit([ev(10, 600, user="bob")]).created == 1  # and counting goes on
    assert_recounts(store)


def test_consistent_reads_see_the_store_and_end_cleanly(store: Store) -> None:
    events = _traffic()
    store.commit(events)
    with store.consistent_reads():
        snapshot = store.snapshot()
        raw = sorted(e.key for e in store.iter_raw_events())
        links = store.stored_links()
    assert raw == sorted(e.key for e in events)
    assert snapshot == store.snapshot() and links == store.stored_links()
    try:
        with store.consistent_reads():
            store.snapshot()
            raise LookupError("a failure inside")
    except LookupError:
        pass
    # Whatever happened inside, the read has ended: commits go on.
    assert store.commit([ev(10, 600, user="carol")]).created == 1
    assert_recounts(store)
