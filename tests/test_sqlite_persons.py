"""A person's profile and events per type are one `persons` row on the SQLite store (one row
write per person per commit); `profiles` and `profile_types` are views of it. Workers sharing
a file add to the same rows exactly, and a file written with the earlier `profiles` and
`profile_types` tables is migrated on open."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

# The tables as files had them before `persons`.
_OLD_TABLES = """
CREATE TABLE old_profiles (
  who TEXT PRIMARY KEY, total_events INTEGER NOT NULL, first_seen REAL NOT NULL,
  last_activity REAL NOT NULL, last_updated REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO old_profiles SELECT who, total_events, first_seen, last_activity, last_updated
  FROM persons;
CREATE TABLE old_types (
  who TEXT NOT NULL, event_type TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (who, event_type)
) WITHOUT ROWID;
INSERT INTO old_types SELECT who, event_type, count FROM profile_types;
DROP VIEW profiles;
DROP VIEW profile_types;
DROP TABLE persons;
ALTER TABLE old_profiles RENAME TO profiles;
ALTER TABLE old_types RENAME TO profile_types;
CREATE INDEX profiles_by_activity ON profiles (last_activity);
"""


def commit_some(store: SQLiteStore) -> None:
    store.commit(
        [
            ev(1, 0, user="ann", kind="page_view"),
            ev(2, 60, user="ann", kind="search"),
            ev(3, 120, user="ann", kind="page_view"),
            ev(4, 0, user="bo", kind="purchase"),
        ]
    )


def test_a_commit_writes_one_person_row_per_person(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", clock=FakeClock(NOW))
    commit_some(store)
    db = sqlite3.connect(tmp_path / "store.db")
    rows = dict(db.execute("SELECT who, types FROM persons").fetchall())
    assert rows == {"ann": '{"page_view":2,"search":1}', "bo": '{"purchase":1}'}
    store.commit([ev(5, 180, user="ann", kind="search"), ev(6, 240, user="ann", kind="signup")])
    profile = store.profile("ann")
    assert profile is not None
    assert profile.total_events == 5
    assert profile.events_by_type == {"page_view": 2, "search": 2, "signup": 1}
    assert db.execute("SELECT count(*) FROM persons").fetchone() == (2,)
    store.close()


def test_a_file_with_profile_tables_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    commit_some(store)
    before = store.snapshot()
    store.close()
    db = sqlite3.connect(path)
    db.executescript(_OLD_TABLES)
    assert db.execute("SELECT count(*) FROM profile_types").fetchone() == (3,)
    db.close()

    store = SQLiteStore(path, clock=FakeClock(NOW))
    assert store.snapshot() == before
    report = verify(store, store.periods, now=NOW, retention_s=None)
    assert report.ok, report.drift
    store.commit([ev(7, 300, user="bo", kind="purchase")])
    profile = store.profile("bo")
    assert profile is not None and profile.events_by_type == {"purchase": 2}
    kinds = dict(
        sqlite3.connect(path).execute(
            "SELECT name, type FROM sqlite_master WHERE name IN "
            "('persons', 'profiles', 'profile_types')"
        )
    )
    assert kinds == {"persons": "table", "profiles": "view", "profile_types": "view"}
    store.close()


def test_workers_sharing_a_file_add_to_the_same_person_rows_exactly(tmp_path: Path) -> None:
    # Each store instance is its own connection, as each worker process has: their commits'
    # read-modify-writes of the same person rows run inside BEGIN IMMEDIATE, one at a time.
    path = tmp_path / "store.db"
    SQLiteStore(path, clock=FakeClock(NOW)).close()
    kinds = ("page_view", "search", "add_to_cart", "purchase")
    writers, batches, per_batch = 4, 25, 8
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        store = SQLiteStore(path, clock=FakeClock(NOW))
        try:
            for batch in range(batches):
                base = (worker * batches + batch) * per_batch
                store.commit(
                    [
                        ev(base + i, (base + i) % 3600, user=f"u{i % 3}", kind=kinds[i % 4])
                        for i in range(per_batch)
                    ]
                )
        except BaseException as exc:  # reported by the test's thread, not lost
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer did not finish"
    assert errors == []
    store = SQLiteStore(path, clock=FakeClock(NOW))
    expected: dict[str, dict[str, int]] = {}
    for i in range(per_batch):
        types = expected.setdefault(f"u{i % 3}", {})
        types[kinds[i % 4]] = types.get(kinds[i % 4], 0) + writers * batches
    for who, types in expected.items():
        profile = store.profile(who)
        assert profile is not None
        assert profile.events_by_type == types
        assert profile.total_events == sum(types.values())
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
