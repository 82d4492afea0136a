"""Identity stitching on the SQLite store: the person each new event counts for, the links its
events propose, and the moves of already stored events when a link changes who they count for.

A move updates the events' `person` and takes their counts from the old person's profile and
unique-user markers to the new one's inside the commit's transaction; the caller marks both
people's sessions and funnels for recomputation.

The links a batch's own calls propose apply to its own anonymous events before they are stored
(`batch_persons`): a visitor who signs in within a batch has their earlier events of that batch
stored for the user at once, not stored for the anonymous id and moved in the same transaction
(a person row, markers and sessions written, then deleted). The resolution is the one
`record_links` then stores, so it finds nothing of theirs to move; stored events still move.

A link's `user_forgotten_at` (the tombstone its user had when it was made: `identity`) is read from
the user's tombstone (`LINKS_WITH_CUTS`), not stored in its row: a forget deletes every link
naming the user it stamps, so a link's user has the tombstone now that it had then.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from behavioral_analytics.actors import actor
from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules, covers_by_anonymous_id
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import (
    Link,
    attribute,
    coverage,
    proposal,
    resolve,
    with_tombstones,
)
from behavioral_analytics.stores.sqlite.aggregates import types_json
from behavioral_analytics.stores.sqlite.dirty import Range
from behavioral_analytics.stores.sqlite.schema import (
    ADD_UNIQUE,
    SUBTRACT_PROFILE_TYPES,
    UPSERT_PROFILE,
)
from behavioral_analytics.stores.sqlite.sql import json_list

__all__ = ["LINKS_WITH_CUTS", "Identity", "Move", "links_of_anonymous"]

# The links as `Link(*row)` takes them, each with its user's tombstone (`user_forgotten_at`).
LINKS_WITH_CUTS = (
    "SELECT l.anonymous_id, l.user_id, l.linked_at, l.event_key, l.status, t.forgotten_at "
    "FROM links AS l LEFT JOIN tombstones AS t ON t.person = l.user_id"
)

# A day on either side, with an hour to spare for daylight-saving days.
_DAY_SLACK_S = 25 * 3600.0


@dataclass(slots=True)
class Move:
    """An event whose person changed because a link to its anonymous id changed."""

    old: str
    new: str
    timestamp: float
    event_type: str
    session_id: str | None
    key: str
    properties: str


def links_of_anonymous(db: sqlite3.Connection, anonymous_id: str) -> list[Link]:
    """Every stored link of `anonymous_id`, whatever its status."""
    rows = db.execute(f"{LINKS_WITH_CUTS} WHERE l.anonymous_id = ?", (anonymous_id,))
    return [Link(*row) for row in rows]


class Identity:
    """Links and the moves they cause, under `rules` (identity window, relinking) with
    `periods` for the unique-user markers."""

    def __init__(self, rules: BehaviorRules, periods: Periods) -> None:
        self.rules = rules
        self.periods = periods

    def persons(self, db: sqlite3.Connection, events: Sequence[Event]) -> list[str]:
        """The person each event counts for, given the links stored so far."""
        anonymous = {e.anonymous_id for e in events if e.user_id is None and e.anonymous_id}
        covers: dict[str, tuple[tuple[float, str], ...]] = {}
        if anonymous:
            rows = db.execute(
                f"{LINKS_WITH_CUTS} WHERE l.status = 'active' "
                "AND l.anonymous_id IN (SELECT value FROM json_each(?))",
                (json_list(anonymous),),
            ).fetchall()
            if rows:
                covers = covers_by_anonymous_id(
                    (Link(*row) for row in rows), self.rules.identity_window_s
                )
        return [attribute(e, covers.get(e.anonymous_id or "")) for e in events]

    def batch_persons(
        self, db: sqlite3.Connection, events: Sequence[Event], persons: Sequence[str]
    ) -> list[str]:
        """`persons` (what `persons` gave `events`) with the links the human ones among
        `events` propose resolved beside the stored links of their anonymous ids, as
        `record_links` will resolve and store them: the person each human anonymous event of
        those ids counts for once the batch is committed. Pass only the events to be stored
        (not forgotten); a bot's event keeps its person, as stored events' moves leave bots."""
        proposals: dict[str, list[Link]] = defaultdict(list)
        for event in events:
            if not is_bot(event.properties):
                link = proposal(event)
                if link is not None:
                    proposals[link.anonymous_id].append(link)
        if not proposals:
            return list(persons)
        covers: dict[str, tuple[tuple[float, str], ...]] = {}
        for anonymous_id, new in proposals.items():
            _, resolved = self._resolved(db, anonymous_id, new)
            covers[anonymous_id] = coverage(resolved, self.rules.identity_window_s)
        return [
            attribute(event, covers[event.anonymous_id])
            if event.anonymous_id in covers and not is_bot(event.properties)
            else person
            for event, person in zip(events, persons, strict=True)
        ]

    def record_links(
        self, db: sqlite3.Connection, proposals: Sequence[Link], now: float
    ) -> list[Move]:
        """Resolve `proposals` with the stored links of their anonymous ids, store the result
        (recorded at `now`, epoch seconds) and move the events whose person it changes."""
        by_anonymous: dict[str, list[Link]] = defaultdict(list)
        for link in proposals:
            by_anonymous[link.anonymous_id].append(link)
        moves: list[Move] = []
        window = self.rules.identity_window_s
        for anonymous_id, new in by_anonymous.items():
            stored, resolved = self._resolved(db, anonymous_id, new)
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

    def _resolved(
        self, db: sqlite3.Connection, anonymous_id: str, new: Sequence[Link]
    ) -> tuple[list[Link], list[Link]]:
        """(`anonymous_id`'s stored links, those and the `new` proposals not stored yet with
        the statuses `resolve` gives them under the rules, each new one with its user's
        tombstone as `user_forgotten_at`)."""
        stored = links_of_anonymous(db, anonymous_id)
        known = {link.event_key for link in stored}
        fresh = [link for link in new if link.event_key not in known]
        stones = dict(
            db.execute(
                "SELECT person, forgotten_at FROM tombstones "
                "WHERE person IN (SELECT value FROM json_each(?))",
                (json_list({link.user_id for link in fresh}),),
            ).fetchall()
        )
        return stored, resolve(stored + with_tombstones(fresh, stones), self.rules.allow_relink)

    def _reattribute(
        self,
        db: sqlite3.Connection,
        anonymous_id: str,
        covers: tuple[tuple[float, str], ...],
        now: float,
    ) -> list[Move]:
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
                moves.append(Move(person, new, timestamp, event_type, session_id, key, properties))
        if moves:
            db.executemany(
                "UPDATE events SET person = ? WHERE key = ?", [(m.new, m.key) for m in moves]
            )
            self._move_profiles(db, moves, now)
            self._move_markers(db, moves)
        return moves

    def _move_profiles(self, db: sqlite3.Connection, moves: Sequence[Move], now: float) -> None:
        gained: dict[str, list[Move]] = defaultdict(list)
        lost: dict[str, Counter[str]] = defaultdict(Counter)
        for move in moves:
            gained[move.new].append(move)
            lost[move.old][move.event_type] += 1
        for person, own in gained.items():
            stamps = [m.timestamp for m in own]
            types = Counter(m.event_type for m in own)
            db.execute(
                UPSERT_PROFILE,
                (person, len(own), min(stamps), max(stamps), now, types_json(types)),
            )
        for person, types in lost.items():
            first, last = db.execute(
                "SELECT min(timestamp), max(timestamp) FROM events WHERE person = ? AND bot = 0",
                (person,),
            ).fetchone()
            count = sum(types.values())
            if first is None:
                gone = db.execute(
                    "DELETE FROM persons WHERE who = ? AND total_events <= ?", (person, count)
                )
                if gone.rowcount:
                    continue  # every event of theirs moved: one row write, not three
            db.execute(
                "UPDATE persons SET total_events = total_events - ?, last_updated = ? "
                "WHERE who = ?",
                (count, now, person),
            )
            db.execute(SUBTRACT_PROFILE_TYPES, (types_json(types), person))
            if first is not None:
                db.execute(
                    "UPDATE persons SET first_seen = ?, last_activity = ? WHERE who = ?",
                    (first, last, person),
                )

    def _move_markers(self, db: sqlite3.Connection, moves: Sequence[Move]) -> None:
        of = self.periods.of
        gained: set[tuple[str, str, str]] = set()
        lost: dict[str, set[tuple[str, str]]] = defaultdict(set)
        spans: dict[str, Range] = {}
        for move in moves:
            _, hour, day = of(move.timestamp)
            gained.update((("hour", hour, move.new), ("day", day, move.new)))
            lost[move.old].update((("hour", hour), ("day", day)))
            span = spans.get(move.old)
            if span is None:
                spans[move.old] = Range(move.timestamp)
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
        db.executemany(ADD_UNIQUE, [(n, g, p) for (g, p), n in changes.items() if n])
