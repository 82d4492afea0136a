"""SQLite connections shared by the local broker and store: WAL, a generous busy timeout,
explicit write transactions, so several processes can share one data directory.

SQLite's busy timeout does not cover every lock. Switching a new file to write-ahead logging
while another process opens the same file answers "database is locked" at once: of 40
processes started together, four to a new file, 6 failed so (and the broker then called its
file damaged). `connect` tries its settings again for up to `BUSY_WAIT_S`
(`retrying_busy`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from behavioral_analytics.telemetry import log

__all__ = [
    "BUSY_TIMEOUT_MS",
    "BUSY_WAIT_S",
    "PRAGMAS",
    "READING_PRAGMAS",
    "AsItStands",
    "LogNeedsWriter",
    "PerThreadConnection",
    "access_problem",
    "connect",
    "connect_reading",
    "dangling_link",
    "erase_log_copies",
    "foreign_log_files",
    "is_busy",
    "is_read_only",
    "locked",
    "log_files",
    "make_folder",
    "may_write",
    "not_a_file",
    "not_writable",
    "not_writable_here",
    "reads_apart",
    "retrying_busy",
    "table_names",
    "transaction",
]

T = TypeVar("T")

# Milliseconds a statement waits, at most, for a lock another connection holds (SQLite's
# busy timeout, set on every connection), and the length of one try at the write lock of a
# `transaction` that can stop waiting.
BUSY_TIMEOUT_MS = 30_000
_LOCK_TRY_MS = 100
# Seconds to wait, at most, for a lock SQLite's own busy timeout does not wait for.
BUSY_WAIT_S = 10.0
# Seconds between attempts at a checkpoint another connection's checkpoint kept busy, and the
# longest one attempt waits for a writer and for readers (milliseconds).
_CHECKPOINT_RETRY_S = 0.05
_TRUNCATE_ATTEMPT_MS = 250

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
    # Deleted and replaced content is overwritten, not left in free space and free pages
    # (docs/behavior.md "Personal data"), whatever the library's build default: Debian's
    # turns it on (every figure in the README was measured so), SQLite's own leaves it off.
    "PRAGMA secure_delete = ON",
)


def is_read_only(exc: sqlite3.Error) -> bool:
    """Whether `exc` is SQLite's "attempt to write a readonly database" (SQLITE_READONLY): a
    file opened read-only, as SQLite opens one it may not write, then written."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _READONLY


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether `exc` says another connection holds a lock ("database is locked", "… busy")."""
    message = str(exc)
    return "locked" in message or "busy" in message


# SQLite's primary result codes (https://www.sqlite.org/rescode.html) that say a file could
# not be opened, read or written where it is, not that its content is damaged.
_PERM, _BUSY, _READONLY, _IOERR, _FULL, _CANTOPEN = 3, 5, 8, 10, 13, 14


def locked(path: Path | None, exc: sqlite3.Error, waited_s: float | None = None) -> str:
    """One line for a lock SQLite waited for in vain (`is_busy`), `waited_s` seconds when
    given: another process holds the file's write lock. `path` None: a file of the local
    data."""
    what = path if path is not None else "a file of the local data"
    waited = "" if waited_s is None else f" for {waited_s:g} s"
    return (
        f"{what} stayed locked{waited} ({exc}): another process holds its write lock (a worker, "
        "`backup`, a `sqlite3` shell): let it finish or stop it, and try again; the file is "
        "not damaged"
    )


def not_a_file(path: Path) -> str | None:
    """One line when a folder stands at `path`, where a SQLite file belongs; None otherwise."""
    if not path.is_dir():
        return None
    return (
        f"{path} is a folder, not a SQLite file: move it aside, or point BA_DATA_DIR at your data"
    )


def dangling_link(path: Path, *, unless_creatable: bool = False) -> str | None:
    """One line when `path` is a symbolic link to nothing (its target moved, or on a disk not
    mounted), with `unless_creatable` only when the target's folder is missing too; None
    otherwise. Opening it, SQLite creates the target where its folder exists and fails
    ("unable to open database file") where it does not."""
    if not path.is_symlink() or path.exists():
        return None
    link = os.readlink(path)
    target = path.parent / link
    why = "which is missing"
    if not target.parent.is_dir():
        why = f"whose folder {target.parent} does not exist (a disk not mounted?)"
    elif unless_creatable:
        return None
    return (
        f"{path} is a link to {link}, {why}: mount or restore it, or remove the "
        "link to start afresh here"
    )


def not_writable(path: Path) -> str | None:
    """One line when the SQLite file at `path` exists but this process may not write it (its
    mode, its owner, a read-only mount of the file); None otherwise. SQLite opens such a file
    read-only without a word and fails at the first write."""
    if not path.is_file() or os.access(path, os.W_OK):
        return None
    if path.stat().st_uid == os.geteuid():
        advice = f"`chmod u+w {path.name}`, or mount it read-write"
    else:
        advice = f"it belongs to {_owner(path)}: run this as that user, or mount it read-write"
    return (
        f"cannot write {path}: the file is read-only for this user or on a read-only mount "
        f"({advice}); this error does not mean the file is corrupt: keep it"
    )


def not_writable_here(path: Path) -> str | None:
    """`not_writable`, or `foreign_log_files`: one line when this process could not write the
    SQLite file at `path` where it stands; None otherwise."""
    return not_writable(path) or foreign_log_files(path)


def access_problem(path: Path, exc: sqlite3.Error) -> str | None:
    """One line saying what to check when `exc` says the SQLite file at `path` could not be
    opened, read or written where it is (a read-only folder or file system, a full or failing
    disk, another process's lock), rather than that the file is damaged; None for any other
    error. The line says to keep the file, since the advice for a damaged one (move it aside,
    start empty) would throw a healthy file away."""
    if isinstance(exc, LogNeedsWriter):
        return str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    code &= 0xFF
    folder = path.parent
    if code == _FULL:
        return (
            f"the disk holding {path} is full ({exc}): free space there and try again; "
            "the file stays whole (SQLite writes a transaction whole or not at all)"
        )
    if code == _IOERR:
        return (
            f"reading or writing {path} failed ({exc}): the disk may be full or failing "
            f"(check the free space of {folder} and the system log); this error does not "
            "mean the file is corrupt: keep it, and run `behavioral-analytics doctor` once "
            "the disk is sound"
        )
    if code == _BUSY:
        return locked(path, exc)
    if code in (_CANTOPEN, _READONLY, _PERM):
        return (
            not_a_file(path)
            or dangling_link(path)
            or foreign_log_files(path)
            or (
                f"cannot open {path} to write ({exc}): the folder {folder} and the file must be "
                f"writable by this user and on a file system mounted read-write (SQLite writes "
                f"{path.name}-wal and {path.name}-shm beside it); this error does not mean the "
                "file is corrupt: keep it"
            )
        )
    return None


def foreign_log_files(path: Path) -> str | None:
    """One line when this process may write the SQLite file at `path` but not the `-wal` or
    `-shm` file beside it, another user's: that user ran a command that opened the file
    (SQLite makes them with the file's mode, owned by whoever opens it first), and this
    process's writes now fail. None otherwise."""
    if not path.is_file() or not may_write(path):
        return None
    stuck = [p for p in log_files(path) if p.exists() and not os.access(p, os.W_OK)]
    if not stuck:
        return None
    owner = _owner(stuck[0])
    names = " and ".join(p.name for p in stuck)
    return (
        f"cannot write {names} beside {path}: {'they belong' if len(stuck) > 1 else 'it belongs'} "
        f"to {owner}, whose command opened the file; with no process using it, remove "
        f"{names} (as {owner} or root) and start again; this error does not mean the file is "
        "corrupt: keep it"
    )


def log_files(path: Path) -> tuple[Path, Path]:
    """The `-wal` and `-shm` files of WAL mode beside the SQLite file at `path`."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return "another user"
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user {uid}"


def retrying_busy(attempt: Callable[[], T], wait_s: float | None = None) -> T:
    """`attempt()`, tried again while it raises a busy `sqlite3.OperationalError` (`is_busy`),
    pausing 0.05 s, doubling up to 1 s, for up to `wait_s` seconds in all (`BUSY_WAIT_S` when
    None). Raises the last busy error once that has passed, any other error at once."""
    deadline = time.monotonic() + (BUSY_WAIT_S if wait_s is None else wait_s)
    pause = 0.05
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def table_names(path: Path, timeout_s: float = 30.0) -> set[str]:
    """The names in the schema of the SQLite file at `path` (tables, indexes, …), read without
    the pragmas `connect` sets (a file of another program is not to be changed). Raises
    `sqlite3.OperationalError` when it stays locked `timeout_s`, `sqlite3.DatabaseError` when
    it is not a database.

    A file this process should only read apart (`reads_apart`) is read by `connect_reading`."""
    if reads_apart(path):
        db = connect_reading(path, timeout_s)
    else:
        db = sqlite3.connect(path, timeout=timeout_s)
    try:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()


def make_folder(folder: Path) -> None:
    """Create `folder` (the data folder) and its parents where missing; a folder it creates is
    its owner's alone (mode 0700: the files hold personal data, dead letters full IPs). Raises
    NotADirectoryError, in words that name the file, when it or one of its parents is a file
    (`mkdir`'s own, `[Errno 17] File exists`, names neither the setting nor the cause), and
    OSError naming the setting when it cannot be created otherwise."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if file is None:
            raise
        where = "is a file" if file == folder else f"cannot be created: {file} is a file"
        raise NotADirectoryError(
            f"BA_DATA_DIR {folder} {where}, not a folder: point BA_DATA_DIR at your data"
        ) from None
    except OSError as exc:  # permission denied, a read-only file system, …
        raise OSError(
            f"BA_DATA_DIR {folder} cannot be created ({exc.strerror or exc}): create it, or "
            "point BA_DATA_DIR at a folder this user can write"
        ) from None


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (created with its folder if missing) with
    `PRAGMAS` applied, in autocommit mode (`transaction` opens write transactions). Raises
    `sqlite3.OperationalError` when the file stays locked for `BUSY_WAIT_S` (`is_busy` tells),
    `sqlite3.DatabaseError` when it is not a database, NotADirectoryError when its folder
    cannot be one (`make_folder`)."""
    make_folder(path.parent)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        retrying_busy(lambda: _apply(db, PRAGMAS))
    except sqlite3.Error:
        db.close()
        raise
    return db


# What a connection that only reads sets (`PRAGMAS` without the ones that write the file).
READING_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
)


def may_write(path: Path) -> bool:
    """Whether this process may write the SQLite file at `path` where it stands: its folder
    (where SQLite puts the `-wal` and `-shm` files of WAL mode) and the file, when it exists,
    writable by this user on a file system mounted read-write (`access(2)`, which says EROFS
    for a read-only mount)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def reads_apart(path: Path) -> bool:
    """Whether a process that only reads the existing SQLite file at `path` should open it with
    `connect_reading`, which creates nothing beside it: this process may not write it
    (`may_write`), or the file is another user's and this process is not root. A plain
    connection would put `-wal` and `-shm` files of this user's beside it (SQLite makes them
    with the file's mode, owned by whoever opens it first), which the owner's worker then may
    not write: its commits fail until they are removed. Root's SQLite gives the files it opens
    to the file's owner."""
    if not path.is_file():
        return False
    me = os.geteuid()
    return not may_write(path) or (me != 0 and path.stat().st_uid != me)


_READING_OPEN: dict[str, Any] = {"uri": True, "isolation_level": None, "check_same_thread": False}


class LogNeedsWriter(sqlite3.OperationalError):
    """`connect_reading` found a write-ahead log with content and no `-shm` file beside it:
    only a connection that may write the folder can read it (SQLite builds the index there)."""


def connect_reading(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection that reads the SQLite file at `path` and writes nothing, the file or beside
    it, for a process that should not (`reads_apart`). Raises `sqlite3.Error` as the opening
    does, LogNeedsWriter (one line, `access_problem`'s) for a log it cannot read.

    While a writer has the file open, or after one crashed, its `-wal` and `-shm` files are
    there: it opens with `mode=ro`, and SQLite (3.22 on) reads the log through them, seeing
    each commit (https://www.sqlite.org/wal.html#readonly). With neither, nothing is in a log:
    the file is read as it stands (`immutable=1`, no locks: an `AsItStands` connection), which
    is whole unless a writer starts during the read. (`mode=ro` without them would create them,
    this user's, which the owner's writer may not write: a pair the writer's close deleted
    between the look and the open, made anew so, is removed again.)"""
    uri = path.resolve().as_uri()
    log_file, index = log_files(path)
    logged = _size(log_file)
    if logged is not None and index.exists():
        db = _opened(sqlite3.connect(f"{uri}?mode=ro", timeout=timeout_s, **_READING_OPEN))
        if not _made_here(path):
            return db
        # The writer closed, deleting them, between the look and the open: SQLite made them
        # anew, this user's, which the owner's writer could not write. Gone again, the file
        # holds everything: it is read as it stands.
        db.close()
        for made in log_files(path):
            with contextlib.suppress(OSError):
                if made.stat().st_uid == os.geteuid() and not _size(log_file):
                    made.unlink()
        logged = _size(log_file)
    if logged:
        raise LogNeedsWriter(
            f"{path} has a write-ahead log ({log_file.name}, {logged:,} bytes) "
            f"but no {index.name} beside it, which a command that only reads does not create: "
            f"run `behavioral-analytics doctor` there once as the user the files belong to (it "
            f"folds the log into the file), or copy the folder with its log (`cp -a`) somewhere "
            f"this user may write and read the copy; the file is not damaged: keep it with its log"
        )
    return _opened(sqlite3.connect(f"{uri}?immutable=1", factory=AsItStands, **_READING_OPEN))


def _opened(db: sqlite3.Connection) -> sqlite3.Connection:
    """`db` with `READING_PRAGMAS` set and its schema read (what opens the file: an error
    opening it is raised here, the connection closed)."""
    try:
        _apply(db, READING_PRAGMAS)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def _size(path: Path) -> int | None:
    """The size of the file at `path` in bytes; None when there is none (or no longer)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _made_here(path: Path) -> bool:
    """Whether the `-wal` file beside the SQLite file at `path` is empty (it holds nothing a
    reader could miss) and it or the `-shm` file is this user's while the file is another
    user's: what opening it with `mode=ro` makes where they were not."""
    try:
        owner = path.stat().st_uid
    except OSError:
        return False
    me = os.geteuid()
    if owner == me or _size(log_files(path)[0]):
        return False
    for made in log_files(path):
        with contextlib.suppress(OSError):
            if made.stat().st_uid == me:
                return True
    return False


class AsItStands(sqlite3.Connection):
    """A connection from `connect_reading` that reads its file as it stands, without locks
    (`immutable=1`)."""


def _apply(db: sqlite3.Connection, pragmas: tuple[str, ...]) -> None:
    for pragma in pragmas:
        db.execute(pragma)


@contextmanager
def transaction(
    db: sqlite3.Connection, waiting: Callable[[], object] | None = None
) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front (no upgrade deadlocks).

    With `waiting`, the lock is asked for in tries of `_LOCK_TRY_MS` while another connection
    holds it, and `waiting()` runs between them: an exception it raises ends the wait, nothing
    begun (the caller's way to stop waiting, e.g. a stopping worker). Either way the wait lasts
    at most the busy timeout, `BUSY_TIMEOUT_MS`; then SQLite's "database is locked" is raised.
    """
    if waiting is None:
        db.execute("BEGIN IMMEDIATE")
    else:
        _begin_waiting(db, waiting)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _begin_waiting(db: sqlite3.Connection, waiting: Callable[[], object]) -> None:
    """`BEGIN IMMEDIATE` in tries of `_LOCK_TRY_MS`, `waiting()` between them (`transaction`)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    db.execute(f"PRAGMA busy_timeout = {_LOCK_TRY_MS}")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
            waiting()
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


class PerThreadConnection:
    """One connection per thread on the same file (a connection must not interleave the
    transactions of several threads, e.g. in the API's thread pool); with `reading`, each
    one only reads (`connect_reading`) and `schema` is not run."""

    def __init__(self, path: Path, schema: str = "", *, reading: bool = False) -> None:
        self.path = path
        self.reading = reading
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if schema and not reading:
            self.get().executescript(schema)

    def get(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect_reading(self.path) if self.reading else connect(self.path)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


def erase_log_copies(db: sqlite3.Connection, path: Path, wait_s: float | None = None) -> bool:
    """After a `secure_delete` transaction on `db` (the file at `path`), or after personal
    data was deleted from it earlier: copy the write-ahead log into the file and truncate it,
    so the old versions of the overwritten pages are gone from both (the log keeps every
    page a transaction wrote, a deleted row's bytes included, until it is truncated or
    overwritten: docs/behavior.md "Personal data"). Whether it was truncated.

    The truncating checkpoint waits for a writer and for readers of an older snapshot, and fails
    at once while another connection checkpoints (a worker's checkpoint thread after each of its
    commits: `stores/sqlite/checkpoints.py`). Each attempt waits `_TRUNCATE_ATTEMPT_MS` at most
    (it keeps the workers' checkpoints from running while it waits, and their log grows), and
    they go on, 0.05 s apart, for up to `wait_s` seconds in all (`BUSY_WAIT_S` when None). When
    none succeeded, that is logged: the next checkpoint copies the overwritten pages into the
    file, and the older ones stay in the log's file until written over or truncated (the last
    connection closing, this again)."""
    (busy_timeout_ms,) = db.execute("PRAGMA busy_timeout").fetchone()
    started = time.monotonic()
    deadline = started + (BUSY_WAIT_S if wait_s is None else wait_s)
    try:
        while True:
            left_ms = int(1000 * (deadline - time.monotonic()))
            db.execute(f"PRAGMA busy_timeout = {max(0, min(_TRUNCATE_ATTEMPT_MS, left_ms))}")
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            if time.monotonic() + _CHECKPOINT_RETRY_S > deadline:
                break
            time.sleep(_CHECKPOINT_RETRY_S)
    finally:
        db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    log.warning(
        "write-ahead log not truncated after forget: another process kept reading or "
        "checkpointing it",
        extra={"file": str(path), "waited_s": round(time.monotonic() - started, 1)},
    )
    return False
