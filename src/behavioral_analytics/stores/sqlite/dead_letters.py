"""Purging dead letters: they hold a rejected message's original bytes (IP addresses, ids), so
they expire (`expire_at`, set from the dead-letter retention when they are recorded) and the
worker and `dlq purge` delete them, adding what they delete to `dead_letters_purged`, counts
by reason that outlive the letters."""

from __future__ import annotations

import sqlite3

__all__ = ["purge_dead_letters", "purged_counts"]

_COUNT_PURGED = """
INSERT INTO dead_letters_purged (reason, count)
SELECT reason, count(*) FROM dead_letters WHERE {where} GROUP BY reason
ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count
"""


def purge_dead_letters(
    db: sqlite3.Connection, now: float, recorded_before: float | None = None
) -> dict[str, int]:
    """Delete the dead letters expired at `now` (epoch seconds) and, with `recorded_before`,
    every one recorded before it too; inside the caller's transaction on `db`. Returns what was
    deleted, by reason, after adding it to the kept counts."""
    where, values = "expire_at <= ?", [now]
    if recorded_before is not None:
        where, values = "(expire_at <= ? OR recorded_at < ?)", [now, recorded_before]
    deleted = dict(
        db.execute(
            f"SELECT reason, count(*) FROM dead_letters WHERE {where} GROUP BY reason", values
        ).fetchall()
    )
    if deleted:
        db.execute(_COUNT_PURGED.format(where=where), values)
        db.execute(f"DELETE FROM dead_letters WHERE {where}", values)
    return deleted


def purged_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Every dead letter ever purged, by reason."""
    return dict(db.execute("SELECT reason, count FROM dead_letters_purged ORDER BY reason"))
