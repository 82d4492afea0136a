"""The write-ahead log's checkpoints after a commit, on a thread of their own.

A commit appends every page it changed to the write-ahead log (WAL); a checkpoint copies them
into the database file and, with `synchronous = NORMAL` (`sqlite_util.PRAGMAS`), syncs the log
and then the file: the only syncs a commit in WAL mode gets. By default SQLite checkpoints in
the committing connection as soon as the log holds 1,000 pages (`wal_autocheckpoint`), so the
worker waited for the copy and both syncs after every commit, and the wait grows with the
store: a commit of 5,000 live events changes about 8,900 pages of a store of 300,000 events
and 13,000 of one of three million (docs/benchmarks.md, "Growth").

Here the committing connection leaves that to a thread with a connection of its own
(`Checkpoints`), which checkpoints after each commit (`PASSIVE`: it never waits for a writer or
a reader, nor stops one) while the worker parses and folds its next batch. The next commit
waits for that checkpoint before it takes the write lock (`wait`): SQLite starts the log over
from its beginning only when the write that follows a checkpoint finds every frame copied
(https://www.sqlite.org/wal.html#checkpointing), so the log stays one commit long, as before.

What is durable: with `NORMAL` a commit is safe from a crash of the process at once, and from a
power loss once a checkpoint has synced the log after it. The checkpoint of a commit past 1,000
pages used to end before the worker acked the commit's messages; it now ends after the ack,
while the next batch is prepared (a smaller commit, as live traffic's are, was acked before any
sync already).

The committing connection keeps SQLite's own checkpoint as a net, at `WAL_CAP_PAGES`, for a
checkpoint that fails here (it is logged) or is not waited for (`WAIT_S`): past that size the
commit checkpoints in its own connection, as every commit did before.

The net bounds what a checkpoint has to copy, not the log's file. A write starts the log over
only when no reader still reads from it, and another worker process's reads (its fold before
the write lock) span this process's commits: with two workers sharing a store (`up`) the log
rarely started over and its file grew to 350 to 790 MiB over 200,000 live events. Past
`LOG_BOUND_PAGES` the thread checkpoints once more with `TRUNCATE`, which waits for the writer
and those reads to end (`TRUNCATE_WAIT_MS` at most, holding back every writer meanwhile), then
starts the log over and empties its file: 122 to 131 MiB at most in the same runs, at the same
rate (docs/benchmarks.md, "The log's bound with two workers"). A read that lasts (a `verify` or
a backup beside the workers) keeps the log from starting over, and it grows while the read
lasts. Such a read also keeps the checkpoints from copying the frames written since it began,
which tells it apart: no truncation is tried while frames are left, and after one a read kept
from it all the same, the next waits for the log to grow fourfold. Once a write starts the
log over, its file is cut back to `LOG_FILE_LIMIT_BYTES` (`journal_size_limit`).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from behavioral_analytics.sqlite_util import connect
from behavioral_analytics.telemetry import log

__all__ = ["LOG_BOUND_PAGES", "LOG_FILE_LIMIT_BYTES", "WAIT_S", "WAL_CAP_PAGES", "Checkpoints"]

# Pages the log may hold after a commit before the committing connection checkpoints itself
# (`PRAGMA wal_autocheckpoint`): 128 MiB of 4 KiB pages, about twice what one commit of 5,000
# live events writes to a store of three million.
WAL_CAP_PAGES = 32_768
# The longest a commit (or `forget`) waits for the checkpoint before it goes on regardless (the
# log then grows by that commit): in a scratch trial on a store of two million events, commits
# of 5,000 events waited about 0.1 s each for the checkpoint before them.
WAIT_S = 10.0
# Pages past which the log is made to start over (`PRAGMA wal_checkpoint(TRUNCATE)`): 64 MiB of
# 4 KiB pages, more than one commit of 5,000 live events writes to a store of three million
# (about 13,000), so one worker at the default batch size does not reach it.
LOG_BOUND_PAGES = 16_384
# The size the log's file is cut back to when a write starts the log over (`journal_size_limit`).
LOG_FILE_LIMIT_BYTES = 64 * 2**20
# The longest the truncation waits for another process's commit and readers (milliseconds): it
# holds back every writer while it waits.
TRUNCATE_WAIT_MS = 2_000
# After a truncation a reader kept from it, the next waits for the log to grow this many times.
_BACKOFF = 4


class Checkpoints:
    """A checkpoint of the file at `path` after each commit, on a daemon thread started by the
    first `after_commit` (a store that never commits starts none), with its own connection.

    Use: `before_commit(db)` on the committing connection, then, once the commit's write
    transaction is about to begin, `wait()`; after the commit, `after_commit()`; `close()` when
    the store closes. A failed checkpoint is logged (a warning, once per distinct error) and
    never raised: the next commit's `wait` returns all the same, and SQLite's own checkpoint at
    `WAL_CAP_PAGES` takes over until one succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._requested = False
        self._closing = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._truncate_past = LOG_BOUND_PAGES  # raised after a truncation a reader kept from
        self.completed = 0  # checkpoints that ran to their end (busy or not), for the tests

    @staticmethod
    def before_commit(db: sqlite3.Connection) -> None:
        """Raise the committing connection's own checkpoint to `WAL_CAP_PAGES` and cut the log's
        file back to `LOG_FILE_LIMIT_BYTES` when its write starts the log over (settings of the
        connection: set before each commit, since connections are per thread)."""
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CAP_PAGES}")
        db.execute(f"PRAGMA journal_size_limit = {LOG_FILE_LIMIT_BYTES}")

    def wait(self, timeout_s: float = WAIT_S) -> bool:
        """Until the checkpoint after the previous commit has ended (at once if none runs), or
        `timeout_s` seconds have passed. Whether it has ended."""
        return self._idle.wait(timeout_s)

    def after_commit(self) -> None:
        """Ask for a checkpoint of what the commit just wrote (starting the thread the first
        time)."""
        with self._lock:
            if self._closing:
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ba-checkpoint", daemon=True)
                self._thread.start()
            self._idle.clear()
            self._requested = True
            self._wanted.notify()

    def close(self) -> None:
        """Stop the thread once its checkpoint (if one runs) has ended, waiting `WAIT_S` at
        most (a daemon thread: it cannot keep the process alive), and close its connection;
        later `after_commit` calls do nothing."""
        with self._lock:
            self._closing = True
            self._wanted.notify()
            thread = self._thread
        if thread is not None:
            thread.join(WAIT_S)
        self._idle.set()

    @property
    def running(self) -> bool:
        """Whether the thread is alive (started by a commit and not yet closed)."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                with self._lock:
                    while not (self._requested or self._closing):
                        self._wanted.wait()
                    if self._closing:
                        return
                    self._requested = False
                try:
                    db = db or self._connect()
                    self._checkpoint(db)
                    self.completed += 1
                    self._last_error = ""
                except Exception as exc:  # the thread lives on: the next commit asks again
                    self._failed(exc)
                finally:
                    with self._lock:
                        if not self._requested:
                            self._idle.set()
        finally:
            if db is not None:
                db.close()

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path)
        db.execute(f"PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}")  # a PASSIVE checkpoint never waits
        return db

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        _, log_pages, copied_pages = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log_pages < 0:  # another connection's checkpoint runs (`busy`): it copies
            return
        if log_pages <= LOG_BOUND_PAGES:
            self._truncate_past = LOG_BOUND_PAGES
        elif log_pages > self._truncate_past and copied_pages == log_pages:
            # Every frame copied, yet the log did not start over: another process's reads spanned
            # the last write. (Frames left mean a read of an older snapshot lasts: a truncation
            # would wait for it in vain.)
            truncated = self._truncate(db)
            self._truncate_past = LOG_BOUND_PAGES if truncated else _BACKOFF * log_pages

    def _truncate(self, db: sqlite3.Connection) -> bool:
        """Copy what is left, start the log over and empty its file, waiting `TRUNCATE_WAIT_MS`
        at most for a writer and for readers of the log; whether it did."""
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if error != self._last_error:
            self._last_error = error
            log.warning(
                "checkpoint of the write-ahead log failed: the next commit checkpoints itself "
                "once the log is full",
                extra={"file": str(self.path), "error": error, "log_cap_pages": WAL_CAP_PAGES},
            )
