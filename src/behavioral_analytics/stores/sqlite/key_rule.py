"""The key rule's version recorded in the SQLite store's `metadata` table (row `key_rule`: a
JSON list of the versions that have written the store, oldest first; `events.KEY_RULE_VERSION`).

Every commit checks it inside its write transaction. A store holding events but no row was
written under version 1 (before the rule was recorded), so its first recording lists [1, 2]:
its stored Segment events keep their old keys, and their redeliveries (published without
`id_kind`) are keyed the old way, so they are still one event each. A process older than the
store's newest rule refuses to commit: it would key new Segment events another way.
"""

from __future__ import annotations

import json
import sqlite3

from behavioral_analytics.events import KEY_RULE_VERSION
from behavioral_analytics.store import StoreError

__all__ = ["hold_key_rule", "read_key_rules"]

_NAME = "key_rule"


def read_key_rules(db: sqlite3.Connection) -> list[int]:
    """The versions of the key rule that have written the store, oldest first ([] before its
    first commit)."""
    row = db.execute("SELECT value FROM metadata WHERE name = ?", (_NAME,)).fetchone()
    return [int(v) for v in json.loads(row[0])] if row is not None else []


def hold_key_rule(db: sqlite3.Connection, now: float) -> None:
    """Inside a commit's write transaction on `db`: record this process's key rule version
    (at `now`, epoch seconds) unless recorded.

    Raises StoreError when the store was written by a newer key rule."""
    versions = read_key_rules(db)
    if versions and versions[-1] > KEY_RULE_VERSION:
        raise StoreError(
            f"the store's events are keyed by key rule {versions[-1]}, this process's is "
            f"{KEY_RULE_VERSION}: upgrade it"
        )
    if KEY_RULE_VERSION in versions:
        return
    if not versions and db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None:
        versions = [1]  # written before the rule was recorded
    db.execute(
        "INSERT INTO metadata VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "value = excluded.value, recorded_at = excluded.recorded_at",
        (_NAME, json.dumps([*versions, KEY_RULE_VERSION]), now),
    )
