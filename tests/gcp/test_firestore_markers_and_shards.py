"""Unique-user markers kept in the profiles (race-safe across workers), and counter shards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.cloud import firestore

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.dimensions import DIMENSIONS
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import build_store
from tests.contract.builders import without_copies

from .helpers import BASE_TS, event, recipe_payload

HOUR = Periods().label("hour", BASE_TS)
DAY = Periods().label("day", BASE_TS)


def _events(users: range, per_user: int, ts: float = BASE_TS, first: int = 0) -> list:
    return [
        event(recipe_payload(first + u * per_user + i, user=u, ts=ts + i))
        for u in users
        for i in range(per_user)
    ]


def _raw(store: FirestoreStore) -> firestore.Client:
    return store.db


def _run_after_profile_read(store: FirestoreStore, action: Callable[[], None]) -> None:
    """Make `action` happen between `store`'s first profile read and its commit."""
    read = store.gateway.get
    pending = [action]

    def get(names: Any, mask: Any) -> Any:
        found = read(names, mask)
        if pending and "kind" not in mask:
            pending.pop()()
        return found

    store.gateway.get = get  # type: ignore[method-assign]


def _hour_uniques(store: FirestoreStore) -> int | None:
    [point] = store.series("hour", HOUR, HOUR)
    return point.unique_users


def test_markers_live_in_the_profile_and_cost_no_extra_writes(store) -> None:
    events = _events(range(1, 6), 4)  # 5 users, 20 events, one minute
    store.commit(events)
    # 20 raw events + 5 profiles + hour (with its minute) and day buckets, each carrying its
    # period's breakdowns (every default dimension) + freshness: no marker documents.
    assert len(DIMENSIONS) > 2
    assert store.write_ops == 20 + 5 + 2 + 1
    profile = _raw(store).collection("analytics_aggregates").document("user_user_1").get()
    assert profile.get("unique_hours") == {HOUR: True}
    assert profile.get("unique_days") == {DAY: True}
    collections = {c.id for c in _raw(store).collections()}
    # analytics_metadata: the configuration recorded with the data, one document.
    assert collections == {
        "user_events",
        "analytics_aggregates",
        "pipeline_state",
        "analytics_metadata",
    }
    assert _hour_uniques(store) == 5
    snapshot = store.snapshot()
    assert ("hour", HOUR, "user_3") in snapshot.markers
    assert ("day", DAY, "user_3") in snapshot.markers
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_a_profile_created_meanwhile_fails_the_batch_and_is_recounted(settings_for) -> None:
    a = build_store(settings_for())
    b = build_store(settings_for())
    _run_after_profile_read(a, lambda: b.commit(_events(range(1, 2), 2, first=100)))
    result = a.commit(_events(range(1, 3), 3))  # user_1 is new when a reads, not at its commit
    assert result.created == 6
    assert a.conflicts >= 1
    assert _hour_uniques(a) == 2
    assert a.profile("user_1").total_events == 5
    assert verify(a, Periods(), now=BASE_TS, retention_s=None).ok


def test_a_marker_added_meanwhile_fails_the_batch_and_is_recounted(settings_for) -> None:
    a = build_store(settings_for())
    b = build_store(settings_for())
    a.commit(_events(range(1, 3), 1))  # both profiles exist, with this hour's markers
    later = BASE_TS + 3600  # the next hour: a new marker for each user
    _run_after_profile_read(a, lambda: b.commit(_events(range(1, 2), 1, ts=later, first=100)))
    a.commit(_events(range(1, 3), 2, ts=later, first=200))
    assert a.conflicts >= 1  # user_1's profile changed between a's read and a's commit
    next_hour = Periods().label("hour", later)
    [point] = a.series("hour", next_hour, next_hour)
    assert point.unique_users == 2
    assert verify(a, Periods(), now=later, retention_s=None).ok


def test_markers_known_to_the_store_need_no_read_and_no_precondition(settings_for) -> None:
    # Only without the behavioral read model: with it every profile is read (its sessions
    # and funnel progress) and written under its update time (tests/gcp/test_firestore_behavior).
    store = build_store(settings_for())
    store.behavioral = False
    store.commit(_events(range(1, 4), 2))
    reads: list[int] = []
    read = store.gateway.get

    def get(names: Any, mask: Any) -> Any:
        reads.append(len(names))
        return read(names, mask)

    store.gateway.get = get  # type: ignore[method-assign]
    store.commit(_events(range(1, 4), 2, first=50))  # same users, same hour and day
    assert reads == []
    assert _hour_uniques(store) == 3
    store.commit(_events(range(3, 5), 1, first=90))  # user_4 is new: only it is read
    assert reads == [1]
    assert _hour_uniques(store) == 4
    assert verify(store, Periods(), now=BASE_TS, retention_s=None).ok


def test_expired_markers_are_pruned_when_the_profile_gains_a_day(settings_for) -> None:
    now = [BASE_TS]
    settings = settings_for()
    store = FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        raw_retention_s=10 * 86400.0,
        marker_retention_s=20 * 86400.0,
        clock=lambda: now[0],
    )
    store.commit(_events(range(1, 2), 2))
    now[0] = later = BASE_TS + 25 * 86400
    store.commit(_events(range(1, 2), 2, ts=later, first=10))
    markers = store.snapshot().markers
    assert not any(period.startswith(DAY) for _, period, _ in markers)
    later_day = Periods().label("day", later)
    assert ("day", later_day, "user_1") in markers
    assert store.series("day", DAY, DAY)[0].unique_users == 1  # the count itself stays
    assert verify(store, Periods(), now=later, retention_s=10 * 86400.0).ok


def test_counter_shards_spread_writes_and_sum_on_read(settings_for, monkeypatch) -> None:
    from behavioral_analytics.settings import load_settings

    monkeypatch.setenv("BA_FIRESTORE_COUNTER_SHARDS", "4")
    assert load_settings().firestore_counter_shards == 4
    sharded = build_store(settings_for(firestore_counter_shards=4))
    plain = build_store(settings_for(firestore_counter_shards=0))
    assert sharded.counter_shards == 4
    plain.commit(_events(range(1, 4), 2))  # the single documents, from before sharding
    for n in range(12):
        sharded.commit(_events(range(n % 5 + 1, n % 5 + 3), 2, first=100 + 100 * n))
    ids = {s.id for s in sharded.db.collection("analytics_aggregates").stream()}
    hour_docs = {i for i in ids if i.startswith(f"hourly_{HOUR}")}
    # The unsharded document still counts; twelve flushes took turns over the four shards.
    assert hour_docs == {f"hourly_{HOUR}"} | {f"hourly_{HOUR}_shard{k}" for k in range(4)}
    state = {s.id for s in sharded.db.collection("pipeline_state").stream()}
    assert state == {"freshness"} | {f"freshness_shard{k}" for k in range(4)}
    [point] = sharded.series("hour", HOUR, HOUR)
    assert point.total_events == 6 + 12 * 4
    assert point.unique_users == 6  # user_1 … user_6, each counted once across shards
    assert sum(point.events_by_type.values()) == point.total_events
    assert [p.period for p in sharded.series("day", DAY, DAY)] == [DAY]
    assert sharded.freshness().last_commit_at is not None
    assert verify(sharded, Periods(), now=BASE_TS, retention_s=None).ok
    snapshot = sharded.snapshot()
    sharded.rebuild(sharded.iter_raw_events())
    assert without_copies(sharded.snapshot()) == without_copies(snapshot)
