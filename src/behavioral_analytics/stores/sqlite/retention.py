"""Retention on the SQLite store: cohorts from the profiles' `first_seen` and the day markers
of `unique_markers` (rule: `behavioral_analytics.retention`).

A person's day markers are their active days: created by the commit for the person an event
counts for, moved by identity stitching, deleted by `forget`. One query reads the markers of
the days the table needs (the primary key's `(granularity, period)` range) joined with the
profiles first seen in the cohort days (a profile by its primary key per marker); its cost
grows with the active person-days in that range, and a request whose cohorts hold more than
`retention.MAX_PERSONS` people is refused. The first-seen day is added to a person's days
(it always holds a marker; the one statement reads one snapshot of both tables).

With a start event, the cohorts come from the raw events of that type dated from the first
cohort day on (index `events_by_type`; at most `retention.MAX_START_EVENTS` of them, counted
first), per person their number and earliest, kept where the number equals the person's
`profile_types` count (`retention.first_start_days`'s rule, applied in SQL), joined with the
day markers of the needed days: again one statement, one snapshot.
"""

from __future__ import annotations

import sqlite3

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.retention import (
    MAX_PERSONS,
    MAX_START_EVENTS,
    RetentionCohort,
    RetentionRead,
    cohorts,
    too_many,
    too_many_start_events,
)

__all__ = ["retention"]


def retention(
    db: sqlite3.Connection, periods: Periods, read: RetentionRead
) -> list[RetentionCohort]:
    """The `Store.retention` answer on `db` for `read` (`retention.plan`'s checked request),
    periods labelled by `periods`. Raises RetentionError (too many people or start events),
    sqlite3.Error."""
    if read.start_event is not None:
        return _by_start_event(db, periods, read, read.start_event)
    active: dict[str, set[str]] = {}
    for who, day, first_seen in db.execute(
        "SELECT m.who, m.period, p.first_seen FROM unique_markers AS m "
        "JOIN profiles AS p ON p.who = m.who "
        "WHERE m.granularity = 'day' AND m.period >= ? AND m.period <= ? "
        "AND p.first_seen >= ? AND p.first_seen < ?",
        (read.start_day, read.last_day, read.first_seen_from, read.first_seen_until),
    ):
        days = active.get(who)
        if days is None:
            if len(active) == MAX_PERSONS:
                raise too_many()
            days = active[who] = {periods.label("day", first_seen)}
        days.add(day)
    return cohorts(active, read)


# Per person: their human start events from the first cohort day on, kept when that count is
# their all-time count (no earlier one) and the earliest is within the cohort days; with their
# day markers of the needed days (every such person holds one on their cohort day).
_BY_START_EVENT = """
WITH starts AS (
  SELECT s.person AS who, s.earliest AS earliest FROM (
    SELECT person, count(*) AS n, min(timestamp) AS earliest FROM events
    WHERE event_type = :type AND timestamp >= :since AND bot = 0 GROUP BY person
  ) AS s JOIN profile_types AS t ON t.who = s.person AND t.event_type = :type
  WHERE s.n = t.count AND s.earliest < :until
)
SELECT starts.who, starts.earliest, m.period FROM starts
JOIN unique_markers AS m ON m.who = starts.who
WHERE m.granularity = 'day' AND m.period >= :first_day AND m.period <= :last_day
"""


def _by_start_event(
    db: sqlite3.Connection, periods: Periods, read: RetentionRead, start_event: str
) -> list[RetentionCohort]:
    (found,) = db.execute(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type = ? AND timestamp >= ? "
        "LIMIT ?)",
        (start_event, read.first_seen_from, MAX_START_EVENTS + 1),
    ).fetchone()
    if found > MAX_START_EVENTS:
        raise too_many_start_events(MAX_START_EVENTS)
    active: dict[str, set[str]] = {}
    cohort_days: dict[str, str] = {}
    for who, earliest, day in db.execute(
        _BY_START_EVENT,
        {
            "type": start_event,
            "since": read.first_seen_from,
            "until": read.first_seen_until,
            "first_day": read.start_day,
            "last_day": read.last_day,
        },
    ):
        days = active.get(who)
        if days is None:
            if len(active) == MAX_PERSONS:
                raise too_many()
            days = active[who] = set()
            cohort_days[who] = periods.label("day", earliest)
        days.add(day)
    return cohorts(active, read, cohort_days)
