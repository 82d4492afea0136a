"""Bots, sessions and funnels on the Firestore store (the emulator): applied incrementally,
batch by batch and by concurrent writers, they equal a recount from raw events by the same
rules, and `verify` finds no drift. Identity links and forgetting a user are kept too (tested
in test_firestore_identity.py); the workloads here include identifies, and `assert_exact`
compares the stored links with the expected ones."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import NotSupported, TransientStoreError
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore import behavior as firestore_behavior
from behavioral_analytics.stores.firestore import commit as firestore_commit
from behavioral_analytics.stores.firestore.gateway import MAX_CONFLICTS, conflict_backoff_s
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import build_store
from tests.contract.builders import without_copies
from tests.faults import (
    BOT_AGENT,
    assert_exact,
    behavior_event,
    commit_concurrently,
    commit_shuffled,
    make_workload,
)
from tests.faults import assert_recounts as recounts_cleanly

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0
DAY_START = NOW - 86400
PURCHASE = parse_funnels(PURCHASE_FUNNEL)


def make_store(
    settings_for: Callable[..., Any],
    clock: Callable[[], float] = lambda: NOW,
    shards: int = 0,
    behavior: bool = True,
    **rules: Any,
) -> FirestoreStore:
    rules.setdefault("funnels", PURCHASE)
    settings = settings_for()
    return FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        rules=BehaviorRules(**rules),
        clock=clock,
        counter_shards=shards,
        behavior=behavior,
    )


def ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, DAY_START + at, received_at=NOW, **fields)


def assert_recounts(store: FirestoreStore) -> None:
    recounts_cleanly(store, NOW)


def test_the_store_keeps_bots_sessions_funnels_and_links(store) -> None:
    assert store.behavioral
    assert store.stored_links() == []
    assert store.links("user_1") == [] and store.links("anonymous:a1") == []
    report = store.forget("user_1")  # an unknown user: nothing to delete
    assert (report.raw_events, report.links, report.dead_letters) == (0, 0, 0)
    assert (report.sessions, report.funnel_entries) == (0, 0)
    assert list(store.iter_raw_events()) == []


@pytest.mark.parametrize(("seed", "digest_max", "shards"), [(1, None, 0), (2, None, 3), (3, 4, 0)])
def test_batches_in_any_order_with_redelivery_equal_the_recount(
    settings_for, monkeypatch, seed: int, digest_max: int | None, shards: int
) -> None:
    if digest_max is not None:  # digests cut short: more recomputations query raw events
        monkeypatch.setattr(firestore_behavior, "DIGEST_MAX", digest_max)
    workload = make_workload(1500, seed, NOW, behavior=True)
    events = list(workload.distinct.values())
    rng = random.Random(seed)
    rng.shuffle(events)
    store = make_store(settings_for, shards=shards)  # with shards, figures sum over them
    commit_shuffled(store, events, rng)
    snapshot = store.snapshot()
    assert snapshot.bot_events and snapshot.session_stats and snapshot.funnel_users
    # Within the workload's four hours the digests reach back far enough; cut short, they
    # do not, and those recomputations query the raw events.
    assert (store.behavior_queries > 0) == (digest_max is not None)
    assert_exact(store, workload, Periods())
    assert_recounts(store)
    # verify --repair's rebuild writes the same read model back (less the digests it drops).
    store.rebuild(store.iter_raw_events())
    assert without_copies(store.snapshot()) == without_copies(snapshot)
    more = make_workload(300, seed + 10, NOW, behavior=True)
    store.commit(list(more.distinct.values()))  # and increments on top of it stay exact
    assert_recounts(store)


def test_bots_are_kept_flagged_and_counted_apart(settings_for) -> None:
    store = make_store(settings_for)
    store.commit([ev(1, 0, anon="crawler", user_agent=BOT_AGENT), ev(2, 0, user="u1")])
    day = store.periods.label("day", DAY_START)
    point = store.series("day", day, day)[0]
    assert (point.total_events, point.unique_users, point.bot_events) == (1, 1, 1)
    assert store.profile("anonymous:crawler") is None
    [stored] = store.timeline("anonymous:crawler").items
    assert stored.event.properties["$bot"] == "Googlebot"
    # A minute of bots only: counted apart, no human bucket.
    store.commit([ev(3, 600, anon="crawler", user_agent=BOT_AGENT)])
    minute = store.periods.label("minute", DAY_START + 600)
    assert [(p.total_events, p.bot_events) for p in store.series("minute", minute, minute)] == [
        (0, 1)
    ]  # a period of crawlers only is returned (docs/api.md)
    assert store.snapshot().bot_events["minute", minute] == 1
    assert store.series("day", day, day)[0].bot_events == 2
    assert_recounts(store)


def test_sessions_per_hour_and_day_and_when_they_turn_final(settings_for) -> None:
    rules = BehaviorRules(lateness_s=HOUR, funnels=PURCHASE)
    clock = [NOW]
    store = make_store(settings_for, lambda: clock[0], lateness_s=HOUR)
    store.commit([ev(1, 0, user="u"), ev(2, 60, user="u"), ev(3, 600, user="v", session="s")])
    hour = store.periods.label("hour", DAY_START)
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=2, duration_ms=60_000, bounces=1, events=3)
    assert point.to_dict()["bounce_rate"] == 0.5 and not point.final
    # A late event between two visits joins them into one session; a client session grows.
    store.commit([ev(4, 3000, user="u"), ev(5, 700, user="v", session="s")])
    store.commit([ev(6, 1500, user="u")])
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=2, duration_ms=3_100_000, bounces=0, events=6)
    clock[0] = NOW + rules.session_final_after_s()
    assert store.session_series("hour", hour, hour)[0].final
    with pytest.raises(Exception, match="per hour and per day"):
        store.session_series("minute")
    assert_recounts(store)


def test_funnel_counts_users_per_step_and_conversion(settings_for) -> None:
    store = make_store(settings_for)
    steps = ["page_view", "search", "add_to_cart", "purchase"]
    for u in range(4):  # one batch per user, steps out of order across two batches
        kinds = list(enumerate(steps[: u + 1]))
        store.commit([ev(10 * u + i, 60 * i, user=f"u{u}", kind=k) for i, k in kinds[1:]])
        store.commit([ev(10 * u, 0, user=f"u{u}", kind=kinds[0][1])])
    day = store.periods.label("day", DAY_START)
    [report] = store.funnel("purchase", day, day)
    assert report.to_dict() == {
        "day": day,
        "users": [4, 3, 2, 1],
        "conversion": [0.75, 0.6667, 0.5],
        "overall": 0.25,
    }
    with pytest.raises(Exception, match="no funnel named"):
        store.funnel("nope")
    assert_recounts(store)


def test_a_writer_that_touched_the_same_person_meanwhile_is_recomputed(settings_for) -> None:
    a = make_store(settings_for)
    b = make_store(settings_for)
    a.commit([ev(1, 0, user="u"), ev(2, 100, user="u", kind="search")])
    read = a.gateway.get
    pending = [lambda: b.commit([ev(3, 2500, user="u"), ev(4, 2600, user="u", kind="search")])]

    def get(names: Any, mask: Any) -> Any:  # b commits between a's profile read and its commit
        found = read(names, mask)
        if pending and "kind" not in mask:
            pending.pop()()
        return found

    a.gateway.get = get  # type: ignore[method-assign]
    # An event between two visits (b's lands first): one session of all five.
    result = a.commit([ev(5, 1300, user="u", kind="add_to_cart")])
    assert result.created == 1 and a.conflicts >= 1
    hour = a.periods.label("hour", DAY_START)
    [point] = a.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=1, duration_ms=2_600_000, bounces=0, events=5)
    assert_recounts(a)


def test_concurrent_writers_on_the_same_people_stay_exact(settings_for) -> None:
    workload = make_workload(1200, 5, NOW, behavior=True)
    events = list(workload.distinct.values())
    random.Random(5).shuffle(events)
    stores = [make_store(settings_for) for _ in range(3)]
    commit_concurrently(stores, [events[k::3] for k in range(3)], 15)
    assert_exact(stores[0], workload, Periods())
    assert_recounts(stores[0])


def test_a_commit_that_keeps_losing_the_race_backs_off_then_leaves_it_to_redelivery(
    settings_for, monkeypatch
) -> None:
    store = make_store(settings_for)
    store.commit([ev(1, 0, user="u")])
    send, sends, waits = store.gateway.send, [], []

    def conflicting(writes: Any) -> None:  # another writer changes u's profile every time
        sends.append(writes)
        raise gexc.FailedPrecondition("the stored version does not match the base version")

    def backoff(conflicts: int) -> float:
        waits.append(conflict_backoff_s(conflicts))
        return 0.0

    monkeypatch.setattr(firestore_commit, "conflict_backoff_s", backoff)
    store.gateway.send = conflicting  # type: ignore[method-assign]
    with pytest.raises(TransientStoreError, match="kept conflicting"):
        store.commit([ev(2, 60, user="u", kind="search")])
    assert len(sends) == MAX_CONFLICTS + 1 and len(waits) == MAX_CONFLICTS
    assert all(0 <= w <= min(0.5, 0.01 * 2**n) for n, w in enumerate(waits, 1))
    assert max(waits[:3]) <= 0.08 < max(waits[10:])  # the spread grows with each lost race
    store.gateway.send = send  # type: ignore[method-assign]
    assert store.commit([ev(2, 60, user="u", kind="search")]).created == 1  # the redelivery
    assert_recounts(store)


def test_without_the_behavioral_model_bots_count_as_before(settings_for, monkeypatch) -> None:
    monkeypatch.setenv("BA_FIRESTORE_BEHAVIOR", "false")
    store = build_store(settings_for())
    assert not store.behavioral
    store.commit([ev(1, 0, anon="crawler", user_agent=BOT_AGENT), ev(2, 0, user="u1")])
    day = store.periods.label("day", DAY_START)
    point = store.series("day", day, day)[0]
    assert (point.total_events, point.bot_events) == (2, None)
    with pytest.raises(NotSupported):
        store.session_series("day")
    with pytest.raises(NotSupported):
        store.funnel("purchase")
    assert verify(store, store.periods, now=NOW, retention_s=None).ok


def test_the_recount_matches_the_generator_shape(settings_for) -> None:
    """The read model's figures equal `behavior.recount` over the raw events read back."""
    store = make_store(settings_for)
    workload = make_workload(400, 9, NOW, behavior=True)
    store.commit(list(workload.distinct.values()))
    counted = recount(store.iter_raw_events(), store.stored_links(), store.rules, store.periods)
    sessions = {p.period: p.stats for p in store.session_series("hour")}
    assert sessions == {p: s for (g, p), s in counted.session_stats.items() if g == "hour"}
    funnel = {d.day: d.users_by_step for d in store.funnel("purchase")}
    want = {
        d: [counted.funnel_users.get(("purchase", d, s), 0) for s in range(1, 5)]
        for (_, d, _) in counted.funnel_users
    }
    assert funnel == {d: users for d, users in want.items() if users[0]}


def test_in_order_traffic_reads_the_digest_not_the_raw_events(settings_for) -> None:
    store = make_store(settings_for)
    kinds = ["page_view", "search", "add_to_cart", "purchase", "button_click"]
    for flush in range(6):  # a visit per user, arriving in time order over six flushes
        store.commit(
            [
                ev(100 * u + flush, 120 * flush, user=f"u{u}", kind=kinds[flush % 5])
                for u in range(5)
            ]
        )
    assert store.behavior_queries == 0
    hour = store.periods.label("hour", DAY_START)
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=5, duration_ms=5 * 600_000, bounces=0, events=30)
    day = store.periods.label("day", DAY_START)
    assert store.funnel("purchase", day, day)[0].users_by_step == [5, 5, 5, 5]
    # A late event, more than a session cap before the newest: the digest does not reach it.
    store.commit([ev(999, -2 * 86400 + 60, user="u0")])
    assert store.behavior_queries == 1
    assert_recounts(store)
