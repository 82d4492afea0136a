"""Retention on the SQLite store: cohorts from the profiles' `first_seen` and the day markers
of `unique_markers` (rule: `behavioral_analytics.retention`).

A person's day markers are their active days: created by the commit for the person an event
counts for, moved by identity stitching, deleted by `forget`. One query reads the markers of
the days the table needs (the primary key's `(granularity, period)` range) joined with the
profiles first seen in the cohort days (a profile by its primary key per marker); its cost
grows with the active person-days in that range, and a request whose cohorts hold more than
`retention.MAX_PERSONS` people is refused. The first-seen day is added to a person's days
(it always holds a marker; the one statement reads one snapshot of both tables).
"""

from __future__ import annotations

import sqlite3

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.retention import (
    MAX_PERSONS,
    RetentionCohort,
    RetentionRead,
    cohorts,
    too_many,
)

__all__ = ["retention"]


def retention(
    db: sqlite3.Connection, periods: Periods, read: RetentionRead
) -> list[RetentionCohort]:
    """The `Store.retention` answer on `db` for `read` (`retention.plan`'s checked request),
    periods labelled by `periods`. Raises RetentionError (too many people), sqlite3.Error."""
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
