"""SQL building blocks the modules share: inserts that report what they created, and JSON-array
parameters read as tables (`json_each`), so a batch's people, ranges and pairs go to SQLite as
one bound value each.

`insert_created` is the cheap way to learn what an insert created when almost every row is new
(a commit's raw events): a plain `executemany` inside a savepoint, whose change count says
whether every row was created; only when some were not is it undone and redone as a multi-row
`RETURNING` insert (`insert_returning`), which costs about twice as much per row.

Counts kept as a JSON object per row (value → count: a set's values in one row, written once
per commit, not a row per value) are added to in SQL (`added_counts`), without reading them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

__all__ = [
    "PAIRS",
    "RANGES",
    "added_counts",
    "decode_counts",
    "insert_created",
    "insert_returning",
    "json_list",
    "ranges_json",
]

_CHUNK_PARAMETERS = 30_000  # below SQLite's limit of 32,766 bound parameters per statement

# Per-person time ranges / (person, client session id) pairs, passed as one JSON parameter.
RANGES = (
    "WITH ranges(person, low, high) AS (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)) "
)
PAIRS = (
    "WITH pairs(person, client_id) AS (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(?)) "
)


def added_counts(table: str, column: str) -> str:
    """The SQL expression, for an upsert's `DO UPDATE SET column = …` on `table`, of the
    stored JSON object of counts in `column` (value → integer) plus the inserted row's one:
    counts summed per value, values whose sum is zero left out (`{}` when none is left)."""
    return (
        "(SELECT json_group_object(key, n) FROM (SELECT key, sum(value) AS n FROM ("
        f"SELECT key, value FROM json_each({table}.{column}) "
        f"UNION ALL SELECT key, value FROM json_each(excluded.{column})) "
        "GROUP BY key HAVING n != 0))"
    )


_decode_counts = msgspec.json.Decoder(dict[str, int]).decode


def decode_counts(text: str) -> dict[str, int]:
    """A stored JSON object of counts (value → integer), as `added_counts` keeps it."""
    return _decode_counts(text)


def insert_returning(
    db: sqlite3.Connection,
    table: str,
    width: int,
    rows: Sequence[tuple[Any, ...]],
    returning: str,
    on_conflict: str,
) -> list[Any]:
    """Multi-row INSERT … ON CONFLICT … RETURNING: what was actually created, in few calls.

    `rows` are tuples of `width` values each, sent in statements of at most 30,000 bound
    parameters (SQLite allows 32,766). Returns the `returning` column's values, or tuples of
    them when it names several columns. Raises `sqlite3.Error` as the statement does.
    """
    created: list[Any] = []
    step = _CHUNK_PARAMETERS // width
    placeholder = "(" + ", ".join("?" * width) + ")"
    single = "," not in returning
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        sql = (
            f"INSERT INTO {table} VALUES {', '.join([placeholder] * len(chunk))} "
            f"ON CONFLICT {on_conflict} RETURNING {returning}"
        )
        params = [value for row in chunk for value in row]
        result = db.execute(sql, params).fetchall()
        created.extend(row[0] for row in result) if single else created.extend(result)
    return created


def insert_created(
    db: sqlite3.Connection,
    table: str,
    width: int,
    rows: Sequence[tuple[Any, ...]],
    column: int,
    on_conflict: str,
) -> list[Any]:
    """INSERT … ON CONFLICT … DO NOTHING of `rows` (tuples of `width` values) into `table`:
    the value at index `column` of each row actually created, in `rows`' order. Run inside the
    caller's transaction; `on_conflict` must make a conflicting row insert nothing (a conflict
    target and `DO NOTHING`), and no trigger may write, so that the change count is the rows
    created. Raises `sqlite3.Error` as the statements do."""
    if not rows:
        return []
    db.execute("SAVEPOINT insert_created")
    try:
        before = db.total_changes
        db.executemany(
            f"INSERT INTO {table} VALUES ({', '.join('?' * width)}) ON CONFLICT {on_conflict}",
            rows,
        )
        if db.total_changes - before != len(rows):
            # Some existed: undo, and ask the insert which rows it creates.
            db.execute("ROLLBACK TO insert_created")
            returning = db.execute(f"PRAGMA table_info({table})").fetchall()[column][1]
            return insert_returning(db, table, width, rows, returning, on_conflict)
    finally:
        db.execute("RELEASE insert_created")
    return [row[column] for row in rows]


def json_list(values: Iterable[str]) -> str:
    """`values` as one JSON array, for `… IN (SELECT value FROM json_each(?))`."""
    return msgspec.json.encode(list(values)).decode()


def ranges_json(persons: Iterable[str], spans: dict[str, list[float]]) -> str:
    """The `RANGES` parameter: `[[person, low, high], …]` for each of `persons`, from `spans`
    (person → [low, high], epoch seconds)."""
    return msgspec.json.encode([[p, *spans[p]] for p in persons]).decode()
