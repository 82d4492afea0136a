"""Sessions, funnels, identity, bots and forgetting on the SQLite store: applied incrementally,
batch by batch, they equal a recount from raw events, whatever the order and redelivery."""

from __future__ import annotations

import random
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests import identity_scenarios as scenarios
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
    scenarios.an_identify_moves_the_visit_before_it(partial(make_store, tmp_path))


def test_a_second_user_is_refused_unless_earlier_and_the_trail_is_kept(tmp_path: Path) -> None:
    scenarios.a_second_user_is_refused_unless_earlier(partial(make_store, tmp_path))


def test_relinking_when_allowed_splits_the_anonymous_history(tmp_path: Path) -> None:
    scenarios.relinking_splits_the_anonymous_history(partial(make_store, tmp_path))


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
    scenarios.forget_removes_every_trace(partial(make_store, tmp_path))


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
    scenarios.forget_keeps_an_anonymous_id_refused_for_the_user(partial(make_store, tmp_path))


def test_forget_makes_a_proposal_refused_for_the_user_active(tmp_path: Path) -> None:
    scenarios.forget_makes_a_proposal_refused_for_the_user_active(partial(make_store, tmp_path))


def test_forget_covers_an_event_dated_ahead_of_the_clock(tmp_path: Path) -> None:
    scenarios.forget_covers_an_event_dated_ahead_of_the_clock(partial(make_store, tmp_path))
