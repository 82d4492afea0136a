"""A rejection a client retries: the collector dead-letters the rejected calls of a request, and
the retried request arrives at a new time with the same calls. `NewDeadLetter.retry_fingerprint`
names the rejection across retries; a store keeps at most one dead letter per fingerprint."""

from __future__ import annotations

from behavioral_analytics.store import Store
from tests.conftest import FakeClock
from tests.contract.builders import NOW, dead_letter


def test_the_same_rejection_retried_is_kept_once(store: Store, clock: FakeClock) -> None:
    store.add_dead_letters([dead_letter(1, source="collector", retry_fingerprint="f" * 32)])
    clock.advance(5)
    retried = dead_letter(1, source="collector", received_at=NOW + 5, retry_fingerprint="f" * 32)
    store.add_dead_letters([retried])
    store.add_dead_letters([retried, retried])  # one request holding the same call twice
    [kept] = store.dead_letters().items
    assert (kept.message_id, kept.received_at, kept.recorded_at) == ("m1", NOW, NOW)
    assert store.count_dead_letters() == 1
    assert store.get_dead_letter(kept.id) == kept


def test_rejections_with_different_fingerprints_are_kept_apart(store: Store) -> None:
    store.add_dead_letters(
        [
            dead_letter(1, source="collector", retry_fingerprint="a" * 32),
            dead_letter(1, source="collector", retry_fingerprint="b" * 32),
        ]
    )
    assert store.count_dead_letters() == 2
    assert [d.message_id for d in store.dead_letters().items] == ["m1", "m1"]
