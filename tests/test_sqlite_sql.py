"""The SQLite store's shared SQL helpers: an insert that says which rows it created."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite.sql import insert_created


def table(tmp_path: Path) -> sqlite3.Connection:
    db = connect(tmp_path / "t.db")
    db.execute("CREATE TABLE t (key TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
    return db


def test_every_row_new_is_reported_in_order(tmp_path: Path) -> None:
    db = table(tmp_path)
    with transaction(db):
        created = insert_created(db, "t", 2, [("b", 1), ("a", 2), ("c", 3)], 0, "DO NOTHING")
    assert created == ["b", "a", "c"]
    assert db.execute("SELECT key, n FROM t ORDER BY key").fetchall() == [
        ("a", 2), ("b", 1), ("c", 3),
    ]  # fmt: skip


def test_rows_that_exist_are_neither_reported_nor_changed(tmp_path: Path) -> None:
    db = table(tmp_path)
    with transaction(db):
        insert_created(db, "t", 2, [("a", 1), ("c", 1)], 0, "DO NOTHING")
    with transaction(db):
        created = insert_created(
            db, "t", 2, [("a", 9), ("b", 2), ("c", 9), ("d", 2)], 0, "(key) DO NOTHING"
        )
    assert sorted(created) == ["b", "d"]
    assert dict(db.execute("SELECT key, n FROM t").fetchall()) == {"a": 1, "b": 2, "c": 1, "d": 2}
    # The undone attempt left nothing behind, and the transaction goes on.
    assert db.execute("SELECT count(*) FROM t").fetchone() == (4,)


def test_a_key_twice_in_one_call_is_created_once(tmp_path: Path) -> None:
    db = table(tmp_path)
    with transaction(db):
        created = insert_created(db, "t", 2, [("a", 1), ("a", 2)], 0, "DO NOTHING")
    assert created == ["a"]
    assert db.execute("SELECT n FROM t").fetchall() == [(1,)]


def test_a_rolled_back_transaction_keeps_nothing(tmp_path: Path) -> None:
    db = table(tmp_path)
    try:
        with transaction(db):
            insert_created(db, "t", 2, [("a", 1)], 0, "DO NOTHING")
            raise RuntimeError("the commit fails later")
    except RuntimeError:
        pass
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert insert_created(db, "t", 2, [], 0, "DO NOTHING") == []
