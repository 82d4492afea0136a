"""`sqlite_util.erase_log_copies`, the truncation of the write-ahead log after personal data was
deleted (docs/behavior.md "Personal data"): another connection's checkpoint (a worker's
checkpoint thread, after each of its commits) makes a truncating checkpoint fail at once rather
than wait, so it is tried again until that one has ended."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from behavioral_analytics.sqlite_util import connect, erase_log_copies
from tests.conftest import wait_until


def _log_bytes(path: Path) -> int:
    log_file = path.with_name(path.name + "-wal")
    return log_file.stat().st_size if log_file.exists() else 0


class _CheckpointHeld:
    """Another connection's checkpoint kept running: a writer holds the write lock, and a
    `FULL` checkpoint, which takes the checkpoint lock before it waits for the writer, waits
    behind it until `release()`; `close()` releases it and closes both connections."""

    def __init__(self, path: Path) -> None:
        self._writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._writer.execute("BEGIN IMMEDIATE")
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._checkpointer = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._thread = threading.Thread(target=self._checkpoint, daemon=True)
        self._thread.start()

    def _checkpoint(self) -> None:
        # Tried again while the test's probe (a checkpoint too) holds the lock for an instant.
        while not self._released.is_set():
            busy, _, _ = self._checkpointer.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
            if not busy:
                return

    def release(self) -> None:
        with self._lock:
            if not self._released.is_set():
                self._released.set()
                self._writer.rollback()

    def close(self) -> None:
        self.release()
        self._thread.join(30)
        with self._lock:
            self._writer.close()
            self._checkpointer.close()


@pytest.fixture
def erased_in_log(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """A store-like file whose log holds the pages of a deleted person's rows."""
    path = tmp_path / "store.db"
    db = connect(path)
    db.execute("CREATE TABLE people (who TEXT, email TEXT)")
    with db:
        db.executemany(
            "INSERT INTO people VALUES (?, ?)",
            [(w, f"{w}-mail-{n}") for n in range(300) for w in ("alice", "bob")],
        )
    with db:
        db.execute("DELETE FROM people WHERE who = 'alice'")
    assert _log_bytes(path) > 0
    yield db, path
    db.close()


def _checkpoint_lock_taken(db: sqlite3.Connection) -> bool:
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(busy)


def test_the_truncation_is_tried_again_until_the_other_checkpoint_ends(
    erased_in_log: tuple[sqlite3.Connection, Path],
) -> None:
    db, path = erased_in_log
    held = _CheckpointHeld(path)
    try:
        wait_until(lambda: _checkpoint_lock_taken(db), 30, "the other checkpoint to start")
        threading.Timer(0.3, held.release).start()
        assert erase_log_copies(db, path, wait_s=30)
    finally:
        held.close()
    assert _log_bytes(path) == 0
    kept = path.read_bytes()
    assert b"alice-mail-" not in kept
    assert b"bob-mail-1" in kept


def test_a_truncation_kept_from_it_past_the_wait_is_logged(
    erased_in_log: tuple[sqlite3.Connection, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, path = erased_in_log
    held = _CheckpointHeld(path)
    try:
        wait_until(lambda: _checkpoint_lock_taken(db), 30, "the other checkpoint to start")
        with caplog.at_level(logging.WARNING):
            assert not erase_log_copies(db, path, wait_s=0.3)
    finally:
        held.close()
    assert "write-ahead log not truncated" in caplog.text
    assert _log_bytes(path) > 0
    assert erase_log_copies(db, path)  # the next try, with nothing in the way
    assert _log_bytes(path) == 0


def test_each_try_waits_a_quarter_second_at_most_and_the_wait_in_all_is_kept(
    erased_in_log: tuple[sqlite3.Connection, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A reader of an older snapshot keeps the truncation from it: each try waits for it 0.25 s
    at most instead of the connection's 30 s (a try keeps the workers' checkpoints from running
    while it waits), the tries stop once `wait_s` has passed, and the connection's own busy
    timeout is put back."""
    db, path = erased_in_log
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM people").fetchone()
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("INSERT INTO people VALUES ('carol', 'carol-mail')")  # past its snapshot
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    try:
        with caplog.at_level(logging.WARNING):
            assert not erase_log_copies(db, path, wait_s=0.6)
    finally:
        db.set_trace_callback(None)
        reader.close()
    waits = [int(s.rsplit("=", 1)[1]) for s in statements if s.startswith("PRAGMA busy_timeout =")]
    tries = [s for s in statements if "wal_checkpoint(TRUNCATE)" in s]
    assert tries, statements
    assert all(w <= 250 for w in waits[:-1]) and waits[-1] == 30000, waits
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert "write-ahead log not truncated" in caplog.text
