"""The SQLite store's metadata: the configuration that shapes its numbers (`StoredConfig`),
recorded by the first commit, checked by every later one, and the backfill of a funnel added
to it.

One row per name in the `metadata` table (`config`: the canonical JSON of the configuration).
Every commit reads the row inside its write transaction: a process whose configuration is not
the recorded one (a worker started before `config apply`, a test store built with other rules)
fails its commit with one line (`ConfigChanged`) instead of counting by other rules.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.store import ConfigChanged, StoreError
from behavioral_analytics.stored_config import StoredConfig, changed_line
from behavioral_analytics.stores.sqlite import files
from behavioral_analytics.stores.sqlite.schema import UPSERT_FUNNEL_BUCKET

__all__ = [
    "METADATA_SCHEMA",
    "backfill_funnels",
    "hold_config",
    "read_config",
    "recorded_in_file",
    "write_config",
]

METADATA_SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  recorded_at REAL NOT NULL
) WITHOUT ROWID;
"""

_CONFIG = "config"


def read_config(db: sqlite3.Connection) -> StoredConfig | None:
    """The recorded configuration, None before the first commit.

    Raises StoreError when the recorded row cannot be read as one.
    """
    row = _recorded(db)
    if row is None:
        return None
    try:
        return StoredConfig.from_json(row[0])
    except ValueError as exc:
        raise StoreError(f"the store's recorded configuration is unreadable: {exc}") from None


def recorded_in_file(path: Path) -> StoredConfig | None:
    """The configuration recorded in the store file at `path`, read through a plain
    connection, without opening it as a store (which would migrate a file of an earlier layout:
    `layout.check_earlier` is its check); None when nothing is recorded, or the file is from
    before configurations were recorded (no `metadata` table). Raises StoreError (one line)
    for a file that cannot be read or a record that cannot be read as one."""

    def read() -> StoredConfig | None:
        db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        try:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metadata'"
            ).fetchall():
                return None
            return read_config(db)
        finally:
            db.close()

    return files.waiting_out_locks(path, read)


def _recorded(db: sqlite3.Connection) -> tuple[str] | None:
    # fetchall, not fetchone: an unfinished statement would hold its read snapshot open.
    rows = db.execute("SELECT value FROM metadata WHERE name = ?", (_CONFIG,)).fetchall()
    return rows[0] if rows else None


def write_config(db: sqlite3.Connection, config: StoredConfig, now: float) -> None:
    """Record `config` (replacing what was recorded), at `now` (epoch seconds)."""
    db.execute(
        "INSERT INTO metadata VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "value = excluded.value, recorded_at = excluded.recorded_at",
        (_CONFIG, config.to_json(), now),
    )


def hold_config(db: sqlite3.Connection, config: StoredConfig, now: float) -> None:
    """Inside a commit's write transaction: record `config` if nothing is recorded yet, else
    check that it is the recorded one.

    Raises ConfigChanged (one line, naming what differs) when another configuration is
    recorded.
    """
    row = _recorded(db)
    if row is None:
        write_config(db, config, now)
    elif row[0] != config.to_json():
        raise ConfigChanged(changed_line(config, read_config(db) or config))


def backfill_funnels(
    db: sqlite3.Connection,
    funnels: Sequence[str],
    events: Iterable[Event],
    links: Sequence[Link],
    rules: BehaviorRules,
    periods: Periods,
) -> None:
    """Replace the progress and figures of the funnels named `funnels` (of `rules`) by their
    recount from `events` (every retained raw event). Run inside a write transaction."""
    chosen = tuple(f for f in rules.funnels if f.name in funnels)
    counted = recount(events, links, replace(rules, funnels=chosen), periods)
    for name in funnels:
        db.execute("DELETE FROM funnel_progress WHERE funnel = ?", (name,))
        db.execute("DELETE FROM funnel_buckets WHERE funnel = ?", (name,))
    db.executemany(
        "INSERT INTO funnel_progress VALUES (?, ?, ?, ?)",
        [(f, person, day, step) for (f, person, day), step in counted.funnel_progress.items()],
    )
    db.executemany(
        UPSERT_FUNNEL_BUCKET,
        [(f, day, step, n) for (f, day, step), n in counted.funnel_users.items()],
    )
