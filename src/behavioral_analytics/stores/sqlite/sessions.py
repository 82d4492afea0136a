"""Sessions on the SQLite store, recomputed inside each commit around the batch's new events.

Gap sessions (events without a client session id) are recomputed over the range of a person's
new events, grown over every stored session it touches until it stops growing; client sessions
that only gained events merge (first, last, count) without reading raw events, and one whose
events moved between people is recounted from them. The stats of the sessions replaced are
subtracted and those of their replacements added, so the session buckets stay exact.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.sessions import Session, SessionDelta, SessionStats, gap_sessions
from behavioral_analytics.stores.sqlite.dirty import Dirty
from behavioral_analytics.stores.sqlite.schema import UPSERT_SESSION_BUCKET
from behavioral_analytics.stores.sqlite.sql import PAIRS, RANGES, ranges_json

__all__ = ["Sessions"]

_UPSERT_SESSION = """
INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (person, key) DO UPDATE SET
  start = excluded.start, end = excluded.end, events = excluded.events
"""


@dataclass(slots=True)
class _SessionWrites:
    deletes: list[tuple[str, str]] = field(default_factory=list)
    upserts: list[tuple[object, ...]] = field(default_factory=list)
    delta: SessionDelta = field(default_factory=SessionDelta)


class Sessions:
    """Keeps the `sessions` and `session_buckets` tables under `rules.sessions`, with `periods`
    for the buckets a session counts in (the hour and day it starts in)."""

    def __init__(self, rules: BehaviorRules, periods: Periods) -> None:
        self.rules = rules
        self.periods = periods

    def update(self, db: sqlite3.Connection, dirty: Dirty) -> None:
        """Recompute the sessions `dirty` names, inside the commit's transaction on `db`, and
        apply the changes to the session buckets."""
        rules = self.rules.sessions
        writes = _SessionWrites()
        spans = {person: [span.low, span.high] for person, span in dirty.loose.items()}
        removed: dict[str, dict[str, Session]] = defaultdict(dict)
        pending = list(spans)
        while pending:  # grow each range over the stored sessions it touches, until it stops
            grown = []
            for person, key, start, end, count in db.execute(
                RANGES + "SELECT s.person, s.key, s.start, s.end, s.events FROM ranges r "
                "JOIN sessions s ON s.person = r.person AND s.start <= r.high + ? "
                "AND s.end >= r.low - ? WHERE s.client_id IS NULL",
                (ranges_json(pending, spans), rules.gap_s, rules.gap_s),
            ):
                if key in removed[person]:
                    continue
                removed[person][key] = Session(start, end, count)
                span = spans[person]
                if start < span[0] or end > span[1]:
                    span[0], span[1] = min(span[0], start), max(span[1], end)
                    grown.append(person)
            pending = list(dict.fromkeys(grown))
        timestamps: dict[str, list[float]] = defaultdict(list)
        if spans:
            for person, timestamp in db.execute(
                RANGES + "SELECT e.person, e.timestamp FROM ranges r JOIN events e "
                "ON e.person = r.person AND e.timestamp BETWEEN r.low AND r.high "
                "WHERE e.bot = 0 AND e.session_id IS NULL",
                (ranges_json(spans, spans),),
            ):
                timestamps[person].append(timestamp)
        for person in spans:
            added = gap_sessions(timestamps[person], rules)
            self._replace_sessions(person, removed[person], added, writes)
        self._merge_client_sessions(db, dirty, writes)
        if dirty.clients:
            pairs = msgspec.json.encode(sorted(dirty.clients)).decode()
            old = {
                (person, key): Session(start, end, count, key[2:])
                for person, key, start, end, count in db.execute(
                    PAIRS + "SELECT s.person, s.key, s.start, s.end, s.events FROM pairs p "
                    "JOIN sessions s ON s.person = p.person AND s.key = 'c:' || p.client_id",
                    (pairs,),
                )
            }
            for person, client_id, start, end, count in db.execute(
                PAIRS + "SELECT p.person, p.client_id, min(e.timestamp), max(e.timestamp), "
                "count(*) FROM pairs p JOIN events e ON e.person = p.person "
                "AND e.session_id = p.client_id WHERE e.bot = 0 GROUP BY p.person, p.client_id",
                (pairs,),
            ).fetchall():
                key = f"c:{client_id}"
                before = old.pop((person, key), None)
                self._replace_sessions(
                    person,
                    {key: before} if before else {},
                    [Session(start, end, count, client_id)],
                    writes,
                )
            for (person, key), before in old.items():  # every event moved away
                self._replace_sessions(person, {key: before}, [], writes)
        db.executemany("DELETE FROM sessions WHERE person = ? AND key = ?", writes.deletes)
        db.executemany(_UPSERT_SESSION, writes.upserts)
        delta = writes.delta
        db.executemany(
            UPSERT_SESSION_BUCKET,
            [
                (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
                for (g, p), s in delta.stats.items()
                if not s.is_zero()
            ],
        )

    def _merge_client_sessions(
        self, db: sqlite3.Connection, dirty: Dirty, writes: _SessionWrites
    ) -> None:
        """Client sessions that only gained events: (first, last, count) merge without reading
        raw events; one row write each, and the stats delta of the period they start in."""
        fresh = {
            pair: stamps for pair, stamps in dirty.client_new.items() if pair not in dirty.clients
        }
        if not fresh:
            return
        old = {
            (person, key[2:]): (start, end, count)
            for person, key, start, end, count in db.execute(
                PAIRS + "SELECT s.person, s.key, s.start, s.end, s.events FROM pairs p "
                "JOIN sessions s ON s.person = p.person AND s.key = 'c:' || p.client_id",
                (msgspec.json.encode(sorted(fresh)).decode(),),
            )
        }
        of = self.periods.of
        stats = writes.delta.stats
        upserts = writes.upserts
        for (person, client_id), stamps in fresh.items():
            low, high, count = min(stamps), max(stamps), len(stamps)
            before = old.get((person, client_id))
            if before is None:
                changes = [(of(low), 1, low, high, count)]
            else:
                b_low, b_high, b_count = before
                changes = [(of(b_low), -1, b_low, b_high, b_count)]
                low, high, count = min(low, b_low), max(high, b_high), count + b_count
                changes.append((of(low), 1, low, high, count))
            upserts.append((person, f"c:{client_id}", low, high, count, client_id))
            for (_, hour, day), sign, start, end, events in changes:
                duration = sign * round((end - start) * 1000)
                for key in (("hour", hour), ("day", day)):
                    entry = stats.get(key)
                    if entry is None:
                        entry = stats[key] = SessionStats()
                    entry.sessions += sign
                    entry.duration_ms += duration
                    entry.bounces += sign * (events == 1)
                    entry.events += sign * events

    def _replace_sessions(
        self,
        person: str,
        removed: dict[str, Session],
        added: list[Session],
        writes: _SessionWrites,
    ) -> None:
        if len(removed) == len(added) and all(removed.get(s.key) == s for s in added):
            return
        keys = {s.key for s in added}
        writes.deletes.extend((person, key) for key in removed if key not in keys)
        writes.upserts.extend((person, s.key, s.start, s.end, s.events, s.client_id) for s in added)
        writes.delta.apply(removed.values(), self.periods, -1)
        writes.delta.apply(added, self.periods, 1)
