"""A copy of a SQLite file as it stood at one moment while other processes write it
(`backup`): SQLite's online backup, read-only, and apart from the file's owner where this
process may not write beside it (`sqlite_util.reads_apart`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.sqlite_util import connect_reading, log_files, reads_apart

__all__ = ["CopyError", "backup_file"]


class CopyError(Exception):
    """`backup_file` could not write its copy at `target`; `cause` is SQLite's error."""

    def __init__(self, target: Path, cause: sqlite3.Error) -> None:
        super().__init__(f"{target}: {cause}")
        self.target = target
        self.cause = cause


def backup_file(source: Path, target: Path) -> int:
    """Copy the SQLite file at `source` (which must exist) to `target` (which must not) as it
    stood at one moment, while other processes go on writing it: SQLite's online backup
    (https://www.sqlite.org/backup.html), in one step, under one read transaction, so the copy
    holds whole transactions only and what is in the write-ahead log too. `source` is opened
    read-only, and apart (`connect_reading`) where this process may not write it or does not
    own it: a read-only folder can be copied, and another user's gets no file of this one's
    beside it. A copy of a file read as it stands (no writer had it open) is taken again,
    through the writer's log, if a writer opened the file meanwhile (up to 3 times). Returns
    the copy's size in bytes. Raises `CopyError` when the copy cannot be written,
    `sqlite3.Error` when `source` cannot be read, `FileExistsError` if `target` exists."""
    if target.exists():
        raise FileExistsError(f"{target} exists")
    for _ in range(3):
        before = _moment(source)
        _copy(source, target)
        if before is None or _moment(source) == before:
            break
        target.unlink()
    else:
        raise sqlite3.OperationalError(
            f"{source} changed during each of 3 copies while no writer's log was there to read"
        )
    return target.stat().st_size


def _moment(source: Path) -> tuple[int, int, bool] | None:
    """For a file read as it stands (`reads_apart`, no `-shm` beside it): its size, its change
    time and whether a log is beside it now, which a writer opening it changes; None otherwise."""
    log, index = log_files(source)
    if not reads_apart(source) or index.exists():
        return None
    stat = source.stat()
    return stat.st_size, stat.st_mtime_ns, log.exists()


def _copy(source: Path, target: Path) -> None:
    if reads_apart(source):
        db = connect_reading(source)
    else:
        db = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        # The source read first: a failure to read it is not to be reported as the copy's.
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        try:
            copy = sqlite3.connect(target)
        except sqlite3.Error as exc:
            raise CopyError(target, exc) from exc
        try:
            db.backup(copy)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SOURCE_DAMAGED:
                raise
            raise CopyError(target, exc) from exc
        finally:
            copy.close()
    finally:
        db.close()


# SQLITE_CORRUPT and SQLITE_NOTADB: what a backup raises for the file it reads, not the copy.
_SOURCE_DAMAGED = (11, 26)
