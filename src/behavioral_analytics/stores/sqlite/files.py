"""Checks of the SQLite files under the data folder, so that a broken file gets one line
naming it and what to do, never a traceback, and an empty or missing store never silently
replaces one that existed.

On every open (cheap, no page read but the first): the 100-byte header (SQLite's magic
string and page size), the size (whole pages, at least the page count the header records),
and that a file with tables holds this program's tables. `PRAGMA quick_check` reads every
page, so it costs time in proportion to the file: it runs at `init`, when a worker starts
and in `doctor`, not on every open.

A marker file beside the store (`store.db.created`) records that a store was created there.
A store file that is missing or empty while its marker exists is refused: it was deleted or
truncated (a bad copy, a full disk, a mistaken `rm`), and creating an empty one would make
every count start again from zero while `verify` finds nothing wrong.

The file format is SQLite's (https://www.sqlite.org/fileformat2.html, "The Database Header").
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from behavioral_analytics import sqlite_util
from behavioral_analytics.sqlite_util import (
    access_problem,
    connect_reading,
    dangling_link,
    is_busy,
    locked,
    not_a_file,
    retrying_busy,
)
from behavioral_analytics.store import StoreError

__all__ = [
    "BUSY_WAIT_S",
    "check_apart",
    "check_before_open",
    "check_header",
    "damaged",
    "mark_created",
    "marker_path",
    "note_open",
    "quick_check",
    "unusable",
    "waiting_out_locks",
]

T = TypeVar("T")

# Seconds a check waits for a lock SQLite's own busy timeout does not cover.
BUSY_WAIT_S = sqlite_util.BUSY_WAIT_S
_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
# Files this process has opened with SQLite. Closing any descriptor of a file drops every
# POSIX lock the process holds on it, SQLite's included: a connection would then go on
# writing into a write-ahead log that another process deletes. So once a file is open here,
# its header is never read with a descriptor of our own, only through SQLite.
_opened: set[str] = set()


def note_open(path: Path) -> None:
    """Record that this process holds SQLite connections to `path` (see `check_header`)."""
    _opened.add(str(path.resolve()))


def unusable(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one-line error for `exc` on the file at `path`: what to check when the file could
    not be opened, read or written where it is (`sqlite_util.access_problem`), else
    `damaged`."""
    problem = access_problem(path, exc)
    return damaged(path, str(exc)) if problem is None else StoreError(problem)


def damaged(path: Path, what: str) -> StoreError:
    """The one-line error for a damaged file at `path`."""
    return StoreError(
        f"the file {path} is damaged ({what}): restore it from a backup, or move it aside "
        "and run `behavioral-analytics init` to start empty (`behavioral-analytics doctor` "
        "checks every file)"
    )


def waiting_out_locks(path: Path, read: Callable[[], T]) -> T:
    """`read()` (or the opening) of the file at `path`, tried again while another process
    holds a lock SQLite does not wait for (the store being created or its log recovered by
    another worker starting at the same moment), for up to `BUSY_WAIT_S`. Raises StoreError:
    `damaged` for any other error, a busy file named as such, never as damage."""
    try:
        return retrying_busy(read, BUSY_WAIT_S)
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise unusable(path, exc) from None
        raise StoreError(f"the file {locked(path, exc, BUSY_WAIT_S)}") from None
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None


def marker_path(path: Path) -> Path:
    """The marker that says a store was created at `path`."""
    return path.with_name(path.name + ".created")


def mark_created(path: Path) -> None:
    """Record that the store at `path` exists (once; an existing marker is kept)."""
    marker = marker_path(path)
    if not marker.exists():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        marker.write_text(
            f"A behavioral-analytics store was created at {path.name} on {stamp}.\n"
            "While this file exists, a missing or empty store file is an error, not a new "
            "start. Delete it to start over with an empty store.\n",
            encoding="utf-8",
        )


def check_before_open(path: Path, *, expect_tables: str = "events") -> bool:
    """Check the store file at `path` before SQLite opens it; True when there is no store yet
    (no file, or an empty one, and no marker), so opening it creates one.

    Raises StoreError (one line) for a missing or empty file where a store existed, a folder
    in the file's place, a file that is not SQLite, a damaged header or size, or a SQLite file
    whose tables are not a store's (none named `expect_tables`)."""
    marker = marker_path(path)
    # The marker is looked at first: a process creating the store writes it once the file
    # has its header, so a file seen empty after the marker is missing content, while a file
    # seen empty before it may be one another worker is creating at this moment.
    marked = marker.exists()
    size = path.stat().st_size if path.exists() else None
    if not size:
        if marked:
            state = "empty (0 bytes)" if size is not None else "missing"
            if path.is_symlink():
                state = f"a link to {os.readlink(path)}, which is missing"
            raise StoreError(
                f"the store file {path} is {state}, but a store existed there ({marker}): "
                f"restore it from a backup, or delete {marker.name} to start an empty store"
            )
        if problem := dangling_link(path, unless_creatable=True):
            raise StoreError(problem)
        return True
    if folder := not_a_file(path):
        raise StoreError(folder)
    check_header(path)

    tables = waiting_out_locks(path, lambda: sqlite_util.table_names(path))
    if tables and expect_tables not in tables:
        raise StoreError(
            f"{path} is a SQLite file but not a behavioral-analytics store (no "
            f"{expect_tables} table): point BA_DATA_DIR at your data, or move the file aside"
        )
    return not tables


def check_apart(path: Path) -> None:
    """Every page of the SQLite file at `path` (the store or the broker), read through a
    connection that writes nothing, the file or beside it (`sqlite_util.connect_reading`): for
    a file this process may not write or does not own (`sqlite_util.reads_apart`). Raises
    StoreError (one line): damaged pages, a log it cannot read, a file it cannot open."""
    db = waiting_out_locks(path, lambda: connect_reading(path))
    try:
        quick_check(db, path)
    finally:
        db.close()


def check_header(path: Path) -> None:
    """The header and size of the SQLite file at `path`. Raises StoreError (`damaged`).

    In a process that holds SQLite connections to the file (`note_open`), the page size comes
    from SQLite and the size is checked against it; the raw header is read only before."""
    size = path.stat().st_size
    if str(path.resolve()) in _opened:
        _check_size_through_sqlite(path, size)
        return
    with path.open("rb") as file:
        header = file.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES or not header.startswith(_MAGIC):
        raise damaged(path, "not a SQLite database: its header is wrong")
    page_size = int.from_bytes(header[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged(path, f"its header gives an impossible page size, {page_size}")
    if size % page_size:
        raise damaged(path, f"{size} bytes is not a whole number of {page_size}-byte pages")
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when "version-valid-for" equals the change counter. A checkpoint
    # writes page 1 (this header) before the pages after it, so a process killed mid-checkpoint
    # leaves a shorter file whose missing pages are still in the write-ahead log, which the
    # next open replays: with a log present the count is no evidence of truncation.
    wal = path.with_name(path.name + "-wal")
    replayable = wal.exists() and wal.stat().st_size > 0
    if header[92:96] == header[24:28] and pages * page_size > size and not replayable:
        raise damaged(
            path, f"truncated: {size // page_size} pages of the {pages} its header records"
        )


def _check_size_through_sqlite(path: Path, size: int) -> None:
    def read_page_size() -> int:
        db = sqlite3.connect(path, timeout=30.0)
        try:
            return int(db.execute("PRAGMA page_size").fetchone()[0])
        finally:
            db.close()

    page_size = waiting_out_locks(path, read_page_size)
    if size % page_size:
        raise damaged(path, f"{size} bytes is not a whole number of {page_size}-byte pages")


def quick_check(db: sqlite3.Connection, path: Path) -> None:
    """`PRAGMA quick_check` on `db` (the file at `path`): reads every page. Raises StoreError
    (`damaged`) naming the first problems SQLite found."""
    rows = waiting_out_locks(path, lambda: [row[0] for row in db.execute("PRAGMA quick_check(5)")])
    if rows != ["ok"]:
        raise damaged(path, _one_line(rows))


def _one_line(rows: list[str]) -> str:
    """SQLite's integrity report (several lines, "*** in database main ***" first) as one."""
    lines = [" ".join(row.replace("*** in database main ***", "").split()) for row in rows]
    return "; ".join(line for line in lines if line)
