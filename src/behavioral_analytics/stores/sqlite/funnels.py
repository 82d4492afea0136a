"""Funnel progress on the SQLite store, recomputed inside each commit around the batch's new
events.

A person who only gained events can only move on: their progress is recomputed from the events
within a funnel window around the new ones, and never goes down. Where none of the new events
can move an entry on (each is of the first step's type alone: a page view in the generator's
funnel), only entries from the first new one on can reach further, so the window before them is
not read. A person a (re)link gave or took events has every day the moved events touch
recounted from scratch (a lost event can undo a step). The commit's own events are taken from
memory, the events stored before it read (`Dirty.stored_through`). The changes in step reached
per (person, day) become the deltas of the funnel buckets.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.funnels import Funnel, progress
from behavioral_analytics.stores.sqlite.derived_parsers import parsers_of, restore_parsers
from behavioral_analytics.stores.sqlite.dirty import Dirty
from behavioral_analytics.stores.sqlite.schema import UPSERT_FUNNEL_BUCKET
from behavioral_analytics.stores.sqlite.sql import RANGES, json_list, ranges_json

__all__ = ["Funnels"]

_decode = msgspec.json.Decoder().decode


class Funnels:
    """Keeps the `funnel_progress` and `funnel_buckets` tables for `rules.funnels`, with
    `periods` for the days progress is counted in."""

    def __init__(self, rules: BehaviorRules, periods: Periods) -> None:
        self.rules = rules
        self.periods = periods

    def update(self, db: sqlite3.Connection, dirty: Dirty) -> None:
        """Recompute the progress of the people and days `dirty` names, inside the commit's
        transaction on `db`, and apply the changes to the funnel buckets."""
        for funnel in self.rules.funnels:
            spans = dirty.funnels[funnel.name]
            if not spans:
                continue
            reads: dict[str, list[float]] = {}
            affected: dict[str, list[str]] = {}
            since: dict[str, float] = {}  # the first entry that can change
            window = funnel.window_s
            extending = dirty.extending[funnel.name]
            for person, span in spans.items():
                moved = person in dirty.moved
                since[person] = span.low - window if moved or person in extending else span.low
                days = self._days_between(since[person], span.high)
                affected[person] = days
                if moved:  # gained or lost events by a link: recount the days from scratch
                    reads[person] = [
                        self.periods.start_of("day", days[0]),
                        self.periods.end_of("day", days[-1]) + window,
                    ]
                else:  # only gained events: only entries from `since` on can change (a
                    # margin below it, as the instant goes through JSON to SQLite and back)
                    reads[person] = [since[person] - 1e-3, span.high + window]
            points = _points(db, funnel, reads, dirty)
            stored: dict[tuple[str, str], int] = {
                (person, day): step
                for person, day, step in db.execute(
                    "SELECT person, day, step FROM funnel_progress WHERE funnel = ? "
                    "AND person IN (SELECT value FROM json_each(?)) AND day BETWEEN ? AND ?",
                    (
                        funnel.name,
                        json_list(spans),
                        min(days[0] for days in affected.values()),
                        max(days[-1] for days in affected.values()),
                    ),
                )
            }
            users: Counter[tuple[str, int]] = Counter()
            upserts, deletes = [], []
            for person, days in affected.items():
                moved = person in dirty.moved
                entries = None if moved else (since[person], spans[person].high)
                reached = progress(points[person], funnel, self.periods, entries)
                for day in days:
                    old, new = stored.get((person, day), 0), reached.get(day, 0)
                    if not moved:
                        new = max(old, new)  # gaining events never undoes a step
                    if old == new:
                        continue
                    if new:
                        upserts.append((funnel.name, person, day, new))
                    else:
                        deletes.append((funnel.name, person, day))
                    for step in range(min(old, new) + 1, max(old, new) + 1):
                        users[day, step] += 1 if new > old else -1
            db.executemany(
                "INSERT INTO funnel_progress VALUES (?, ?, ?, ?) ON CONFLICT "
                "(funnel, person, day) DO UPDATE SET step = excluded.step",
                upserts,
            )
            db.executemany(
                "DELETE FROM funnel_progress WHERE funnel = ? AND person = ? AND day = ?", deletes
            )
            db.executemany(
                UPSERT_FUNNEL_BUCKET,
                [(funnel.name, day, step, n) for (day, step), n in users.items() if n],
            )

    def _days_between(self, low: float, high: float) -> list[str]:
        days = {self.periods.of(high)[2]}
        at = low
        while at < high:
            days.add(self.periods.of(at)[2])
            at += 3600.0
        return sorted(days)


def _points(
    db: sqlite3.Connection, funnel: Funnel, reads: dict[str, list[float]], dirty: Dirty
) -> dict[str, list[tuple[float, str, frozenset[int]]]]:
    """Person → the points (a `FunnelPoint`'s fields) of their human events of `funnel`'s types
    within `reads` (person → [low, high], epoch seconds): those stored before the commit read
    from `db` (rowid up to `dirty.stored_through`), the commit's own from `dirty.held`."""
    filtered = any(step.where for step in funnel.steps)
    by_type = {t: funnel.matched_steps(t, {}) for t in funnel.types}
    points: dict[str, list[tuple[float, str, frozenset[int]]]] = defaultdict(list)
    for person, key, timestamp, event_type, properties, parsers in db.execute(
        RANGES
        + "SELECT e.person, e.key, e.timestamp, e.event_type, "
        + (f"e.properties, {parsers_of('e')}" if filtered else "NULL, NULL")
        + " FROM ranges r JOIN events e ON e.person = r.person "
        "AND e.timestamp BETWEEN r.low AND r.high WHERE e.rowid <= ? AND e.bot = 0 "
        "AND e.event_type IN (SELECT value FROM json_each(?))",
        (ranges_json(reads, reads), dirty.stored_through, json_list(funnel.types)),
    ):
        steps = (
            funnel.matched_steps(event_type, restore_parsers(_decode(properties), parsers))
            if filtered
            else by_type[event_type]
        )
        points[person].append((timestamp, key, steps))
    for key, (person, event) in dirty.held.items():
        read = reads.get(person)
        if read and event.event_type in by_type and read[0] <= event.timestamp <= read[1]:
            steps = (
                funnel.matched_steps(event.event_type, event.properties)
                if filtered
                else by_type[event.event_type]
            )
            points[person].append((event.timestamp, key, steps))
    return points
