"""The Firestore store against the emulator: the same semantics as the SQLite store."""

from __future__ import annotations

from collections import Counter

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.verification import verify

from .helpers import BASE_TS, event, recipe_payload


def _events(n: int, **kw):
    return [event(recipe_payload(i, **kw)) for i in range(n)]


def test_commit_creates_events_and_increments(store) -> None:
    events = _events(60)
    result = store.commit(events)
    assert (result.created, result.duplicates) == (60, 0)
    assert store.commits == 1  # one atomic batch
    assert store.count_events() == 60
    hour = Periods().label("hour", events[0].timestamp)
    [point] = store.series("hour", hour, hour)
    assert point.total_events == 60
    assert point.events_by_type == dict(Counter(e.event_type for e in events))
    assert point.unique_users == len({e.who for e in events})
    profile = store.profile("user_1")
    assert profile is not None
    assert profile.total_events == sum(e.who == "user_1" for e in events)
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_redelivered_batch_changes_nothing(store) -> None:
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


def test_duplicates_within_one_batch(store) -> None:
    events = _events(10)
    result = store.commit(events + events[:3])
    assert (result.created, result.duplicates) == (10, 3)
    assert store.count_events() == 10


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


def test_awkward_names_round_trip(store) -> None:
    payloads = [
        {**recipe_payload(1), "user_id": "team/alice", "event_type": "checkout.step_2"},
        {**recipe_payload(2), "user_id": "team/alice", "event_type": "`odd`.type"},
        {**recipe_payload(3), "user_id": "..", "event_type": "__x__"},
        {
            **recipe_payload(4),
            "user_id": "%2F",
            "event_type": "~tilde",
            "properties": {"a.b": 1, "__reserved__": {"x/y": [{"__n__": 2}]}, "`q`": "v"},
        },
    ]
    events = [event(p) for p in payloads]
    store.commit(events)
    alice = store.profile("team/alice")
    assert alice is not None
    assert alice.events_by_type == {"checkout.step_2": 1, "`odd`.type": 1}
    assert store.profile("..").events_by_type == {"__x__": 1}
    assert store.profile("%2F") is not None
    assert store.profile("/") is None  # percent-encoding keeps them apart
    [stored] = store.timeline("%2F").items
    assert stored.event.properties == payloads[3]["properties"]
    assert [s.event.key for s in store.events_by_type("checkout.step_2").items] == [events[0].key]
    day = Periods().label("day", BASE_TS)
    types = store.series("day", day, day)[0].events_by_type
    assert set(types) == {"checkout.step_2", "`odd`.type", "__x__", "~tilde"}
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
    from behavioral_analytics.stores.firestore_keys import doc_id

    assert doc_id("user_", "y" * 2000).startswith("user_%H")


def test_batch_too_large_is_split_into_atomic_commits(settings_for) -> None:
    from behavioral_analytics.stores.firestore import FirestoreStore

    store = FirestoreStore.from_settings(settings_for())
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


def test_timeline_pagination(store) -> None:
    events = [event(recipe_payload(i, user=7, ts=BASE_TS + (i // 2))) for i in range(25)]
    store.commit(events)
    seen, cursor = [], None
    while True:
        page = store.timeline("user_7", limit=4, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 25
    assert len({s.event.key for s in seen}) == 25
    stamps = [s.event.timestamp for s in seen]
    assert stamps == sorted(stamps, reverse=True)
    by_type = store.events_by_type("purchase", limit=2)
    assert all(s.event.event_type == "purchase" for s in by_type.items)


def test_dead_letters_same_batch_idempotent_and_paged(store) -> None:
    dead = [
        NewDeadLetter(
            reason="not_json",
            detail="",
            data=f"bad {i}".encode(),
            message_id=f"m{i}",
            received_at=BASE_TS + i,
        )
        for i in range(7)
    ]
    store.commit(_events(3), dead)
    store.commit(_events(3), dead)  # redelivered: recorded once
    assert store.count_dead_letters() == 7
    seen, cursor = [], None
    while True:
        page = store.dead_letters(limit=3, cursor=cursor)
        seen.extend(page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(d.message_id for d in seen) == sorted(d.message_id for d in dead)
    first = store.get_dead_letter(seen[0].id)
    assert first is not None and first.data.startswith(b"bad")
    store.mark_replayed([first.id], BASE_TS)
    assert store.get_dead_letter(first.id).replayed_at == BASE_TS
    assert store.get_dead_letter("nope") is None


def test_active_users_freshness_and_rebuild(store) -> None:
    events = _events(50)
    store.commit(events)
    assert store.active_users(0) == len({e.who for e in events})
    assert store.active_users(max(e.timestamp for e in events) + 1) == 0
    fresh = store.freshness()
    assert fresh.newest_event_at == max(e.timestamp for e in events)
    assert fresh.last_commit_at is not None
    snap = store.snapshot()
    store.rebuild(store.iter_raw_events())
    assert store.snapshot() == snap
    report = verify(store, Periods(), now=BASE_TS, retention_s=None)
    assert report.ok and report.raw_events == 50
