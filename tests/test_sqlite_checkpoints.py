"""The SQLite store checkpoints its write-ahead log after each commit on a thread of its own
(`stores.sqlite.checkpoints`): the log stays one commit long, the next commit waits for the
checkpoint before it takes the write lock, a failed checkpoint is logged and never raised, and
closing the store stops the thread."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from behavioral_analytics.events import Event
from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite import checkpoints as checkpoints_module
from behavioral_analytics.stores.sqlite.checkpoints import WAIT_S, WAL_CAP_PAGES, Checkpoints
from tests.conftest import FakeClock, wait_until
from tests.contract.builders import NOW, ev

BATCH = 400


def _batch(first: int) -> list[Event]:
    return [
        ev(n, float(n % 80_000), user=f"u{n % 97}", properties={"page": f"/p{n % 13}", "n": n})
        for n in range(first, first + BATCH)
    ]


def _log_bytes(path: Path) -> int:
    log_file = path.with_name(path.name + "-wal")
    return log_file.stat().st_size if log_file.exists() else 0


def test_the_log_stays_one_commit_long_across_many_commits(tmp_path: Path) -> None:
    """Without the thread's checkpoints the committing connection would leave the log to grow
    to `WAL_CAP_PAGES` (128 MiB): thirty commits would make it thirty commits long."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    try:
        store.commit(_batch(0))
        one_commit = _log_bytes(path)
        assert one_commit > 0
        for i in range(1, 30):
            store.commit(_batch(i * BATCH))
        wait_until(lambda: store._checkpoints.wait(0), 30, "the last checkpoint")
        assert store._checkpoints.completed >= 29  # one per commit (the last may be running)
        assert _log_bytes(path) < 3 * one_commit
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CAP_PAGES
        limit = store._db.execute("PRAGMA journal_size_limit").fetchone()[0]
        assert limit == checkpoints_module.LOG_FILE_LIMIT_BYTES
        assert store.count_events() == 30 * BATCH
    finally:
        store.close()
    assert not store._checkpoints.running
    assert _log_bytes(path) == 0  # the last connection closed folds the log into the file


def test_a_store_that_never_commits_starts_no_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", clock=FakeClock(NOW))
    try:
        assert store.count_events() == 0
        assert not store._checkpoints.running
    finally:
        store.close()


class Held(Checkpoints):
    """Checkpoints whose checkpoint waits for `release` (and raises `error` if set)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.started = threading.Event()
        self.release = threading.Event()
        self.error: Exception | None = None
        self.waiting = threading.Event()

    def wait(self, timeout_s: float = WAIT_S) -> bool:
        if timeout_s > 0:
            self.waiting.set()
        return super().wait(timeout_s)

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        self.started.set()
        self.release.wait(30)
        if self.error is not None:
            raise self.error
        super()._checkpoint(db)


def _held_store(path: Path, error: Exception | None = None) -> tuple[SQLiteStore, Held]:
    """A store at `path` whose checkpoints are `Held`: with `error`, released at once and
    raising it."""
    store = SQLiteStore(path, clock=FakeClock(NOW))
    held = Held(path)
    held.error = error
    if error is not None:
        held.release.set()
    store._checkpoints = held
    return store, held


def test_the_next_commit_waits_for_the_checkpoint_before_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store, held = _held_store(path)
    try:
        store.commit(_batch(0))
        assert held.started.wait(30)
        assert not held.wait(0)  # the checkpoint runs
        held.waiting.clear()  # the first commit waited too (for none)
        committed = threading.Event()

        def commit_next() -> None:
            store.commit(_batch(BATCH))
            committed.set()

        thread = threading.Thread(target=commit_next, daemon=True)
        thread.start()
        # The second commit reads and folds, then waits before `BEGIN IMMEDIATE`: the write
        # lock stays free for any other connection meanwhile.
        assert held.waiting.wait(30)
        other = sqlite3.connect(path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert not committed.is_set()
        held.release.set()
        assert committed.wait(30)
        thread.join(30)
        assert store.count_events() == 2 * BATCH
    finally:
        held.release.set()
        store.close()


def test_a_failed_checkpoint_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    store, held = _held_store(path, sqlite3.OperationalError("disk I/O error"))
    try:
        with caplog.at_level(logging.WARNING, logger="behavioral_analytics"):
            for i in range(3):
                store.commit(_batch(i * BATCH))
            assert held.wait(30)
        warnings = [r for r in caplog.records if "checkpoint" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "disk I/O error" in warnings[0].__dict__["error"]
        assert held.completed == 0
        assert store.count_events() == 3 * BATCH
    finally:
        store.close()


def test_close_stops_the_thread_and_later_requests_do_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sqlite3.connect(path).close()
    checkpoints = Checkpoints(path)
    checkpoints.after_commit()
    assert checkpoints.running
    wait_until(lambda: checkpoints.completed == 1, 30, "the checkpoint")
    checkpoints.close()
    assert not checkpoints.running
    checkpoints.after_commit()
    assert not checkpoints.running
    assert checkpoints.wait(0)


def test_a_checkpoint_failing_with_any_error_leaves_the_thread_and_the_commits_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An error other than SQLite's (the thread's connection cannot be opened, say) killed the
    thread, and the commit after the next one waited for a checkpoint that never came."""
    path = tmp_path / "store.db"
    store, held = _held_store(path, OSError("no such folder"))
    try:
        with caplog.at_level(logging.WARNING, logger="behavioral_analytics"):
            for i in range(3):
                store.commit(_batch(i * BATCH))
                assert held.wait(30)
                assert held.running
        assert any("no such folder" in r.__dict__.get("error", "") for r in caplog.records)
        held.error = None
        store.commit(_batch(3 * BATCH))
        wait_until(lambda: held.completed == 1, 30, "a checkpoint once the error is gone")
        assert store.count_events() == 4 * BATCH
    finally:
        store.close()


def test_forget_waits_for_the_checkpoint_so_no_copy_stays(tmp_path: Path) -> None:
    """A checkpoint of the commit before `forget` that ran beside its truncation kept the log,
    and copied the forgotten person's pages into the file (the chaos suite's case 8)."""
    path = tmp_path / "store.db"
    store, held = _held_store(path)
    try:
        store.commit(
            [ev(n, float(n), user=w, properties={"email": f"{w}-mail-{n}"}) for n in range(200)
             for w in ("alice", "bob")]
        )  # fmt: skip
        assert held.started.wait(30)
        held.waiting.clear()  # the commit waited too (for none)
        forgotten = threading.Event()

        def forget() -> None:
            store.forget("alice")
            forgotten.set()

        thread = threading.Thread(target=forget, daemon=True)
        thread.start()
        assert held.waiting.wait(30)
        assert not forgotten.is_set()
        held.release.set()
        assert forgotten.wait(30)
        thread.join(30)
        log_file = path.with_name(path.name + "-wal")
        kept = path.read_bytes() + (log_file.read_bytes() if log_file.exists() else b"")
        assert b"alice-mail-" not in kept
        assert b"bob-mail-1" in kept
    finally:
        held.release.set()
        store.close()


def test_the_log_starts_over_past_its_bound_though_another_process_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's reads (its fold before the write lock) that span this process's next
    commit keep that write from starting the log over, however much was copied: with two
    workers the log's file grew to hundreds of megabytes. Past `LOG_BOUND_PAGES` the thread
    makes it start over (`TRUNCATE`), waiting for that read to end."""
    monkeypatch.setattr(checkpoints_module, "LOG_BOUND_PAGES", 64)
    path = tmp_path / "store.db"
    writer = connect(path)
    Checkpoints.before_commit(writer)  # no checkpoint of its own, as the store's
    writer.execute("CREATE TABLE rows (n INTEGER, text TEXT)")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    checkpoints = Checkpoints(path)

    def write(n: int) -> None:
        with transaction(writer):
            writer.executemany(
                "INSERT INTO rows VALUES (?, ?)", [(n, "x" * 400) for _ in range(100)]
            )

    try:
        write(0)
        one_write = _log_bytes(path)
        for n in range(1, 40):
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM rows").fetchone()  # a snapshot in the log
            checkpoints.after_commit()
            read_ends = threading.Timer(0.1, reader.execute, ("COMMIT",))
            read_ends.start()
            write(n)  # begins while the read lasts, unless the truncation holds it back
            read_ends.join()
            assert checkpoints.wait(30)
        assert checkpoints.completed == 39
        page_size = writer.execute("PRAGMA page_size").fetchone()[0]
        assert _log_bytes(path) < 64 * page_size + 4 * one_write
    finally:
        checkpoints.close()
        reader.close()
        writer.close()


class _CountedTruncations(Checkpoints):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.truncations: list[bool] = []

    def _truncate(self, db: sqlite3.Connection) -> bool:
        self.truncations.append(super()._truncate(db))
        return self.truncations[-1]


def test_a_long_read_is_not_waited_for_and_the_log_is_cut_back_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a reader holds an older snapshot (a `verify` beside the workers) the log cannot
    start over, and a truncation would hold every writer back for `TRUNCATE_WAIT_MS` in vain:
    none is tried while the checkpoints leave frames uncopied. Once the read ends a write starts
    the log over and cuts its file back to `LOG_FILE_LIMIT_BYTES`."""
    monkeypatch.setattr(checkpoints_module, "LOG_BOUND_PAGES", 64)
    monkeypatch.setattr(checkpoints_module, "LOG_FILE_LIMIT_BYTES", 64 * 4096)
    monkeypatch.setattr(checkpoints_module, "TRUNCATE_WAIT_MS", 50)
    path = tmp_path / "store.db"
    writer = connect(path)
    Checkpoints.before_commit(writer)
    writer.execute("CREATE TABLE rows (n INTEGER, text TEXT)")
    reader = sqlite3.connect(path, isolation_level=None)
    checkpoints = _CountedTruncations(path)

    def commit(n: int) -> None:
        with transaction(writer):
            writer.executemany(
                "INSERT INTO rows VALUES (?, ?)", [(n, "x" * 400) for _ in range(100)]
            )
        checkpoints.after_commit()
        assert checkpoints.wait(30)

    try:
        commit(0)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM rows").fetchone()
        for n in range(1, 60):
            commit(n)
        grown = _log_bytes(path)
        assert grown > 4 * 64 * 4096  # about 16 pages a commit: the read keeps it growing
        assert checkpoints.truncations == []
        reader.execute("COMMIT")
        for n in range(60, 63):  # the first copied whole, the next starts the log over
            commit(n)
        assert checkpoints._truncate_past == checkpoints_module.LOG_BOUND_PAGES
        assert _log_bytes(path) <= 64 * 4096 < grown
    finally:
        checkpoints.close()
        reader.close()
        writer.close()


class _Rows:
    """A connection's stand-in answering each `PRAGMA wal_checkpoint` with the next row."""

    def __init__(self, *rows: tuple[int, int, int]) -> None:
        self.rows = list(rows)
        self.modes: list[str] = []

    def execute(self, sql: str) -> _Rows:
        self.modes.append(sql.split("(")[1].rstrip(")"))
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return self.rows.pop(0)


def test_a_busy_checkpoint_keeps_the_wait_a_failed_truncation_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `PASSIVE` checkpoint another connection's kept busy says nothing of the log's size
    (`(1, -1, -1)`): it must not end the wait a failed truncation began."""
    monkeypatch.setattr(checkpoints_module, "LOG_BOUND_PAGES", 100)
    checkpoints = Checkpoints(tmp_path / "store.db")
    db = _Rows(
        (0, 150, 150), (1, -1, -1), (1, -1, -1), (0, 500, 500), (0, 700, 650), (0, 720, 720),
        (0, 0, 0),
    )  # fmt: skip
    for _ in range(3):
        checkpoints._checkpoint(db)  # type: ignore[arg-type]
    assert db.modes == ["PASSIVE", "TRUNCATE", "PASSIVE", "PASSIVE"]  # 500 < 4 x 150
    checkpoints._checkpoint(db)  # type: ignore[arg-type]
    assert db.modes[-1] == "PASSIVE"  # frames left: a read of an older snapshot lasts
    checkpoints._checkpoint(db)  # type: ignore[arg-type]
    assert db.modes[-2:] == ["PASSIVE", "TRUNCATE"]
    assert checkpoints._truncate_past == 100
