"""SQL building blocks the modules share: a multi-row insert that reports what it created, and
JSON-array parameters read as tables (`json_each`), so a batch's people, ranges and pairs go to
SQLite as one bound value each."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

__all__ = ["PAIRS", "RANGES", "insert_returning", "json_list", "ranges_json"]

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


def json_list(values: Iterable[str]) -> str:
    """`values` as one JSON array, for `… IN (SELECT value FROM json_each(?))`."""
    return msgspec.json.encode(list(values)).decode()


def ranges_json(persons: Iterable[str], spans: dict[str, list[float]]) -> str:
    """The `RANGES` parameter: `[[person, low, high], …]` for each of `persons`, from `spans`
    (person → [low, high], epoch seconds)."""
    return msgspec.json.encode([[p, *spans[p]] for p in persons]).decode()
