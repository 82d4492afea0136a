"""Sessions, funnels, identity links, bot counts and tombstones on the SQLite store, kept up to
date inside each commit's transaction.

Every derived figure is recomputed around a batch's new events from the raw events the
transaction sees (SQLite serializes writers, so that view is consistent), the stored
derivation it replaces is read back, and the difference is applied to the aggregates. A
redelivered batch creates no events and so changes nothing; a crash rolls all of it back.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from behavioral_analytics.aggregation import GRANULARITIES, Deltas, Periods, fold
from behavioral_analytics.behavior import (
    BehaviorRules,
    Recount,
    covers_by_anonymous_id,
)
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event, actor
from behavioral_analytics.funnels import Funnel, progress
from behavioral_analytics.identity import Link, attribute, coverage, proposal, resolve
from behavioral_analytics.privacy import mentions
from behavioral_analytics.sessions import Session, SessionDelta, SessionStats, gap_sessions
from behavioral_analytics.store import ForgetReport

__all__ = ["BEHAVIOR_SCHEMA", "UPSERT_PROFILE", "UPSERT_PROFILE_TYPE", "SQLiteBehavior"]

BEHAVIOR_SCHEMA = """
CREATE INDEX IF NOT EXISTS events_by_person ON events (person, timestamp);
CREATE INDEX IF NOT EXISTS events_by_anonymous_id ON events (anonymous_id) WHERE user_id IS NULL;
CREATE TABLE IF NOT EXISTS bot_buckets (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (granularity, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
  person TEXT NOT NULL,
  key TEXT NOT NULL,
  start REAL NOT NULL,
  end REAL NOT NULL,
  events INTEGER NOT NULL,
  client_id TEXT,
  PRIMARY KEY (person, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (person, start);
CREATE TABLE IF NOT EXISTS session_buckets (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  sessions INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  bounces INTEGER NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (granularity, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funnel_progress (
  funnel TEXT NOT NULL,
  person TEXT NOT NULL,
  day TEXT NOT NULL,
  step INTEGER NOT NULL,
  PRIMARY KEY (funnel, person, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funnel_buckets (
  funnel TEXT NOT NULL,
  day TEXT NOT NULL,
  step INTEGER NOT NULL,
  users INTEGER NOT NULL,
  PRIMARY KEY (funnel, day, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
  anonymous_id TEXT NOT NULL,
  event_key TEXT NOT NULL,
  user_id TEXT NOT NULL,
  linked_at REAL NOT NULL,
  status TEXT NOT NULL,
  recorded_at REAL NOT NULL,
  PRIMARY KEY (anonymous_id, event_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_user ON links (user_id);
CREATE TABLE IF NOT EXISTS tombstones (
  person TEXT PRIMARY KEY,
  forgotten_at REAL NOT NULL
) WITHOUT ROWID;
"""

_UPSERT_SESSION_BUCKET = """
INSERT INTO session_buckets VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET
  sessions = sessions + excluded.sessions,
  duration_ms = duration_ms + excluded.duration_ms,
  bounces = bounces + excluded.bounces,
  events = events + excluded.events
"""
_UPSERT_SESSION = """
INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (person, key) DO UPDATE SET
  start = excluded.start, end = excluded.end, events = excluded.events
"""
_UPSERT_FUNNEL_BUCKET = """
INSERT INTO funnel_buckets VALUES (?, ?, ?, ?)
ON CONFLICT (funnel, day, step) DO UPDATE SET users = users + excluded.users
"""
_UPSERT_BOT_BUCKET = """
INSERT INTO bot_buckets VALUES (?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET events = events + excluded.events
"""
# Also the base store's: a profile only ever gains by these.
UPSERT_PROFILE = """
INSERT INTO profiles VALUES (?, ?, ?, ?, ?)
ON CONFLICT (who) DO UPDATE SET
  total_events = total_events + excluded.total_events,
  first_seen = min(first_seen, excluded.first_seen),
  last_activity = max(last_activity, excluded.last_activity),
  last_updated = excluded.last_updated
"""
UPSERT_PROFILE_TYPE = """
INSERT INTO profile_types VALUES (?, ?, ?)
ON CONFLICT (who, event_type) DO UPDATE SET count = count + excluded.count
"""
_DERIVED_TABLES = (
    "bot_buckets",
    "sessions",
    "session_buckets",
    "funnel_progress",
    "funnel_buckets",
)
_ADD_UNIQUE = (
    "UPDATE buckets SET unique_users = unique_users + ? WHERE granularity = ? AND period = ?"
)
# A day on either side, with an hour to spare for daylight-saving days.
_DAY_SLACK_S = 25 * 3600.0

_decode = msgspec.json.Decoder().decode

# Per-person time ranges / (person, client session id) pairs, passed as one JSON parameter.
_RANGES = (
    "WITH ranges(person, low, high) AS (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)) "
)
_PAIRS = (
    "WITH pairs(person, client_id) AS (SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(?)) "
)


def _ranges_json(persons: Iterable[str], spans: dict[str, list[float]]) -> str:
    return msgspec.json.encode([[p, *spans[p]] for p in persons]).decode()


@dataclass(slots=True)
class _Move:
    """An event whose person changed because a link to its anonymous id changed."""

    old: str
    new: str
    timestamp: float
    event_type: str
    session_id: str | None
    key: str
    properties: str


def _json_list(values: Iterable[str]) -> str:
    return msgspec.json.encode(list(values)).decode()


class _Range:
    __slots__ = ("high", "low")

    def __init__(self, timestamp: float) -> None:
        self.low = self.high = timestamp

    def add(self, timestamp: float) -> None:
        if timestamp < self.low:
            self.low = timestamp
        elif timestamp > self.high:
            self.high = timestamp


@dataclass(slots=True)
class _SessionWrites:
    deletes: list[tuple[str, str]] = field(default_factory=list)
    upserts: list[tuple[object, ...]] = field(default_factory=list)
    delta: SessionDelta = field(default_factory=SessionDelta)


class _Dirty:
    """Where a batch changed a person's events: what sessions and funnels must recompute."""

    def __init__(self, funnels: Sequence[Funnel]) -> None:
        self.loose: dict[str, _Range] = {}
        # Client sessions gaining new events merge them (min, max, count); one whose events
        # moved between people is recounted from raw events.
        self.client_new: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.clients: set[tuple[str, str]] = set()
        self.moved: set[str] = set()  # people who lost events to a (re)link
        self.funnels: dict[str, dict[str, _Range]] = {f.name: {} for f in funnels}
        self._types = [(f.name, f.types) for f in funnels]

    def add(
        self,
        person: str,
        timestamp: float,
        event_type: str,
        session_id: str | None,
        moved: bool = False,
    ) -> None:
        if session_id is None:
            span = self.loose.get(person)
            if span is None:
                self.loose[person] = _Range(timestamp)
            else:
                span.add(timestamp)
        elif moved:
            self.clients.add((person, session_id))
        else:
            self.client_new[person, session_id].append(timestamp)
        if moved:
            self.moved.add(person)
        for name, types in self._types:
            if event_type in types:
                spans = self.funnels[name]
                span = spans.get(person)
                if span is None:
                    spans[person] = _Range(timestamp)
                else:
                    span.add(timestamp)


class SQLiteBehavior:
    def __init__(self, rules: BehaviorRules, periods: Periods) -> None:
        self.rules = rules
        self.periods = periods

    # -- before the insert ------------------------------------------------------------------

    def persons(self, db: sqlite3.Connection, events: Sequence[Event]) -> list[str]:
        """The person each event counts for, given the links stored so far."""
        anonymous = {e.anonymous_id for e in events if e.user_id is None and e.anonymous_id}
        covers: dict[str, tuple[tuple[float, str], ...]] = {}
        if anonymous:
            rows = db.execute(
                "SELECT anonymous_id, event_key, user_id, linked_at, status FROM links "
                "WHERE status = 'active' AND anonymous_id IN (SELECT value FROM json_each(?))",
                (_json_list(anonymous),),
            ).fetchall()
            if rows:
                covers = covers_by_anonymous_id(
                    (Link(a, u, t, k, s) for a, k, u, t, s in rows), self.rules.identity_window_s
                )
        return [attribute(e, covers.get(e.anonymous_id or "")) for e in events]

    def forgotten(
        self, db: sqlite3.Connection, events: Sequence[Event], persons: Sequence[str]
    ) -> list[bool]:
        """Which events belong to a forgotten person (their tombstone predates the event)."""
        names = set(persons) | {e.who for e in events}
        rows = db.execute(
            "SELECT person, forgotten_at FROM tombstones "
            "WHERE person IN (SELECT value FROM json_each(?))",
            (_json_list(names),),
        ).fetchall()
        if not rows:
            return [False] * len(events)
        stones = dict(rows)
        return [
            event.timestamp <= max(stones.get(person, -1.0), stones.get(event.who, -1.0))
            for event, person in zip(events, persons, strict=True)
        ]

    # -- after the insert -------------------------------------------------------------------

    def apply(
        self, db: sqlite3.Connection, created: Sequence[Event], persons: dict[str, str], now: float
    ) -> None:
        """Bot counts, links, sessions and funnels for the newly created events (whose
        buckets, markers and profiles the caller has applied for their persons)."""
        dirty = _Dirty(self.rules.funnels)
        bots: Counter[tuple[str, str]] = Counter()
        proposals = []
        for event in created:
            if is_bot(event.properties):
                for key in zip(GRANULARITIES, self.periods.of(event.timestamp), strict=True):
                    bots[key] += 1
                continue
            dirty.add(persons[event.key], event.timestamp, event.event_type, event.session_id)
            link = proposal(event)
            if link is not None:
                proposals.append(link)
        if bots:
            db.executemany(_UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in bots.items()])
        if proposals:
            for move in self._record_links(db, proposals, now):
                dirty.add(move.old, move.timestamp, move.event_type, move.session_id, True)
                dirty.add(move.new, move.timestamp, move.event_type, move.session_id, True)
        self._update_sessions(db, dirty)
        self._update_funnels(db, dirty)

    # -- identity ---------------------------------------------------------------------------

    def _record_links(
        self, db: sqlite3.Connection, proposals: Sequence[Link], now: float
    ) -> list[_Move]:
        by_anonymous: dict[str, list[Link]] = defaultdict(list)
        for link in proposals:
            by_anonymous[link.anonymous_id].append(link)
        moves: list[_Move] = []
        window = self.rules.identity_window_s
        for anonymous_id, new in by_anonymous.items():
            stored = self.links_of_anonymous(db, anonymous_id)
            known = {link.event_key for link in stored}
            candidates = stored + [link for link in new if link.event_key not in known]
            resolved = resolve(candidates, self.rules.allow_relink)
            db.executemany(
                "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (anonymous_id, event_key) "
                "DO UPDATE SET status = excluded.status",
                [
                    (r.anonymous_id, r.event_key, r.user_id, r.linked_at, r.status, now)
                    for r in resolved
                ],
            )
            before, after = coverage(stored, window), coverage(resolved, window)
            if before != after:
                moves.extend(self._reattribute(db, anonymous_id, after, now))
        return moves

    @staticmethod
    def links_of_anonymous(db: sqlite3.Connection, anonymous_id: str) -> list[Link]:
        return [
            Link(a, u, t, k, s)
            for a, k, u, t, s in db.execute(
                "SELECT anonymous_id, event_key, user_id, linked_at, status FROM links "
                "WHERE anonymous_id = ?",
                (anonymous_id,),
            )
        ]

    def _reattribute(
        self,
        db: sqlite3.Connection,
        anonymous_id: str,
        covers: tuple[tuple[float, str], ...],
        now: float,
    ) -> list[_Move]:
        rows = db.execute(
            "SELECT key, timestamp, event_type, session_id, person, properties FROM events "
            "WHERE anonymous_id = ? AND user_id IS NULL AND bot = 0",
            (anonymous_id,),
        ).fetchall()
        anonymous = actor(None, anonymous_id)
        moves = []
        for key, timestamp, event_type, session_id, person, properties in rows:
            new = anonymous
            for start, user_id in covers:
                if start > timestamp:
                    break
                new = user_id
            if new != person:
                moves.append(_Move(person, new, timestamp, event_type, session_id, key, properties))
        if moves:
            db.executemany(
                "UPDATE events SET person = ? WHERE key = ?", [(m.new, m.key) for m in moves]
            )
            self._move_profiles(db, moves, now)
            self._move_markers(db, moves)
        return moves

    def _move_profiles(self, db: sqlite3.Connection, moves: Sequence[_Move], now: float) -> None:
        gained: dict[str, list[_Move]] = defaultdict(list)
        lost: dict[str, Counter[str]] = defaultdict(Counter)
        for move in moves:
            gained[move.new].append(move)
            lost[move.old][move.event_type] += 1
        for person, own in gained.items():
            stamps = [m.timestamp for m in own]
            db.execute(UPSERT_PROFILE, (person, len(own), min(stamps), max(stamps), now))
            types = Counter(m.event_type for m in own)
            db.executemany(UPSERT_PROFILE_TYPE, [(person, t, n) for t, n in types.items()])
        for person, types in lost.items():
            db.execute(
                "UPDATE profiles SET total_events = total_events - ?, last_updated = ? "
                "WHERE who = ?",
                (sum(types.values()), now, person),
            )
            db.executemany(
                "UPDATE profile_types SET count = count - ? WHERE who = ? AND event_type = ?",
                [(n, person, t) for t, n in types.items()],
            )
            db.execute("DELETE FROM profile_types WHERE who = ? AND count <= 0", (person,))
            first, last = db.execute(
                "SELECT min(timestamp), max(timestamp) FROM events WHERE person = ? AND bot = 0",
                (person,),
            ).fetchone()
            if first is None:
                db.execute("DELETE FROM profiles WHERE who = ? AND total_events <= 0", (person,))
            else:
                db.execute(
                    "UPDATE profiles SET first_seen = ?, last_activity = ? WHERE who = ?",
                    (first, last, person),
                )

    def _move_markers(self, db: sqlite3.Connection, moves: Sequence[_Move]) -> None:
        of = self.periods.of
        gained: set[tuple[str, str, str]] = set()
        lost: dict[str, set[tuple[str, str]]] = defaultdict(set)
        spans: dict[str, _Range] = {}
        for move in moves:
            _, hour, day = of(move.timestamp)
            gained.update((("hour", hour, move.new), ("day", day, move.new)))
            lost[move.old].update((("hour", hour), ("day", day)))
            span = spans.get(move.old)
            if span is None:
                spans[move.old] = _Range(move.timestamp)
            else:
                span.add(move.timestamp)
        changes: Counter[tuple[str, str]] = Counter()
        for granularity, period, person in gained:
            created = db.execute(
                "INSERT INTO unique_markers VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (granularity, period, person),
            ).fetchone()
            if created:
                changes[granularity, period] += 1
        for person, periods in lost.items():
            span = spans[person]
            still: set[tuple[str, str]] = set()
            for (timestamp,) in db.execute(
                "SELECT timestamp FROM events WHERE person = ? AND bot = 0 "
                "AND timestamp BETWEEN ? AND ?",
                (person, span.low - _DAY_SLACK_S, span.high + _DAY_SLACK_S),
            ):
                _, hour, day = of(timestamp)
                still.update((("hour", hour), ("day", day)))
            for granularity, period in periods - still:
                gone = db.execute(
                    "DELETE FROM unique_markers WHERE granularity = ? AND period = ? AND who = ? "
                    "RETURNING 1",
                    (granularity, period, person),
                ).fetchone()
                if gone:
                    changes[granularity, period] -= 1
        db.executemany(_ADD_UNIQUE, [(n, g, p) for (g, p), n in changes.items() if n])

    # -- sessions ---------------------------------------------------------------------------

    def _update_sessions(self, db: sqlite3.Connection, dirty: _Dirty) -> None:
        rules = self.rules.sessions
        writes = _SessionWrites()
        spans = {person: [span.low, span.high] for person, span in dirty.loose.items()}
        removed: dict[str, dict[str, Session]] = defaultdict(dict)
        pending = list(spans)
        while pending:  # grow each range over the stored sessions it touches, until it stops
            grown = []
            for person, key, start, end, count in db.execute(
                _RANGES + "SELECT s.person, s.key, s.start, s.end, s.events FROM ranges r "
                "JOIN sessions s ON s.person = r.person AND s.start <= r.high + ? "
                "AND s.end >= r.low - ? WHERE s.client_id IS NULL",
                (_ranges_json(pending, spans), rules.gap_s, rules.gap_s),
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
                _RANGES + "SELECT e.person, e.timestamp FROM ranges r JOIN events e "
                "ON e.person = r.person AND e.timestamp BETWEEN r.low AND r.high "
                "WHERE e.bot = 0 AND e.session_id IS NULL",
                (_ranges_json(spans, spans),),
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
                    _PAIRS + "SELECT s.person, s.key, s.start, s.end, s.events FROM pairs p "
                    "JOIN sessions s ON s.person = p.person AND s.key = 'c:' || p.client_id",
                    (pairs,),
                )
            }
            for person, client_id, start, end, count in db.execute(
                _PAIRS + "SELECT p.person, p.client_id, min(e.timestamp), max(e.timestamp), "
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
            _UPSERT_SESSION_BUCKET,
            [
                (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
                for (g, p), s in delta.stats.items()
                if not s.is_zero()
            ],
        )

    def _merge_client_sessions(
        self, db: sqlite3.Connection, dirty: _Dirty, writes: _SessionWrites
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
                _PAIRS + "SELECT s.person, s.key, s.start, s.end, s.events FROM pairs p "
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

    # -- funnels ----------------------------------------------------------------------------

    def _update_funnels(self, db: sqlite3.Connection, dirty: _Dirty) -> None:
        for funnel in self.rules.funnels:
            spans = dirty.funnels[funnel.name]
            if not spans:
                continue
            reads: dict[str, list[float]] = {}
            affected: dict[str, list[str]] = {}
            window = funnel.window_s
            for person, span in spans.items():
                days = self._days_between(span.low - window, span.high)
                affected[person] = days
                if person in dirty.moved:  # lost events: recount the days from scratch
                    reads[person] = [
                        self.periods.start_of("day", days[0]),
                        self.periods.end_of("day", days[-1]) + window,
                    ]
                else:  # only gained events: only entries within a window before them can change
                    reads[person] = [span.low - window, span.high + window]
            filtered = any(step.where for step in funnel.steps)
            by_type = {t: funnel.matched_steps(t, {}) for t in funnel.types}
            points: dict[str, list[tuple[float, str, frozenset[int]]]] = defaultdict(list)
            for person, key, timestamp, event_type, properties in db.execute(
                _RANGES
                + "SELECT e.person, e.key, e.timestamp, e.event_type, "
                + ("e.properties" if filtered else "NULL")
                + " FROM ranges r JOIN events e ON e.person = r.person "
                "AND e.timestamp BETWEEN r.low AND r.high WHERE e.bot = 0 "
                "AND e.event_type IN (SELECT value FROM json_each(?))",
                (_ranges_json(reads, reads), _json_list(funnel.types)),
            ):
                steps = (
                    funnel.matched_steps(event_type, _decode(properties))
                    if filtered
                    else by_type[event_type]
                )
                points[person].append((timestamp, key, steps))  # a FunnelPoint's fields
            stored: dict[tuple[str, str], int] = {
                (person, day): step
                for person, day, step in db.execute(
                    "SELECT person, day, step FROM funnel_progress WHERE funnel = ? "
                    "AND person IN (SELECT value FROM json_each(?))",
                    (funnel.name, _json_list(spans)),
                )
            }
            users: Counter[tuple[str, int]] = Counter()
            upserts, deletes = [], []
            for person, days in affected.items():
                moved = person in dirty.moved
                span = spans[person]
                reached = progress(
                    points[person],
                    funnel,
                    self.periods,
                    None if moved else (span.low - window, span.high),
                )
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
                _UPSERT_FUNNEL_BUCKET,
                [(funnel.name, day, step, n) for (day, step), n in users.items() if n],
            )

    def _days_between(self, low: float, high: float) -> list[str]:
        days = {self.periods.of(high)[2]}
        at = low
        while at < high:
            days.add(self.periods.of(at)[2])
            at += 3600.0
        return sorted(days)

    # -- forgetting -------------------------------------------------------------------------

    def forget(
        self,
        db: sqlite3.Connection,
        who: str,
        now: float,
        subtract: Callable[[sqlite3.Connection, Deltas], None],
    ) -> ForgetReport:
        """Remove every trace of `who` (and of the anonymous ids actively linked to them) from
        raw events, aggregates, sessions, funnels, links naming them and dead letters; leave
        tombstones."""
        report = ForgetReport(who)
        anonymous_ids = {
            row[0]
            for row in db.execute(
                "SELECT anonymous_id FROM links WHERE user_id = ? AND status = 'active'", (who,)
            )
        }
        persons = [who, *sorted(actor(None, a) for a in anonymous_ids)]
        report.persons = persons
        session_delta = SessionDelta()
        for person in persons:
            rows = db.execute(
                "SELECT key, event_id, user_id, anonymous_id, event_type, timestamp, session_id, "
                "properties, received_at, bot FROM events WHERE person = ?",
                (person,),
            ).fetchall()
            humans, bots = [], Counter()
            for key, event_id, uid, aid, etype, ts, sid, _, received, bot in rows:
                if bot:
                    for k in zip(GRANULARITIES, self.periods.of(ts), strict=True):
                        bots[k] -= 1
                    continue
                humans.append(
                    Event(key, event_id, uid, aid, etype, ts, sid, {}, received, who=person)
                )
            subtract(db, fold(humans, self.periods))
            db.executemany(_UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in bots.items()])
            changes = Counter(
                db.execute(
                    "DELETE FROM unique_markers WHERE who = ? RETURNING granularity, period",
                    (person,),
                ).fetchall()
            )
            db.executemany(_ADD_UNIQUE, [(-n, g, p) for (g, p), n in changes.items()])
            db.execute("DELETE FROM profiles WHERE who = ?", (person,))
            db.execute("DELETE FROM profile_types WHERE who = ?", (person,))
            sessions = [
                Session(start, end, count, client_id)
                for start, end, count, client_id in db.execute(
                    "DELETE FROM sessions WHERE person = ? RETURNING start, end, events, client_id",
                    (person,),
                ).fetchall()
            ]
            session_delta.apply(sessions, self.periods, -1)
            report.sessions += len(sessions)
            entries = db.execute(
                "DELETE FROM funnel_progress WHERE person = ? RETURNING funnel, day, step",
                (person,),
            ).fetchall()
            report.funnel_entries += len(entries)
            db.executemany(
                _UPSERT_FUNNEL_BUCKET,
                [(f, day, s, -1) for f, day, step in entries for s in range(1, step + 1)],
            )
            deleted = db.execute(
                "DELETE FROM events WHERE person = ? RETURNING timestamp", (person,)
            ).fetchall()
            report.raw_events += len(deleted)
            # A redelivery of any deleted event (even one dated ahead of the clock) is dropped.
            forgotten_at = max([now, *(timestamp for (timestamp,) in deleted)])
            db.execute(
                "INSERT INTO tombstones VALUES (?, ?) ON CONFLICT (person) DO UPDATE SET "
                "forgotten_at = max(forgotten_at, excluded.forgotten_at)",
                (person, forgotten_at),
            )
        db.executemany(
            _UPSERT_SESSION_BUCKET,
            [
                (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
                for (g, p), s in session_delta.stats.items()
            ],
        )
        # Every record naming the user goes; the anonymous ids' links to others stand, resolved
        # again without the user's (a proposal refused for the user's sake becomes active: the
        # events it covers were the user's or the anonymous id's own, all deleted above).
        naming = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT anonymous_id FROM links WHERE user_id = ?", (who,)
            )
        ]
        report.links = db.execute("DELETE FROM links WHERE user_id = ?", (who,)).rowcount
        for anonymous_id in naming:
            resolved = resolve(self.links_of_anonymous(db, anonymous_id), self.rules.allow_relink)
            db.executemany(
                "UPDATE links SET status = ? WHERE anonymous_id = ? AND event_key = ?",
                [(link.status, link.anonymous_id, link.event_key) for link in resolved],
            )
        report.dead_letters = self._forget_dead_letters(db, {who}, anonymous_ids)
        for table in ("bucket_types", "profile_types"):
            db.execute(f"DELETE FROM {table} WHERE count = 0")
        db.execute("DELETE FROM funnel_buckets WHERE users = 0")
        return report

    @staticmethod
    def _forget_dead_letters(
        db: sqlite3.Connection, user_ids: set[str], anonymous_ids: set[str]
    ) -> int:
        needles = [n.encode() for n in (user_ids | anonymous_ids)]
        doomed = []
        for id_, data in db.execute("SELECT id, data FROM dead_letters"):
            data = bytes(data)
            if any(needle in data for needle in needles) and mentions(
                data, user_ids, anonymous_ids
            ):
                doomed.append((id_,))
        db.executemany("DELETE FROM dead_letters WHERE id = ?", doomed)
        return len(doomed)

    # -- verify -----------------------------------------------------------------------------

    def write_recount(self, db: sqlite3.Connection, recount: Recount) -> None:
        """Replace every derived table by `recount` (for `verify --repair`)."""
        for table in _DERIVED_TABLES:
            db.execute(f"DELETE FROM {table}")
        db.executemany(
            "UPDATE events SET person = ? WHERE key = ?",
            [(person, key) for key, person in recount.persons.items()],
        )
        db.executemany(_UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in recount.bot_events.items()])
        db.executemany(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            [
                (person, s.key, s.start, s.end, s.events, s.client_id)
                for person, sessions in recount.sessions.items()
                for s in sessions
            ],
        )
        db.executemany(
            _UPSERT_SESSION_BUCKET,
            [
                (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
                for (g, p), s in recount.session_stats.items()
            ],
        )
        db.executemany(
            "INSERT INTO funnel_progress VALUES (?, ?, ?, ?)",
            [(f, person, day, step) for (f, person, day), step in recount.funnel_progress.items()],
        )
        db.executemany(
            _UPSERT_FUNNEL_BUCKET,
            [(f, day, step, n) for (f, day, step), n in recount.funnel_users.items()],
        )
