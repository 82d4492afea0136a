"""The layout of the SQLite store's tables, numbered in the file itself.

A release changes the tables' layout one way (`schema.migrate`: README "Upgrading a store"),
and a release from before such a change cannot read what it finds afterwards: until this
number was kept, it failed on the first statement the new layout breaks, with SQLite's words
("table breakdown_buckets has 5 columns but 6 values were supplied"). The number is the file's
`PRAGMA user_version` (SQLite's header field for the application's own use; 0 in a file
written before it was kept). Each release that changes the layout raises `LAYOUT`; this one
refuses, in one line, a file whose number is larger: when opening it (before anything is
migrated or created) and in each of its write transactions, which read it again, so that a
worker still running when a newer release upgraded the file writes nothing and stops, and the
API's watch of the recorded configuration stops the API (as when the recorded configuration
changed: `store.ConfigChanged`).

  1  breakdown counts in a row per (granularity, period, dimension) (2026-12-05), and every
     layout before it (the number was first kept then).
  2  the raw events' `$derived.parsers` in a table of their own, named by the row's
     `parsers_id` (2026-12-07; `derived_parsers`): an earlier release would read the events
     stored since without them.

`doctor` checks a file of an earlier layout without opening it as a store, which would upgrade
it (`check_earlier`): a check before an upgrade must leave the way back open.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.sqlite_util import connect_reading, reads_apart
from behavioral_analytics.store import ConfigChanged, StoreError
from behavioral_analytics.stores.sqlite import files

__all__ = [
    "LAYOUT",
    "check_earlier",
    "hold_layout",
    "record_layout",
    "refuse_newer",
    "refuse_other",
]

LAYOUT = 2


def _layout_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def refuse_newer(db: sqlite3.Connection, path: Path) -> None:
    """Raises StoreError (one line, naming the file and what to do) when the store file `db`
    has open, at `path`, has a layout newer than `LAYOUT`; writes nothing."""
    found = _layout_of(db)
    if found > LAYOUT:
        raise StoreError(
            f"the store {path} was upgraded by a newer release of behavioral-analytics (its "
            f"tables' layout {found}; this release reads layout {LAYOUT}): run that release, or "
            "restore a copy taken before the upgrade (`behavioral-analytics backup`)"
        )


def refuse_other(db: sqlite3.Connection, path: Path) -> None:
    """For a process that only reads the store file `db` has open, at `path`, apart
    (`sqlite_util.connect_reading`): raises StoreError (one line) when its layout is not
    `LAYOUT`: a newer one (`refuse_newer`), or an earlier one, which only a process that
    writes the file brings up to date (`schema.migrate`)."""
    refuse_newer(db, path)
    found = _layout_of(db)
    if found < LAYOUT:
        raise StoreError(
            f"the store {path} has an earlier release's tables (layout {found}; this release "
            f"reads layout {LAYOUT}), which a command that only reads another user's store or "
            "one it may not write does not bring up to date: run `behavioral-analytics init` "
            f"once as the user {path.parent} is for, or read it with the release that wrote it"
        )


def record_layout(db: sqlite3.Connection) -> None:
    """Number the file `db` has open with `LAYOUT`, once its tables are this release's (after
    `schema.migrate` and the schema); a file numbered so already is not written."""
    if _layout_of(db) < LAYOUT:
        db.execute(f"PRAGMA user_version = {LAYOUT}")


def hold_layout(db: sqlite3.Connection) -> None:
    """Inside a write transaction (a commit, the worker's housekeeping, `forget` …) or before
    a read of the recorded configuration (the API's watch): raises ConfigChanged (one line)
    when a newer release has upgraded the file's layout since this process opened it, naming
    the file."""
    found = _layout_of(db)
    if found > LAYOUT:
        path = db.execute("PRAGMA database_list").fetchone()[2]  # (seq, name, file) of main
        raise ConfigChanged(
            f"the store {path}: its tables were upgraded to layout {found} by a newer release of "
            f"behavioral-analytics while this process ran (this release reads layout {LAYOUT}): "
            "this process writes nothing more; run that release, or restore a copy taken before "
            "the upgrade (`behavioral-analytics backup`)"
        )


def check_earlier(path: Path) -> int | None:
    """When the store file at `path` has an earlier release's layout (its number below
    `LAYOUT`), read every page of it (`files.quick_check`) through a plain connection, and
    return the number: nothing is migrated, numbered or written, as opening it as a store
    would (a write-ahead log left beside the file is folded into it on close, as on any
    open: the same data). None, having read nothing but its header and table names, when
    there is no store there yet or it is at this release's layout or a newer one (opening it
    checks or refuses it then). Raises StoreError (one line) for a damaged or foreign file."""
    if files.check_before_open(path):
        return None

    def read() -> sqlite3.Connection:
        if reads_apart(path):  # another user's file, or one this process may not write
            return connect_reading(path)
        return sqlite3.connect(path, timeout=30.0, check_same_thread=False)

    db = files.waiting_out_locks(path, read)
    try:
        found = files.waiting_out_locks(path, lambda: _layout_of(db))
        if found >= LAYOUT:
            return None
        files.quick_check(db, path)
        return found
    finally:
        db.close()
