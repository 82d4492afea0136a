"""The raw events' `$derived.parsers`, stored once per distinct value (layout 2).

Ingestion stores, in every raw event, the versions of the parsers that derived its browser, OS,
device and country (`"$derived": {…, "parsers": {"user_agent": "1.0.2/202610", "geo":
"3.3.170"}}`, docs/breakdowns.md): 56 bytes of JSON that are the same for every event one
release derives. A commit stores an event's properties without them, and the row's `parsers_id`
names the `derived_parsers` row that holds them (issue #17's stored-bytes target: on the live
benchmark, 1.52 times the bare table's bytes with them in each row). Every read of a raw event
as the port's type puts them back where they were (`EVENT_COLUMNS` selects them,
`rows.stored_event` restores them), so what a reader gets is what was ingested, and so does the
funnels' read of stored events, whose step filters may name any property path; the store's other
readers of the properties text (identity moves, forgetting) read dimensions only, which never
come from the parsers.

Split off only where restoring gives back the same object, key order included: `$derived` is an
object whose last key is `parsers`, itself an object (the shape ingestion gives). Anything else
stays in the properties as sent, with `parsers_id` NULL, as do the rows written before layout 2.
The table is small: a row per parsers' value the stored events carry, at most
`MAX_PARSERS_ROWS` (a publisher with direct access to the topic may send any `$derived`; past
that many distinct values, they stay in the properties). A row goes when the last event naming
it is forgotten or expires, and is not kept when only duplicates carried its value
(`drop_unreferenced`): what a publisher sent there may be anyone's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from behavioral_analytics.dimensions import DERIVED

__all__ = [
    "MAX_PARSERS_ROWS",
    "PARSERS_COLUMN",
    "PARSERS_SCHEMA",
    "drop_unreferenced",
    "parsers_ids",
    "parsers_of",
    "restore_parsers",
    "split_parsers",
]

PARSERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS derived_parsers (
  id INTEGER PRIMARY KEY,
  parsers TEXT NOT NULL UNIQUE  -- a `$derived.parsers` object, as JSON
);
"""


def parsers_of(table: str = "events") -> str:
    """The parsers' JSON of an `events` row (NULL: in its properties, or none), as a column to
    select from `table` (the events table's name or alias in the query)."""
    return f"(SELECT parsers FROM derived_parsers WHERE id = {table}.parsers_id)"


PARSERS_COLUMN = parsers_of()
MAX_PARSERS_ROWS = 256
_PARSERS = "parsers"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def split_parsers(properties: dict[str, Any]) -> tuple[bytes, bytes | None]:
    """An event's properties as stored (JSON) and its `$derived.parsers` (JSON), when they can
    be stored apart (the module's docstring); else (the whole properties as JSON, None)."""
    derived = properties.get(DERIVED)
    if type(derived) is not dict or not derived or next(reversed(derived)) != _PARSERS:
        return _encode(properties), None
    parsers = derived[_PARSERS]
    if type(parsers) is not dict:
        return _encode(properties), None
    rest = dict(derived)
    del rest[_PARSERS]
    return _encode({**properties, DERIVED: rest}), _encode(parsers)


def restore_parsers(properties: dict[str, Any], parsers: str | None) -> dict[str, Any]:
    """`properties` (decoded from a row) with the row's `parsers` (JSON text from
    `PARSERS_COLUMN`, None when the row kept them in its properties) put back as the last key
    of `$derived`."""
    if parsers is not None:
        properties[DERIVED][_PARSERS] = _decode(parsers)
    return properties


def parsers_ids(db: sqlite3.Connection, values: Iterable[bytes]) -> dict[bytes, int | None]:
    """Inside a write transaction on `db`: the `derived_parsers` id of each of `values`
    (parsers' JSON), a row created for a value without one while the table holds fewer than
    `MAX_PARSERS_ROWS`; None for a value left without (it stays in the event's properties).
    Read afresh in every transaction (a commit carries one or two values): nothing remembered
    can name a row that a rolled-back transaction created."""
    ids: dict[bytes, int | None] = {}
    for value in set(values):
        text = value.decode()
        row = db.execute("SELECT id FROM derived_parsers WHERE parsers = ?", (text,)).fetchone()
        if row is None:
            if db.execute("SELECT count(*) FROM derived_parsers").fetchone()[0] >= MAX_PARSERS_ROWS:
                ids[value] = None
                continue
            [row] = db.execute(
                "INSERT INTO derived_parsers (parsers) VALUES (?) RETURNING id", (text,)
            ).fetchall()
        ids[value] = int(row[0])
    return ids


def drop_unreferenced(db: sqlite3.Connection, ids: Iterable[int | None]) -> None:
    """Inside a write transaction on `db`, after raw events were deleted (forgotten or expired):
    delete the `derived_parsers` rows among `ids` (the deleted rows' `parsers_id`, None
    ignored) that no raw event names any longer, so that what a publisher sent as parsers goes
    with the events that carried it. The events are read newest first, so a value still named
    is found at its newest event (the current release's: at once, not after the rows stored
    before layout 2, which name none); one no longer named costs a scan of the events."""
    db.executemany(
        "DELETE FROM derived_parsers WHERE id = ?1 AND (SELECT rowid FROM events "
        "WHERE parsers_id = ?1 ORDER BY rowid DESC LIMIT 1) IS NULL",
        [(i,) for i in {i for i in ids if i is not None}],
    )
