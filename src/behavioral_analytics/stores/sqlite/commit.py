"""A commit on the SQLite store: one write transaction.

Each raw event is inserted unless its key exists, and the deltas of exactly the rows inserted
are applied. A redelivered batch therefore inserts nothing and changes nothing. Events of a
forgotten person (dated at or before their tombstone) are dropped before the insert and counted
apart (`forgotten`), not as duplicates.

Who each event counts for (the links and tombstones stored, the batch's own sign-ins resolved:
`_Attribution`) is read before `BEGIN IMMEDIATE`, and the fold and the breakdown fold of the
batch's human events, each counted for that person, are made then too (`_FoldedAhead`): outside
the write lock a second worker process waits on. Inside the transaction the attribution read
before stands when no other connection has committed since (SQLite's `PRAGMA data_version`,
read before it and again under the lock); otherwise it is read again. The transaction uses the
folds when the events it folds are those, each counted for the same person (on live traffic,
none stored already or forgotten); when some are counted for another person (a link another
worker stored meanwhile), it folds again only what names the people concerned (profiles,
unique-user and breakdown markers); it folds afresh otherwise (a duplicate or a forgotten event
in the batch), so the result is the same either way.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from behavioral_analytics.aggregation import Deltas, Periods, fold
from behavioral_analytics.behavior import as_person
from behavioral_analytics.bots import BOT_PROPERTY, is_bot
from behavioral_analytics.breakdowns import (
    BreakdownDelta,
    BreakdownRules,
    fold_breakdowns,
)
from behavioral_analytics.events import Event
from behavioral_analytics.sqlite_util import transaction
from behavioral_analytics.store import CommitResult, NewDeadLetter
from behavioral_analytics.stored_config import StoredConfig
from behavioral_analytics.stores.sqlite.aggregates import apply_deltas
from behavioral_analytics.stores.sqlite.behavior import SQLiteBehavior
from behavioral_analytics.stores.sqlite.breakdowns import apply_breakdowns, move_breakdown_markers
from behavioral_analytics.stores.sqlite.derived_parsers import (
    drop_unreferenced,
    parsers_ids,
    split_parsers,
)
from behavioral_analytics.stores.sqlite.forget import forgotten, forgotten_letters
from behavioral_analytics.stores.sqlite.groups import record_groups
from behavioral_analytics.stores.sqlite.key_rule import hold_key_rule
from behavioral_analytics.stores.sqlite.layout import hold_layout
from behavioral_analytics.stores.sqlite.metadata import hold_config
from behavioral_analytics.stores.sqlite.sql import insert_created

__all__ = ["commit_batch", "insert_dead_letters"]

_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (recorded_at, reason, detail, source, message_id, attributes, data,
                          received_at, attempts, fingerprint, expire_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint) DO UPDATE SET replayed_at = NULL WHERE replayed_at IS NOT NULL
"""
_UPDATE_STATE = """
INSERT INTO pipeline_state VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
  newest_event_at = max(coalesce(newest_event_at, excluded.newest_event_at),
                        excluded.newest_event_at),
  last_commit_at = excluded.last_commit_at,
  lag_s = excluded.lag_s
"""

_encode = msgspec.json.Encoder().encode


def commit_batch(
    db: sqlite3.Connection,
    events: Sequence[Event],
    dead_letters: Sequence[NewDeadLetter],
    *,
    now: float,
    raw_retention_s: float,
    periods: Periods,
    behavior: SQLiteBehavior,
    config: StoredConfig | None = None,
    dead_letter_retention_s: float | None = None,
    before_write: Callable[[], object] = lambda: None,
    waiting: Callable[[], object] | None = None,
) -> CommitResult:
    """Commit `events` and `dead_letters` in one write transaction on `db`, processed at `now`
    (epoch seconds), raw events kept `raw_retention_s` seconds, dead letters
    `dead_letter_retention_s` (None: until purged by hand). `before_write` runs once what is
    read and folded before the write lock is ready, just before `BEGIN IMMEDIATE`
    (`checkpoints.Checkpoints.wait`); `waiting`, if given, between tries at that lock while
    another connection holds it (`sqlite_util.transaction`: an exception it raises ends the
    wait and the commit, nothing written).

    With `config`, the first commit records it and later ones check it (`metadata`).

    Raises `sqlite3.OperationalError` (the caller's to translate) when the transaction fails,
    ConfigChanged when another configuration or a newer layout (`layout.hold_layout`) is
    recorded; then nothing of the batch is stored.
    """
    expire_at = now + raw_retention_s
    received = len(events)
    if len({event.key for event in events}) < received:
        # Copies of one event in one batch: the first in batch order is the one stored.
        first: dict[str, Event] = {}
        for event in events:
            first.setdefault(event.key, event)
        events = list(first.values())
    version = _data_version(db)
    read = _Attribution.of(db, events, behavior)
    ahead = _FoldedAhead.of(read.humans(), periods, behavior.rules.breakdowns)
    encoded = {event.key: split_parsers(event.properties) for event in events}
    before_write()
    with transaction(db, waiting):
        hold_layout(db)
        if config is not None:
            hold_config(db, config, now)
        hold_key_rule(db, now)
        if _data_version(db) != version:
            read = _Attribution.of(db, events, behavior)
        events, persons = read.events, read.persons
        person_of = {e.key: p for e, p in zip(events, persons, strict=True)}
        stored_through = db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
        created = _insert_new(db, events, person_of, encoded, now, expire_at)
        humans = [
            e if person_of[e.key] == e.who else as_person(e, person_of[e.key])
            for e in created
            if BOT_PROPERTY not in e.properties
        ]
        deltas, breakdowns = ahead.of_humans(humans, periods, behavior.rules.breakdowns)
        apply_deltas(db, deltas, now)
        apply_breakdowns(db, breakdowns, behavior.rules.breakdowns)
        moves = behavior.apply(db, created, person_of, now, ahead.entries, stored_through)
        move_breakdown_markers(
            db,
            [(m.key, m.old, m.new, m.event_type, m.timestamp, m.properties) for m in moves],
            periods,
            behavior.rules.breakdowns,
        )
        record_groups(db, created)
        letters_forgotten = insert_dead_letters(db, dead_letters, now, dead_letter_retention_s)
        lag = max((now - event.received_at for event in created), default=None)
        if created:
            newest = max(event.timestamp for event in created)
            db.execute(_UPDATE_STATE, (newest, now, lag))
    by_type = Counter(event.event_type for event in created)
    return CommitResult(
        created=len(created),
        duplicates=received - len(created) - read.forgotten,
        dead_letters=len(dead_letters) - letters_forgotten,
        created_by_type=dict(by_type),
        max_lag_s=lag,
        forgotten=read.forgotten,
        letters_forgotten=letters_forgotten,
    )


def _data_version(db: sqlite3.Connection) -> int:
    """SQLite's `PRAGMA data_version`: it changes when another connection (another worker,
    thread or command) commits to the file, never for the connection's own commits."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


@dataclass(frozen=True, slots=True)
class _Attribution:
    """Who a batch's events count for, given the store's links and tombstones: the events to
    store (`events`, those a tombstone covers dropped: `forgotten` of them) and the person of
    each (`persons`, in order), the batch's own sign-ins resolved (`Identity.batch_persons`)."""

    events: list[Event]
    persons: list[str]
    forgotten: int

    @classmethod
    def of(
        cls, db: sqlite3.Connection, events: Sequence[Event], behavior: SQLiteBehavior
    ) -> _Attribution:
        persons = behavior.persons(db, events)
        gone = forgotten(db, events, persons)
        kept = list(events)
        if any(gone):
            kept = [e for e, forgotten_ in zip(events, gone, strict=True) if not forgotten_]
            persons = [p for p, forgotten_ in zip(persons, gone, strict=True) if not forgotten_]
        return cls(kept, behavior.batch_persons(db, kept, persons), sum(gone))

    def humans(self) -> list[Event]:
        """The human events to store, each as counted for its person (`as_person`)."""
        return [
            as_person(event, person)
            for event, person in zip(self.events, self.persons, strict=True)
            if BOT_PROPERTY not in event.properties
        ]


@dataclass(frozen=True, slots=True)
class _FoldedAhead:
    """The folds of a batch's human events (`humans`, in batch order), each counted for the
    person `_Attribution` read before the transaction gives it, made then: `deltas`
    (`aggregation.fold`), `breakdowns` (`breakdowns.fold_breakdowns`, its markers grouped per
    person and day), and each event's values in `BreakdownRules.entry_dimensions` by key
    (`entries`, read by the fold once for both: a function of the event alone, so they stand
    whatever the transaction folds)."""

    humans: list[Event]
    deltas: Deltas
    breakdowns: BreakdownDelta
    entries: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, events: Sequence[Event], periods: Periods, rules: BreakdownRules) -> _FoldedAhead:
        humans = [event for event in events if BOT_PROPERTY not in event.properties]
        entries: dict[str, tuple[str, ...]] = {}
        return cls(humans, *_folds(humans, periods, rules, entries), entries)

    def of_humans(
        self, humans: Sequence[Event], periods: Periods, rules: BreakdownRules
    ) -> tuple[Deltas, BreakdownDelta]:
        """The folds of `humans`, the events the transaction folds: these folds when they are
        the events folded ahead (the same keys in the same order, each counted for the same
        person: then the input is the same, and so is the result); when some of them are the
        same events counted for another person (a link stored since the attribution was read),
        these folds with what names people (profiles, unique-user and breakdown markers) folded
        again for the people concerned only, the rest (buckets, the breakdowns' event counts and
        their order) being the same whoever an event counts for; folded afresh otherwise."""
        if len(humans) != len(self.humans):
            return _folds(humans, periods, rules)
        people: set[str] = set()
        for mine, theirs in zip(humans, self.humans, strict=True):
            if mine.key != theirs.key:
                return _folds(humans, periods, rules)
            if mine.who != theirs.who:
                people.update((mine.who, theirs.who))
        if not people:
            return self.deltas, self.breakdowns
        deltas, breakdowns = _folds(
            [event for event in humans if event.who in people], periods, rules
        )
        deltas.buckets = self.deltas.buckets
        deltas.profiles.update(
            (who, profile) for who, profile in self.deltas.profiles.items() if who not in people
        )
        deltas.markers.update(m for m in self.deltas.markers if m[2] not in people)
        breakdowns.events = self.breakdowns.events
        breakdowns.markers.update(
            (key, pairs) for key, pairs in self.breakdowns.markers.items() if key[0] not in people
        )
        return deltas, breakdowns


def _folds(
    humans: Sequence[Event],
    periods: Periods,
    rules: BreakdownRules,
    entries: dict[str, tuple[str, ...]] | None = None,
) -> tuple[Deltas, BreakdownDelta]:
    """The fold of `humans` and their breakdown fold (filling `entries`, when given, as
    `fold_breakdowns` does)."""
    return fold(humans, periods), fold_breakdowns(humans, periods, rules, entries=entries)


def _insert_new(
    db: sqlite3.Connection,
    events: Sequence[Event],
    person_of: dict[str, str],
    encoded: dict[str, tuple[bytes, bytes | None]],
    now: float,
    expire_at: float,
) -> list[Event]:
    """Insert the events whose key is not stored yet, each for its person in `person_of` with
    its properties and parsers as `encoded` (JSON, by key: `derived_parsers.split_parsers`);
    return exactly those (the rows the insert reports as created)."""
    ids = parsers_ids(db, [parsers for _, parsers in encoded.values() if parsers is not None])
    rows = []
    named: dict[str, int | None] = {}  # key → its row's parsers_id
    for event in events:
        properties, parsers = encoded[event.key]
        parsers_id = named[event.key] = None if parsers is None else ids[parsers]
        if parsers is not None and parsers_id is None:  # no room: kept with the properties
            properties = _encode(event.properties)
        rows.append(
            (
                event.key,
                event.event_id,
                event.user_id,
                event.anonymous_id,
                event.who,
                event.event_type,
                event.timestamp,
                event.session_id,
                properties,
                event.received_at,
                now,
                expire_at,
                person_of[event.key],
                is_bot(event.properties),
                event.call,
                event.id_kind,
                parsers_id,
            )
        )
    inserted = set(insert_created(db, "events", 17, rows, 0, "(key) DO NOTHING"))
    if len(inserted) < len(rows):  # a value that only duplicates carried names no event
        drop_unreferenced(db, set(ids.values()) - {named[key] for key in inserted})
    created = []
    for event in events:
        if event.key in inserted:
            inserted.discard(event.key)  # a key twice in one batch counts once
            created.append(event)
    return created


def insert_dead_letters(
    db: sqlite3.Connection,
    dead_letters: Sequence[NewDeadLetter],
    now: float,
    retention_s: float | None = None,
) -> int:
    """Record `dead_letters` at `now` (epoch seconds), each fingerprint once, inside the
    caller's transaction on `db`, expiring `retention_s` seconds later (None: never). One
    recorded already (a redelivered or replayed message refused again) is marked not replayed,
    so a replay the worker refuses stays where `dlq` and `verify` show it. One a tombstone
    covers is not recorded (`forget.forgotten_letters`); returns how many were not."""
    expire_at = None if retention_s is None else now + retention_s
    covered = forgotten_letters(db, dead_letters)
    db.executemany(
        _INSERT_DEAD_LETTER,
        [
            (
                now,
                d.reason,
                d.detail,
                d.source,
                d.message_id,
                json.dumps(d.attributes),
                d.data,
                d.received_at,
                json.dumps(d.attempts),
                d.fingerprint,
                expire_at,
            )
            for d, forgotten_ in zip(dead_letters, covered, strict=True)
            if not forgotten_
        ],
    )
    return sum(covered)
