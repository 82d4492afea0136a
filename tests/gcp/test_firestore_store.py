"""What only the Firestore store does, against the emulator: its commit protocol (a refused
`create` recomputed, one atomic batch, splitting by request size and transforms), marker
caching and hashed document ids. What every store does is in the contract suite
(tests/contract)."""

from __future__ import annotations

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import build_store

from .helpers import BASE_TS, event, recipe_payload


def _events(n: int, **kw):
    return [event(recipe_payload(i, **kw)) for i in range(n)]


def test_redelivered_batch_changes_nothing(store) -> None:
    """Through the ALREADY_EXISTS path: the batch is refused, its new events recomputed."""
    events = _events(40)
    store.commit(events[:25])
    before = store.snapshot()
    result = store.commit(events)  # 25 redelivered + 15 new
    assert (result.created, result.duplicates) == (15, 25)
    assert store.conflicts >= 1
    result = store.commit(events)
    assert (result.created, result.duplicates) == (0, 40)
    after = store.snapshot()
    assert (
        sum(t for t, _ in after.buckets.values()) == sum(t for t, _ in before.buckets.values()) + 45
    )
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_unique_users_exact_across_batches_and_existing_markers(store) -> None:
    a = [event(recipe_payload(i, user=1)) for i in range(5)]
    b = [event(recipe_payload(i + 5, user=1)) for i in range(5)]
    c = [event(recipe_payload(i + 10, user=2)) for i in range(5)]
    store.commit(a)
    store.commit(b)  # user_1's hour and day markers exist already: not counted again
    store.commit(c)
    hour = Periods().label("hour", BASE_TS)
    day = Periods().label("day", BASE_TS)
    assert store.series("hour", hour, hour)[0].unique_users == 2
    assert store.series("day", day, day)[0].unique_users == 2
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_very_long_user_id_is_hashed_into_the_document_id(store) -> None:
    who = "é" * 256  # 512 bytes; with the prefix still under 1,500
    long_who = "x/" * 128
    store.commit(
        [
            event({**recipe_payload(1), "user_id": who}),
            event({**recipe_payload(2), "user_id": long_who}),
        ]
    )
    assert store.profile(who).total_events == 1
    assert store.profile(long_who).total_events == 1
    from behavioral_analytics.stores.firestore.keys import doc_id

    assert doc_id("user_", "y" * 2000).startswith("user_%H")


def test_batch_too_large_is_split_into_atomic_commits(settings_for) -> None:

    store = build_store(settings_for())
    store.max_request_bytes = 64 * 1024  # force splitting on a small batch
    events = _events(300)
    result = store.commit(events)
    assert result.created == 300
    assert store.commits > 1
    assert store.count_events() == 300
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok
    # Many event types in one hour: more transforms per document than one commit allows.
    store.max_request_bytes = 8 * 1024 * 1024
    store.max_transforms_per_doc = 50
    commits = store.commits
    many = [event({**recipe_payload(1000 + i), "event_type": f"type_{i}"}) for i in range(200)]
    assert store.commit(many).created == 200
    assert store.commits - commits >= 4
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_large_batch_in_one_commit(store) -> None:
    """Firestore commits are no longer limited to 500 writes."""
    result = store.commit(_events(1500))
    assert result.created == 1500
    assert store.commits == 1
