"""A SQLite store file whose raw events are in a `WITHOUT ROWID` table keyed by `key` (the layout
before issue #17's growth work) is rebuilt on open as a rowid table with `key` in a UNIQUE
index: the same events, the same indexes, duplicates still dropped, and `verify` agreeing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

# The events table as files before the rebuild had it.
_KEYED_EVENTS = """
CREATE TABLE events (
  key TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  user_id TEXT,
  anonymous_id TEXT,
  who TEXT NOT NULL,
  event_type TEXT NOT NULL,
  timestamp REAL NOT NULL,
  session_id TEXT,
  properties TEXT NOT NULL,
  received_at REAL NOT NULL,
  processed_at REAL NOT NULL,
  expire_at REAL NOT NULL,
  person TEXT NOT NULL,
  bot INTEGER NOT NULL DEFAULT 0,
  call TEXT,
  id_kind TEXT
) WITHOUT ROWID
"""


def _events_sql(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
        return str(row[0])
    finally:
        db.close()


def _indexes(path: Path) -> dict[str, bool]:
    """Index name → unique, for the events table."""
    db = sqlite3.connect(path)
    try:
        return {row[1]: bool(row[2]) for row in db.execute("PRAGMA index_list(events)")}
    finally:
        db.close()


def _to_keyed_layout(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("ALTER TABLE events DROP COLUMN parsers_id")  # the layout had none
            db.execute("DROP TABLE derived_parsers")
            db.execute("ALTER TABLE events RENAME TO events_rowid")
            db.execute(_KEYED_EVENTS)
            db.execute("INSERT INTO events SELECT * FROM events_rowid")
            db.execute("DROP TABLE events_rowid")
            db.execute("CREATE INDEX events_by_person ON events (person, timestamp DESC)")
            db.execute("CREATE INDEX events_by_type ON events (event_type, timestamp DESC)")
    finally:
        db.close()


def test_a_keyed_events_table_is_rebuilt_as_a_rowid_table(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    events = [ev(n, n * 60.0, user=f"u{n % 3}") for n in range(1, 8)]
    store.commit(events)
    before = sorted(store.iter_raw_events(), key=lambda e: e.key)
    indexes = _indexes(path)
    store.close()
    _to_keyed_layout(path)
    assert "WITHOUT ROWID" in _events_sql(path).upper()

    store = SQLiteStore(path, clock=FakeClock(NOW))
    assert "WITHOUT ROWID" not in _events_sql(path).upper()
    assert _indexes(path) == indexes
    assert any(unique for unique in indexes.values())  # the key's own index
    assert sorted(store.iter_raw_events(), key=lambda e: e.key) == before
    report = verify(store, store.periods, now=NOW, retention_s=None, repair=False)
    assert report.ok, report.drift

    store.commit([*events[:3], ev(9, 540.0, user="u0")])  # redelivered ones stay single
    assert store.count_events() == len(events) + 1
    report = verify(store, store.periods, now=NOW, retention_s=None, repair=False)
    assert report.ok, report.drift
    store.close()


def test_a_rowid_events_table_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([ev(1, 0.0, user="u1")])
    store.close()
    sql = _events_sql(path)
    store = SQLiteStore(path, clock=FakeClock(NOW))
    assert store.count_events() == 1
    store.close()
    assert _events_sql(path) == sql
