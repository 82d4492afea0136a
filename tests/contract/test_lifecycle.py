"""Setting a store up, checking it can be reached, closing it, and expiring raw events."""

from __future__ import annotations

from behavioral_analytics.store import Store
from tests.conftest import FakeClock
from tests.contract.builders import NOW, MakeStore, ev


def test_init_says_what_it_did_and_can_run_again(store: Store) -> None:
    for _ in range(2):
        said = store.init()
        assert said and all(isinstance(line, str) and line for line in said)
    assert store.commit([ev(1, 0, user="u1")]).created == 1


def test_ping_passes_on_a_reachable_store(store: Store) -> None:
    assert store.ping() is None


def test_what_one_instance_committed_another_reads_after_it_closed(
    make_store: MakeStore,
) -> None:
    writer = make_store()
    batch = [ev(1, 0, user="u1"), ev(2, 60, user="u1", kind="search")]
    writer.commit(batch)
    writer.close()
    reader = make_store()
    profile = reader.profile("u1")
    assert profile is not None and profile.total_events == 2
    assert reader.commit(batch).created == 0  # the dedupe memory is in the store, not in memory


def test_purge_expired_deletes_only_raw_events_past_retention(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """Raw events expire `raw_retention_s` after they were processed. A store that keeps the
    port's `purge_expired` leaves expiry to its backend (Firestore's TTL policy) and purges
    nothing; one that overrides it deletes exactly the expired events. The aggregates stay
    either way: they outlive the raw events."""
    store = make_store(raw_retention_s=100)
    purges = type(store).purge_expired is not Store.purge_expired
    store.commit([ev(1, 0, user="u1")])
    clock.advance(60)
    store.commit([ev(2, 60, user="u1")])
    aggregates = store.snapshot()
    assert store.purge_expired(NOW + 99) == 0
    assert len(list(store.iter_raw_events())) == 2
    purged = store.purge_expired(NOW + 101)  # the first is past retention, the second is not
    remaining = {e.event_id for e in store.iter_raw_events()}
    assert (purged, remaining) == ((1, {"e2"}) if purges else (0, {"e1", "e2"}))
    assert store.purge_expired(NOW + 1000) == (1 if purges else 0)
    assert store.snapshot() == aggregates
