"""`Store.scan_events` on SQLite: the human raw events of a time range, as counted.

No index leads with the timestamp (one would cost a write per event); the range is read
through `events_by_type (event_type, timestamp)`, one range per event type counted in the
range's days (`bucket_types`: every human event is counted there), so the read touches the
range's events and no others.
"""

from __future__ import annotations

import sqlite3

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import as_person
from behavioral_analytics.events import Event
from behavioral_analytics.period_bounds import LAST_INSTANT
from behavioral_analytics.raw_queries import before_horizon
from behavioral_analytics.stores.sqlite.rows import EVENT_COLUMNS, stored_event

__all__ = ["scan_events"]


def scan_events(
    db: sqlite3.Connection,
    periods: Periods,
    start_s: float,
    end_s: float,
    limit: int,
    *,
    now: float,
    raw_retention_s: float,
) -> list[Event]:
    """The port's `scan_events` on `db` at `now` for a store keeping raw events
    `raw_retention_s` seconds. Raises ScanError (`before_horizon`), sqlite3.Error."""
    horizon_s = now - raw_retention_s
    if start_s < horizon_s:
        raise before_horizon(start_s, horizon_s, raw_retention_s)
    if end_s <= start_s:
        return []
    first_day = periods.label("day", start_s)
    last_day = periods.label("day", min(end_s, LAST_INSTANT))
    rows = db.execute(
        f"SELECT {EVENT_COLUMNS}, person FROM events "
        "WHERE event_type IN (SELECT DISTINCT event_type FROM bucket_types "
        "WHERE granularity = 'day' AND period >= ? AND period <= ?) "
        "AND timestamp >= ? AND timestamp < ? AND bot = 0 LIMIT ?",
        (first_day, last_day, start_s, end_s, max(1, limit)),
    ).fetchall()
    found = [as_person(stored_event(row[:-1]).event, row[-1]) for row in rows]
    found.sort(key=lambda event: (event.timestamp, event.key))
    return found
