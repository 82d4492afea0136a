"""Sessions, funnels, identity links and bot counts on the SQLite store, kept up to date inside
each commit's transaction.

Every derived figure is recomputed around a batch's new events from the raw events the
transaction sees (SQLite serializes writers, so that view is consistent), the stored
derivation it replaces is read back, and the difference is applied to the aggregates. A
redelivered batch creates no events and so changes nothing; a crash rolls all of it back.

The parts live beside this module: `identity` (links and moves), `sessions`, `funnels`;
tombstones are `forget`'s, and the recount `verify --repair` writes is `verify`'s.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence

from behavioral_analytics.aggregation import GRANULARITIES, Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import proposal
from behavioral_analytics.stores.sqlite.dirty import Dirty
from behavioral_analytics.stores.sqlite.funnels import Funnels
from behavioral_analytics.stores.sqlite.identity import Identity, Move
from behavioral_analytics.stores.sqlite.schema import UPSERT_BOT_BUCKET
from behavioral_analytics.stores.sqlite.sessions import Sessions

__all__ = ["SQLiteBehavior"]


class SQLiteBehavior:
    """The behavioral side of a commit under `rules`, counted in `periods`."""

    def __init__(self, rules: BehaviorRules, periods: Periods) -> None:
        self.rules = rules
        self.periods = periods
        self.identity = Identity(rules, periods)
        self.sessions = Sessions(rules, periods)
        self.funnels = Funnels(rules, periods)

    # -- before the insert ------------------------------------------------------------------

    def persons(self, db: sqlite3.Connection, events: Sequence[Event]) -> list[str]:
        """The person each event counts for, given the links stored so far."""
        return self.identity.persons(db, events)

    def batch_persons(
        self, db: sqlite3.Connection, events: Sequence[Event], persons: Sequence[str]
    ) -> list[str]:
        """`persons` with the batch's own links applied (`Identity.batch_persons`)."""
        return self.identity.batch_persons(db, events, persons)

    # -- after the insert -------------------------------------------------------------------

    def apply(
        self,
        db: sqlite3.Connection,
        created: Sequence[Event],
        persons: dict[str, str],
        now: float,
        entries: Mapping[str, tuple[str, ...]],
        stored_through: int,
    ) -> list[Move]:
        """Bot counts, links, sessions and funnels for the newly created events (whose
        buckets, markers and profiles the caller has applied for their persons); `persons`
        maps event key → person, `now` is epoch seconds, `entries` their values in
        `BreakdownRules.entry_dimensions` by key (`fold_breakdowns`; any may be missing),
        `stored_through` the largest rowid of `events` before their insert (0: none).
        Returns the stored events the new links moved to another person."""
        dirty = Dirty(self.rules.funnels, entries=entries, stored_through=stored_through)
        bots: Counter[tuple[str, str]] = Counter()
        proposals = []
        for event in created:
            if is_bot(event.properties):
                for key in zip(GRANULARITIES, self.periods.of(event.timestamp), strict=True):
                    bots[key] += 1
                continue
            dirty.add(persons[event.key], event.timestamp, event.event_type, event.session_id)
            dirty.held[event.key] = (persons[event.key], event)
            link = proposal(event)
            if link is not None:
                proposals.append(link)
        if bots:
            db.executemany(UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in bots.items()])
        moves = self.identity.record_links(db, proposals, now) if proposals else []
        for move in moves:
            if move.key in dirty.held:  # one of the batch's own events, linked in it
                dirty.held[move.key] = (move.new, dirty.held[move.key][1])
            dirty.add(move.old, move.timestamp, move.event_type, move.session_id, True)
            dirty.add(move.new, move.timestamp, move.event_type, move.session_id, True)
        self.sessions.update(db, dirty)
        self.funnels.update(db, dirty)
        return moves
