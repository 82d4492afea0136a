"""The counters every store keeps: buckets per period and event type, unique-user markers and
profiles, changed by a fold's deltas. A person's profile and events per type are one row
(`persons`): one row write per person per commit."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

import msgspec

from behavioral_analytics.aggregation import Deltas
from behavioral_analytics.stores.sqlite.schema import (
    UPSERT_BUCKET,
    UPSERT_BUCKET_TYPE,
    UPSERT_PROFILE,
)
from behavioral_analytics.stores.sqlite.sql import insert_returning

__all__ = ["apply_deltas", "subtract_buckets", "types_json"]

_encode = msgspec.json.Encoder().encode


def types_json(by_type: Mapping[str, int]) -> str:
    """Events per type as the JSON object text `persons.types` and its upserts take."""
    return _encode(dict(by_type)).decode()


def _new_markers(
    db: sqlite3.Connection, markers: AbstractSet[tuple[str, str, str]]
) -> Counter[tuple[str, str]]:
    """Create the unique-user markers not stored yet; count the new ones per bucket."""
    return Counter(
        insert_returning(
            db, "unique_markers", 3, list(markers), "granularity, period", "DO NOTHING"
        )
    )


def apply_deltas(db: sqlite3.Connection, deltas: Deltas, now: float) -> None:
    """Add `deltas` to the buckets, markers and profiles, stamping them updated at `now`
    (epoch seconds); a bucket's unique users grow by the markers actually created."""
    new_uniques = _new_markers(db, deltas.markers)
    db.executemany(
        UPSERT_BUCKET,
        [
            (granularity, period, bucket.total, new_uniques[granularity, period], now)
            for (granularity, period), bucket in deltas.buckets.items()
        ],
    )
    db.executemany(
        UPSERT_BUCKET_TYPE,
        [
            (granularity, period, event_type, count)
            for (granularity, period), bucket in deltas.buckets.items()
            for event_type, count in bucket.by_type.items()
        ],
    )
    db.executemany(
        UPSERT_PROFILE,
        [
            (who, p.total, p.first_seen, p.last_activity, now, types_json(p.by_type))
            for who, p in deltas.profiles.items()
        ],
    )


def subtract_buckets(db: sqlite3.Connection, deltas: Deltas) -> None:
    """Take events' bucket counts back out (forgetting them); markers and profiles are
    removed per person by the caller."""
    db.executemany(
        UPSERT_BUCKET,
        [(g, p, -bucket.total, 0, 0.0) for (g, p), bucket in deltas.buckets.items()],
    )
    db.executemany(
        UPSERT_BUCKET_TYPE,
        [
            (g, p, event_type, -count)
            for (g, p), bucket in deltas.buckets.items()
            for event_type, count in bucket.by_type.items()
        ],
    )
