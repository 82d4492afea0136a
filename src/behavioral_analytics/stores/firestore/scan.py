"""`Store.scan_events` on Firestore: the human raw events of a time range, as counted.

`user_events`' single-field index on `timestamp` is exempted (a monotonic field's index caps
the write rate), so the range is read through the composite index `(event_type, timestamp
desc)` that `events_by_type` uses (firestore.indexes.json), one query per event type counted
in the range's day buckets. Each event read is one document read (docs/breakdowns.md
"Filters" states the price); crawlers' events in the range are read and left out.
"""

from __future__ import annotations

from google.cloud import firestore

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import as_person
from behavioral_analytics.events import Event
from behavioral_analytics.period_bounds import LAST_INSTANT
from behavioral_analytics.raw_queries import before_horizon
from behavioral_analytics.stores.firestore.documents import as_datetime
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.reads import Reads, stored_event
from behavioral_analytics.stores.firestore.schema import EVENTS

__all__ = ["scan_events"]


def scan_events(
    gateway: Gateway,
    reads: Reads,
    periods: Periods,
    start_s: float,
    end_s: float,
    limit: int,
    *,
    now: float,
    raw_retention_s: float,
) -> list[Event]:
    """The port's `scan_events` through `gateway` at `now` for a store keeping raw events
    `raw_retention_s` seconds, every read made with `gateway.bound`. Raises ScanError
    (`before_horizon`), the client's errors (the facade's to translate)."""
    horizon_s = now - raw_retention_s
    if start_s < horizon_s:
        raise before_horizon(start_s, horizon_s, raw_retention_s)
    if end_s <= start_s:
        return []
    limit = max(1, limit)
    days = reads.series(
        "day", periods.label("day", start_s), periods.label("day", min(end_s, LAST_INSTANT))
    )
    types = sorted({name for point in days for name in point.events_by_type})
    found: list[Event] = []
    for event_type in types:
        query = (
            gateway.collection(EVENTS)
            .where(filter=firestore.FieldFilter("event_type", "==", event_type))
            .where(filter=firestore.FieldFilter("timestamp", ">=", as_datetime(start_s)))
            .where(filter=firestore.FieldFilter("timestamp", "<=", as_datetime(end_s)))
            .order_by("timestamp", direction=firestore.Query.DESCENDING)
        )
        for snap in query.stream(**gateway.bound):
            data = snap.to_dict() or {}
            # The Timestamp keeps microseconds: the exact bounds are checked on `ts`.
            if data.get("bot") or not start_s <= data["ts"] < end_s:
                continue
            event = stored_event(snap).event
            found.append(as_person(event, data.get("person") or event.who))
            if len(found) >= limit:
                break
        if len(found) >= limit:
            break
    found.sort(key=lambda event: (event.timestamp, event.key))
    return found
