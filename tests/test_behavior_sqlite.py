"""The SQLite store's behavioral read model under many generated batches in any order with
redelivery, and its migration of older files. The scenarios every store must pass (sessions,
funnels, identity, bots, forgetting) are in the contract suite (tests/contract)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.faults import (
    assert_exact,
    commit_shuffled,
    expected_links,
    make_workload,
)
from tests.faults import assert_recounts as recounts_cleanly

NOW = 1_764_320_400.0  # on the hour


PURCHASE = parse_funnels(PURCHASE_FUNNEL)


def make_store(tmp_path: Path, **rules: object) -> SQLiteStore:
    rules.setdefault("funnels", PURCHASE)
    return SQLiteStore(
        tmp_path / "store.db",
        rules=BehaviorRules(**rules),
        clock=lambda: NOW,  # type: ignore[arg-type]
    )


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
