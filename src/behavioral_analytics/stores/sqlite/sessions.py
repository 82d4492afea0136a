"""Sessions on the SQLite store, recomputed inside each commit around the batch's new events.

Gap sessions (events without a client session id) are recomputed over the range of a person's
new events, grown over every stored session it touches until it stops growing; client sessions
(cut by the cap like any other) that only gained events merge them into their stored sessions
without reading raw events where `sessions.merge_client_sessions` can, and are recounted from
raw events otherwise (an event before their first session or beyond a session's cap short of
the next) or when their events moved between people. The stats of the sessions replaced are
subtracted and those of their replacements added, so the session buckets stay exact; every
replacement also moves the sessions per breakdown value (`session_counts`), whose values per
session are the row's `vals`: read with the sessions replaced, written with their replacements
(no row of their own).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.sessions import (
    Session,
    SessionDelta,
    client_sessions,
    gap_sessions,
    merge_client_sessions,
)
from behavioral_analytics.stores.sqlite.dirty import Dirty
from behavioral_analytics.stores.sqlite.schema import UPSERT_SESSION_BUCKET
from behavioral_analytics.stores.sqlite.session_counts import Replaced, apply_session_counts
from behavioral_analytics.stores.sqlite.sql import PAIRS, RANGES, ranges_json

__all__ = ["Sessions"]

_UPSERT_SESSION = """
INSERT INTO sessions (person, key, start, end, events, client_id, vals)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (person, key) DO UPDATE SET
  start = excluded.start, end = excluded.end, events = excluded.events, vals = excluded.vals
"""


@dataclass(slots=True)
class _SessionWrites:
    deletes: list[tuple[str, str]] = field(default_factory=list)
    delta: SessionDelta = field(default_factory=SessionDelta)
    replaced: list[Replaced] = field(default_factory=list)
    # (person, key) → the stored `vals` of every session read (None: never counted).
    stored: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # People a link gave or took events (`Dirty.moved`): a session of theirs may keep its
    # start, end and size with another first or last event, so it is replaced all the same.
    moved: set[str] = field(default_factory=set)


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
        writes = _SessionWrites(moved=dirty.moved)
        spans = {person: [span.low, span.high] for person, span in dirty.loose.items()}
        removed: dict[str, dict[str, Session]] = defaultdict(dict)
        pending = list(spans)
        while pending:  # grow each range over the stored sessions it touches, until it stops
            grown = []
            for person, key, start, end, count, vals in db.execute(
                RANGES + "SELECT s.person, s.key, s.start, s.end, s.events, s.vals FROM ranges r "
                "JOIN sessions s ON s.person = r.person AND s.start <= r.high + ? "
                "AND s.end >= r.low - ? WHERE s.client_id IS NULL",
                (ranges_json(pending, spans), rules.gap_s, rules.gap_s),
            ):
                if key in removed[person]:
                    continue
                removed[person][key] = Session(start, end, count)
                writes.stored[person, key] = vals
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
                "WHERE e.rowid <= ? AND e.bot = 0 AND e.session_id IS NULL",
                (ranges_json(spans, spans), dirty.stored_through),
            ):
                timestamps[person].append(timestamp)
            for person, event in dirty.held.values():
                at, bounds = event.timestamp, spans.get(person)
                if event.session_id is None and bounds and bounds[0] <= at <= bounds[1]:
                    timestamps[person].append(at)
        for person in spans:
            added = gap_sessions(timestamps[person], rules)
            self._replace_sessions(person, removed[person], added, writes)
        recount = self._merge_client_sessions(db, dirty, writes)
        if recount:
            pairs = msgspec.json.encode(sorted(recount)).decode()
            old = self._stored_client_sessions(db, pairs, writes.stored)
            stamps: dict[tuple[str, str], list[float]] = defaultdict(list)
            for person, client_id, timestamp in db.execute(
                PAIRS + "SELECT p.person, p.client_id, e.timestamp FROM pairs p JOIN events e "
                "ON e.person = p.person AND e.session_id = p.client_id "
                "WHERE e.rowid <= ? AND e.bot = 0",
                (pairs, dirty.stored_through),
            ):
                stamps[person, client_id].append(timestamp)
            for person, event in dirty.held.values():
                if event.session_id is not None and (person, event.session_id) in recount:
                    stamps[person, event.session_id].append(event.timestamp)
            for person, client_id in sorted(recount):
                before = old.get((person, client_id), {})
                added = client_sessions(client_id, stamps[person, client_id], rules)
                self._replace_sessions(person, before, added, writes)
        vals = apply_session_counts(
            db,
            writes.replaced,
            writes.stored,
            _fresh(dirty),
            self.periods,
            self.rules.breakdowns,
            dirty,
        )
        db.executemany("DELETE FROM sessions WHERE person = ? AND key = ?", writes.deletes)
        db.executemany(
            _UPSERT_SESSION,
            [
                (person, s.key, s.start, s.end, s.events, s.client_id, vals.get((person, s.key)))
                for person, _, added in writes.replaced
                for s in added
            ],
        )
        delta = writes.delta
        db.executemany(
            UPSERT_SESSION_BUCKET,
            [
                (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
                for (g, p), s in delta.stats.items()
                if not s.is_zero()
            ],
        )

    @staticmethod
    def _stored_client_sessions(
        db: sqlite3.Connection, pairs: str, stored: dict[tuple[str, str], str | None]
    ) -> dict[tuple[str, str], dict[str, Session]]:
        """(person, client id) → their stored sessions by key, for the JSON list `pairs`; their
        `vals` go to `stored` by (person, key)."""
        old: dict[tuple[str, str], dict[str, Session]] = defaultdict(dict)
        for person, client_id, key, start, end, count, vals in db.execute(
            PAIRS + "SELECT s.person, s.client_id, s.key, s.start, s.end, s.events, s.vals "
            "FROM pairs p JOIN sessions s ON s.person = p.person AND s.client_id = p.client_id",
            (pairs,),
        ):
            first = key == f"c:{client_id}"
            old[person, client_id][key] = Session(start, end, count, client_id, first)
            stored[person, key] = vals
        return old

    def _merge_client_sessions(
        self, db: sqlite3.Connection, dirty: Dirty, writes: _SessionWrites
    ) -> set[tuple[str, str]]:
        """Client sessions that only gained events merge them without reading raw events where
        `merge_client_sessions` can; return the (person, client id) pairs to recount from raw
        events instead (those whose events moved, and those it cannot merge)."""
        recount = set(dirty.clients)
        fresh = {
            pair: stamps for pair, stamps in dirty.client_new.items() if pair not in dirty.clients
        }
        if not fresh:
            return recount
        rules = self.rules.sessions
        pairs = msgspec.json.encode(sorted(fresh)).decode()
        old = self._stored_client_sessions(db, pairs, writes.stored)
        for (person, client_id), stamps in fresh.items():
            before = old.get((person, client_id), {})
            if before:
                added = merge_client_sessions(before.values(), stamps, rules)
                if added is None:
                    recount.add((person, client_id))
                    continue
            else:
                added = client_sessions(client_id, stamps, rules)
            self._replace_sessions(person, before, added, writes)
        return recount

    def _replace_sessions(
        self,
        person: str,
        removed: dict[str, Session],
        added: list[Session],
        writes: _SessionWrites,
    ) -> None:
        if (
            person not in writes.moved
            and len(removed) == len(added)
            and all(removed.get(s.key) == s for s in added)
        ):
            return
        keys = {s.key for s in added}
        writes.deletes.extend((person, key) for key in removed if key not in keys)
        writes.delta.apply(removed.values(), self.periods, -1)
        writes.delta.apply(added, self.periods, 1)
        writes.replaced.append((person, removed, added))


def _fresh(dirty: Dirty) -> Callable[[str, str | None, float], bool]:
    """Whether a new or moved event of (person, client id or None) may sit at an instant: within
    the range of the person's loose events the batch changed, or among a client session's new
    timestamps, or anywhere in a client session whose events moved."""

    def fresh(person: str, client_id: str | None, instant: float) -> bool:
        if client_id is None:
            span = dirty.loose.get(person)
            return span is not None and span.low <= instant <= span.high
        pair = (person, client_id)
        return pair in dirty.clients or instant in dirty.client_new.get(pair, ())

    return fresh
