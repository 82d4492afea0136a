"""A SQLite store file written when `breakdown_buckets` and `breakdown_sessions` held a row
per counted value is migrated on open to a row per (granularity, period, dimension) with every
value's counts, the same counts; they keep moving exactly (a late event that becomes a
session's first moves its entry page, `forget` takes a person's events, unique users and
sessions out), and `verify` finds no drift. A commit writes one row per set it changes: a
session moving between values does not add a row per value, and a set whose every count comes
to zero leaves no row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

RULES = BehaviorRules(breakdowns=BreakdownRules(("page", "country"), 5))

# The tables as the earlier layout created them, filled from the current ones.
_OLD_TABLES = """
ALTER TABLE breakdown_sessions RENAME TO sets;
CREATE TABLE breakdown_sessions (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  dimension TEXT NOT NULL,
  value TEXT NOT NULL,
  sessions INTEGER NOT NULL,
  PRIMARY KEY (granularity, period, dimension, value)
) WITHOUT ROWID;
INSERT INTO breakdown_sessions
SELECT s.granularity, s.period, s.dimension, j.key, j.value
FROM sets AS s, json_each(s.sessions) AS j;
DROP TABLE sets;
ALTER TABLE breakdown_buckets RENAME TO sets;
CREATE TABLE breakdown_buckets (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  dimension TEXT NOT NULL,
  value TEXT NOT NULL,
  events INTEGER NOT NULL,
  unique_users INTEGER NOT NULL,
  PRIMARY KEY (granularity, period, dimension, value)
) WITHOUT ROWID;
INSERT INTO breakdown_buckets
SELECT s.granularity, s.period, s.dimension, j.key, j.value,
       coalesce(json_extract(s.unique_users, '$."' || j.key || '"'), 0)
FROM sets AS s, json_each(s.events) AS j;
DROP TABLE sets;
"""


def _store(path: Path) -> SQLiteStore:
    return SQLiteStore(path, rules=RULES, clock=FakeClock(NOW))


def _page(n: int, at: float, user: str, path: str) -> Event:
    return ev(n, at, user=user, page_url=f"https://shop.example/{path}")


def _visits() -> list[Event]:
    return [_page(1, 100, "u1", "a"), _page(2, 200, "u1", "b"), _page(3, 300, "u2", "c")]


def _rows(path: Path, table: str = "breakdown_sessions") -> list[tuple[object, ...]]:
    """The rows of `table`, its JSON objects decoded (their keys' order is not kept)."""
    db = sqlite3.connect(path)
    rows = db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
    db.close()
    return [(*row[:3], *map(json.loads, row[3:])) for row in rows]


def _entry_pages(store: SQLiteStore) -> dict[str, int]:
    (point,) = store.breakdown("entry_page", "day")
    assert point.sessions is not None
    return point.sessions


def test_a_row_per_value_becomes_a_row_per_set_with_the_same_counts(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = _store(path)
    store.commit(_visits())
    entries, exits = _entry_pages(store), store.breakdown("exit_page", "hour")
    pages = store.breakdown("page", "day")
    store.close()
    packed = {table: _rows(path, table) for table in ("breakdown_buckets", "breakdown_sessions")}
    db = sqlite3.connect(path)
    db.executescript(_OLD_TABLES)
    by_value = db.execute("SELECT count(*) FROM breakdown_buckets").fetchone()[0]
    db.close()
    assert by_value > len(packed["breakdown_buckets"])  # the old layout had a row per value

    store = _store(path)
    assert {table: _rows(path, table) for table in packed} == packed
    assert _entry_pages(store) == entries == {"/a": 1, "/c": 1}
    assert store.breakdown("exit_page", "hour") == exits
    assert store.breakdown("page", "day") == pages
    assert pages[0].events == {"/a": 1, "/b": 1, "/c": 1}
    assert pages[0].unique_users == pages[0].events
    assert verify(store, store.periods, now=NOW, retention_s=None).ok

    store.commit([_page(4, 50, "u1", "z")])  # u1's new first event: /a out, /z in
    assert _entry_pages(store) == {"/z": 1, "/c": 1}
    store.forget("u2")
    assert _entry_pages(store) == {"/z": 1}
    (day,) = store.breakdown("page", "day")
    assert day.events == {"/a": 1, "/b": 1, "/z": 1} and day.unique_users == day.events
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
    _store(path).close()  # opened again: nothing left to migrate


def test_a_commit_writes_a_row_per_set_and_drops_a_set_counted_to_zero(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = _store(path)
    store.commit([_page(1, 100, "u1", "a")])
    sets = {(g, d) for g, _, d, _ in _rows(path)}
    assert len(_rows(path)) == len(sets)  # hour and day, per session dimension: one row each
    store.commit([_page(2, 50, "u1", "z")])  # the entry page moves from /a to /z
    assert len(_rows(path)) == len(sets)
    assert _entry_pages(store) == {"/z": 1}
    store.forget("u1")
    assert _rows(path) == [] and _rows(path, "breakdown_buckets") == []
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
