"""A SQLite store file written with the earlier `session_values` table (each session's values
in a row of their own beside `sessions`, with its start and first event's key, and a
`sessions_by_start` index) is migrated on open: the values move into the `sessions` rows as
they are, the table and the index are dropped, and the counts they were counted into keep
moving exactly: a late event that becomes a migrated session's first event takes its old entry
page out, and `forget` takes a migrated person's sessions out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

RULES = BehaviorRules(breakdowns=BreakdownRules(("page",), 5))

# The table as the earlier layout created it.
_OLD_SESSION_VALUES = """
CREATE TABLE session_values (
  person TEXT NOT NULL,
  key TEXT NOT NULL,
  start REAL NOT NULL,
  first_key TEXT NOT NULL,
  vals TEXT NOT NULL,
  PRIMARY KEY (person, key)
) WITHOUT ROWID
"""
_TO_OLD_ROWS = """
INSERT INTO session_values
SELECT s.person, s.key, s.start,
       (SELECT min(e.key) FROM events AS e WHERE e.person = s.person AND e.timestamp = s.start),
       s.vals
FROM sessions AS s WHERE s.vals IS NOT NULL
"""


def _store(path: Path) -> SQLiteStore:
    return SQLiteStore(path, rules=RULES, clock=FakeClock(NOW))


def _page(n: int, at: float, user: str, path: str, session: str | None = None) -> Event:
    return ev(n, at, user=user, session=session, page_url=f"https://shop.example/{path}")


def _first_visits() -> list[Event]:
    return [
        _page(1, 100, "u1", "a"),
        _page(2, 200, "u1", "b"),
        _page(3, 300, "u2", "c", session="s1"),
        _page(4, 400, "u2", "d", session="s1"),
    ]


def _entry_pages(store: SQLiteStore) -> dict[str, int]:
    (point,) = store.breakdown("entry_page", "day")
    assert point.sessions is not None
    return point.sessions


def _to_old_layout(path: Path) -> list[tuple[str, str, str]]:
    """Rewrite the file at `path` as the earlier layout kept it; return its sessions' values."""
    db = sqlite3.connect(path)
    with db:
        values = db.execute("SELECT person, key, vals FROM sessions ORDER BY 1, 2").fetchall()
        db.execute(_OLD_SESSION_VALUES)
        db.execute(_TO_OLD_ROWS)
        db.execute("ALTER TABLE sessions DROP COLUMN vals")
        db.execute("CREATE INDEX sessions_by_start ON sessions (person, start)")
    db.close()
    return values


def test_session_values_move_into_the_session_rows_and_keep_counting(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = _store(path)
    store.commit(_first_visits())
    assert _entry_pages(store) == {"/a": 1, "/c": 1}
    store.close()
    values = _to_old_layout(path)
    assert len(values) == 2 and all(vals for _, _, vals in values)

    store = _store(path)
    db = sqlite3.connect(path)
    names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "session_values" not in names and "sessions_by_start" not in names
    assert db.execute("SELECT person, key, vals FROM sessions ORDER BY 1, 2").fetchall() == values
    db.close()
    assert _entry_pages(store) == {"/a": 1, "/c": 1}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok

    # A late event becomes u1's first: the migrated entry page /a is taken out.
    late = _page(5, 50, "u1", "z")
    store.commit([late])
    assert _entry_pages(store) == {"/z": 1, "/c": 1}
    (exits,) = store.breakdown("exit_page", "day")
    assert exits.sessions == {"/b": 1, "/d": 1}
    fresh = _store(tmp_path / "fresh.db")
    fresh.commit([*_first_visits(), late])
    assert store.breakdown("entry_page", "hour") == fresh.breakdown("entry_page", "hour")
    assert store.breakdown("page", "day") == fresh.breakdown("page", "day")
    assert verify(store, store.periods, now=NOW, retention_s=None).ok

    store.forget("u2")  # its migrated session goes out of every count
    assert _entry_pages(store) == {"/z": 1}
    (exits,) = store.breakdown("exit_page", "day")
    assert exits.sessions == {"/b": 1}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
    fresh.close()


def test_a_file_opened_twice_keeps_its_values(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = _store(path)
    store.commit(_first_visits())
    store.close()
    db = sqlite3.connect(path)
    before = db.execute("SELECT * FROM sessions ORDER BY 1, 2").fetchall()
    db.close()
    _store(path).close()  # the migration finds nothing to do
    db = sqlite3.connect(path)
    assert db.execute("SELECT * FROM sessions ORDER BY 1, 2").fetchall() == before
    db.close()


def test_a_kept_session_tied_at_its_start_admits_in_first_event_key_order(
    tmp_path: Path,
) -> None:
    """The first event's key is not stored: a kept session that starts at the same instant as
    another session of the commit has it read again, so admission follows (start, first key)."""
    kept_first = _page(1, 100, "u1", "a")
    # u2's first event: a key ordered before u1's, so its session admits first.
    n = next(n for n in range(10, 200) if _page(n, 100, "u2", "a").key < kept_first.key)
    store = SQLiteStore(
        tmp_path / "store.db",
        rules=BehaviorRules(breakdowns=BreakdownRules(("page",), 2)),
        clock=FakeClock(NOW),
    )
    store.commit([kept_first])  # u1's session: entry and exit /a
    store.commit([_page(2, 200, "u1", "x"), _page(n, 100, "u2", "a"), _page(3, 200, "u2", "y")])
    (exits,) = store.breakdown("exit_page", "day")
    # /a was admitted first; one place left, taken by u2's /y (first in key order).
    assert exits.sessions == {"/y": 1, "(other)": 1}
    store.close()
