"""Sessions, funnels, identity, bots and forgetting on the SQLite store: applied incrementally,
batch by batch, they equal a recount from raw events, whatever the order and redelivery."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.faults import (
    BOT_AGENT,
    assert_exact,
    behavior_event,
    commit_shuffled,
    expected_links,
    make_workload,
)
from tests.faults import assert_recounts as recounts_cleanly

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0


PURCHASE = parse_funnels(PURCHASE_FUNNEL)


def make_store(tmp_path: Path, **rules: object) -> SQLiteStore:
    rules.setdefault("funnels", PURCHASE)
    return SQLiteStore(
        tmp_path / "store.db",
        rules=BehaviorRules(**rules),
        clock=lambda: NOW,  # type: ignore[arg-type]
    )


def ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, NOW - 86400 + at, received_at=NOW, **fields)


def assert_recounts(store: SQLiteStore) -> None:
    recounts_cleanly(store, NOW)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_in_any_order_with_redelivery_equal_the_recount(tmp_path: Path, seed: int) -> None:
    workload = make_workload(1500, seed, NOW, behavior=True)
    events = list(workload.distinct.values())
    rng = random.Random(seed)
    rng.shuffle(events)
    store = make_store(tmp_path)
    commit_shuffled(store, events, rng)
    assert_exact(store, workload, Periods())
    assert_recounts(store)


def test_an_identify_moves_the_visit_before_it_to_the_user(tmp_path: Path) -> None:
    store = make_store(tmp_path, identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="a1"), ev(2, 60, anon="a1", kind="search")])
    store.commit([ev(3, 10 * HOUR, user="alice")])
    hour = store.periods.label("hour", NOW - 86400)
    assert store.series("hour", hour, hour)[0].unique_users == 1  # the anonymous visitor
    store.commit([ev(4, 120, user="alice", anon="a1", kind="identify")])

    alice = store.profile("alice")
    assert alice is not None and alice.total_events == 4
    assert alice.events_by_type == {"identify": 1, "page_view": 2, "search": 1}
    assert alice.first_seen == NOW - 86400
    assert store.profile("anonymous:a1") is None
    assert store.series("hour", hour, hour)[0].unique_users == 1  # now alice, not two people
    assert [e.event.event_id for e in store.timeline("alice").items] == ["e3", "e4", "e2", "e1"]
    # Later anonymous events count for alice straight away; one session holds the visit.
    store.commit([ev(5, 180, anon="a1")])
    assert store.profile("alice").total_events == 5  # type: ignore[union-attr]
    day = store.periods.label("day", NOW - 86400)
    sessions = {p.period: p.stats for p in store.session_series("day", day, day)}
    assert sessions[day].sessions == 2 and sessions[day].events == 5
    assert_recounts(store)


def test_a_second_user_is_refused_unless_earlier_and_the_trail_is_kept(tmp_path: Path) -> None:
    store = make_store(tmp_path, identity_window_s=HOUR)
    store.commit([ev(1, 100, anon="a1"), ev(2, 200, user="bob", anon="a1", kind="identify")])
    store.commit([ev(3, 300, user="carol", anon="a1", kind="identify")])
    assert store.profile("bob").total_events == 2  # type: ignore[union-attr]
    # An identify that happened earlier arrives late: it wins, as if it had come first.
    store.commit([ev(4, 150, user="alice", anon="a1", kind="identify")])
    statuses = {(link.user_id, link.status) for link in store.links("anonymous:a1")}
    assert statuses == {("alice", "active"), ("bob", "refused"), ("carol", "refused")}
    assert store.profile("alice").total_events == 2  # type: ignore[union-attr]
    assert store.profile("bob").events_by_type == {"identify": 1}  # type: ignore[union-attr]
    assert_recounts(store)


def test_relinking_when_allowed_splits_the_anonymous_history(tmp_path: Path) -> None:
    store = make_store(tmp_path, identity_window_s=0.0, allow_relink=True)
    store.commit(
        [
            ev(1, 100, user="bob", anon="shared", kind="identify"),
            ev(2, 200, anon="shared"),
            ev(3, 300, user="carol", anon="shared", kind="identify"),
            ev(4, 400, anon="shared"),
        ]
    )
    assert store.profile("bob").total_events == 2  # type: ignore[union-attr]
    assert store.profile("carol").total_events == 2  # type: ignore[union-attr]
    assert_recounts(store)


def test_bots_are_kept_flagged_and_counted_apart(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.commit([ev(1, 0, anon="crawler", user_agent=BOT_AGENT), ev(2, 0, user="u1")])
    day = store.periods.label("day", NOW - 86400)
    point = store.series("day", day, day)[0]
    assert (point.total_events, point.unique_users, point.bot_events) == (1, 1, 1)
    assert store.profile("anonymous:crawler") is None
    stored = store.timeline("anonymous:crawler").items
    assert stored[0].event.properties["$bot"] == "Googlebot"
    assert_recounts(store)


def test_session_figures_turn_final_after_the_cap_gap_and_lateness(tmp_path: Path) -> None:
    rules = BehaviorRules(lateness_s=HOUR, funnels=PURCHASE)
    clock = [NOW]
    store = SQLiteStore(tmp_path / "s.db", rules=rules, clock=lambda: clock[0])
    store.commit([ev(1, 0, user="u"), ev(2, 60, user="u"), ev(3, 600, user="v", session="s")])
    hour = store.periods.label("hour", NOW - 86400)
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=2, duration_ms=60_000, bounces=1, events=3)
    assert point.to_dict()["bounce_rate"] == 0.5 and not point.final
    clock[0] = NOW + rules.session_final_after_s()
    assert store.session_series("hour", hour, hour)[0].final


def test_funnel_counts_users_per_step_and_conversion(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    steps = ["page_view", "search", "add_to_cart", "purchase"]
    batch = []
    for u in range(4):
        batch += [
            ev(10 * u + i, 60 * i, user=f"u{u}", kind=k) for i, k in enumerate(steps[: u + 1])
        ]
    store.commit(batch)
    day = store.periods.label("day", NOW - 86400)
    [report] = store.funnel("purchase", day, day)
    assert report.to_dict() == {
        "day": day,
        "users": [4, 3, 2, 1],
        "conversion": [0.75, 0.6667, 0.5],
        "overall": 0.25,
    }


def test_forget_removes_every_trace_and_keeps_redeliveries_out(tmp_path: Path) -> None:
    store = make_store(tmp_path, identity_window_s=HOUR)
    keep = [ev(1, 0, user="bob"), ev(2, 30, user="bob", kind="search")]
    alice = [
        ev(3, 0, anon="a1"),
        ev(4, 60, user="alice", anon="a1", kind="identify"),
        ev(5, 120, user="alice", kind="search"),
        ev(6, 180, user="alice", kind="add_to_cart", session="s1"),
    ]
    store.commit(keep + alice)
    bad = json.dumps({"user_id": "alice", "event_type": "x", "timestamp": "soon"}).encode()
    store.add_dead_letters([NewDeadLetter("invalid_timestamp", "", bad, "m9")])
    report = store.forget("alice")
    assert report.raw_events == 4 and report.dead_letters == 1 and report.links == 1
    assert report.persons == ["alice", "anonymous:a1"]

    assert store.profile("alice") is None and store.profile("anonymous:a1") is None
    assert store.timeline("alice").items == [] and store.links("alice") == []
    assert store.count_dead_letters() == 0
    remaining = list(store.iter_raw_events())
    assert {e.key for e in remaining} == {e.key for e in keep}
    want = recount(remaining, [], store.rules, store.periods)
    snap = store.snapshot()
    assert snap.unique_users == {k: v for k, v in want.deltas.unique_users().items()}
    assert snap.session_stats == want.session_stats
    assert snap.funnel_users == {k: n for k, n in want.funnel_users.items() if n}
    assert_recounts(store)

    # A redelivery of a forgotten event is dropped; a genuinely new event later is counted.
    assert store.commit(alice).created == 0
    assert store.profile("alice") is None
    fresh = ev(7, 86400 + 60, user="alice")
    assert store.commit([fresh]).created == 1
    assert_recounts(store)


def test_a_store_from_before_identity_stitching_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, user_id TEXT, "
        "anonymous_id TEXT, who TEXT NOT NULL, event_type TEXT NOT NULL, timestamp REAL NOT NULL, "
        "session_id TEXT, properties TEXT NOT NULL, received_at REAL NOT NULL, "
        "processed_at REAL NOT NULL, expire_at REAL NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO events VALUES "
        "('k', 'e', 'u1', NULL, 'u1', 'page_view', 1, NULL, '{}', 1, 1, 9e9)"
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert [e.event.key for e in store.timeline("u1").items] == ["k"]
    assert expected_links([]) == []


def test_forget_keeps_an_anonymous_id_whose_proposal_was_refused(tmp_path: Path) -> None:
    """forget(U) deletes every link record naming U (any status) and forgets entirely the
    anonymous ids actively linked to U; an anonymous id whose proposal to U was refused keeps
    its events, its profile and its other links."""
    from dataclasses import astuple

    store = make_store(tmp_path, identity_window_s=HOUR)
    alice = [
        ev(3, 300, user="alice", anon="a2", kind="identify"),  # refused: bob was first
        ev(5, 600, user="alice", anon="a1", kind="identify"),  # active
        ev(7, 800, user="alice", kind="search"),
    ]
    a1 = [ev(4, 500, anon="a1"), ev(6, 700, anon="a1", kind="add_to_cart")]
    bob_link = ev(1, 100, user="bob", anon="a2", kind="identify")
    stays = [
        bob_link,
        ev(2, 50, anon="a2", kind="search"),  # within bob's window: bob's
        ev(8, 400, anon="a2"),  # bob's
        ev(9, -2 * HOUR, anon="a2"),  # before bob's window: a2's own
        ev(10, 200, user="carol"),
    ]
    store.commit(stays[:2])
    store.commit(alice + a1 + stays[2:])
    assert {(k.anonymous_id, k.status) for k in store.links("alice")} == {
        ("a2", "refused"),
        ("a1", "active"),
    }
    assert store.profile("bob").total_events == 3  # type: ignore[union-attr]

    report = store.forget("alice")
    assert report.persons == ["alice", "anonymous:a1"]
    assert report.links == 2  # both proposals naming alice, whatever their status
    assert report.raw_events == len(alice) + len(a1)
    assert store.links("alice") == [] and store.links("anonymous:a1") == []
    want_link = ("a2", "bob", bob_link.timestamp, bob_link.key, "active")
    assert [astuple(k) for k in store.links("anonymous:a2")] == [want_link]
    assert [astuple(k) for k in store.stored_links()] == [want_link]
    assert {e.key for e in store.iter_raw_events()} == {e.key for e in stays}
    assert store.profile("alice") is None and store.profile("anonymous:a1") is None
    assert store.profile("bob").total_events == 3  # type: ignore[union-attr]
    assert store.profile("anonymous:a2").total_events == 1  # type: ignore[union-attr]
    want = recount(store.iter_raw_events(), store.stored_links(), store.rules, store.periods)
    snap = store.snapshot()
    assert snap.unique_users == dict(want.deltas.unique_users())
    assert snap.session_stats == want.session_stats
    assert snap.funnel_users == {k: n for k, n in want.funnel_users.items() if n}
    assert_recounts(store)

    # Redeliveries stay out; a2 still counts for bob.
    assert store.commit(alice + a1).created == 0
    assert store.commit([ev(11, 900, anon="a2")]).created == 1
    assert store.profile("bob").total_events == 4  # type: ignore[union-attr]
    assert_recounts(store)
