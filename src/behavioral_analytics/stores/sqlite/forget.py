"""Forgetting a person on the SQLite store, and the tombstones that keep them forgotten.

`forget` runs in one transaction: it removes the person's (a user's with their actively linked
anonymous ids, or an anonymous visitor's never linked) raw events (human events by whom they
count for, crawlers' by who sent them), takes their counts out of every aggregate, deletes
their sessions, funnel progress, the links naming them and the dead letters mentioning them,
and leaves a tombstone per
person. A commit drops any event a tombstone covers (`forgotten`, rule: `tombstones`), so
neither a redelivery of an erased event nor a message the person sent that was still on its
way when `forget` ran brings them back; nor does it record a dead letter naming them that was
published by then (`forgotten_letters`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from behavioral_analytics.actors import ANONYMOUS_PREFIX, actor, actor_ids
from behavioral_analytics.aggregation import GRANULARITIES, Periods, fold
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.identity import resolve
from behavioral_analytics.privacy import mentions
from behavioral_analytics.records import NewDeadLetter
from behavioral_analytics.sessions import Session, SessionDelta
from behavioral_analytics.store import ForgetReport, LinkedAnonymousId
from behavioral_analytics.stores.sqlite.aggregates import subtract_buckets
from behavioral_analytics.stores.sqlite.breakdowns import forget_breakdowns
from behavioral_analytics.stores.sqlite.derived_parsers import drop_unreferenced
from behavioral_analytics.stores.sqlite.identity import links_of_anonymous
from behavioral_analytics.stores.sqlite.schema import (
    ADD_UNIQUE,
    UPSERT_BOT_BUCKET,
    UPSERT_FUNNEL_BUCKET,
    UPSERT_SESSION_BUCKET,
)
from behavioral_analytics.stores.sqlite.sql import json_list
from behavioral_analytics.tombstones import covers, covers_letters

__all__ = ["forget", "forgotten", "forgotten_letters"]


def forgotten(
    db: sqlite3.Connection, events: Sequence[Event], persons: Sequence[str]
) -> list[bool]:
    """Which events belong to a forgotten person (`tombstones.covers`).

    `persons[i]` is the person `events[i]` counts for; one bool per event, in order.
    """
    names = set(persons) | {e.who for e in events}
    rows = db.execute(
        "SELECT person, forgotten_at FROM tombstones "
        "WHERE person IN (SELECT value FROM json_each(?))",
        (json_list(names),),
    ).fetchall()
    if not rows:
        return [False] * len(events)
    stones = dict(rows)
    return [
        covers(event, stones.get(event.who), stones.get(person))
        for event, person in zip(events, persons, strict=True)
    ]


def forgotten_letters(db: sqlite3.Connection, letters: Sequence[NewDeadLetter]) -> list[bool]:
    """Which dead letters a tombstone covers (`tombstones.covers_letters`), one bool per
    letter in order: those are not to be recorded."""
    known = [letter.received_at for letter in letters if letter.received_at > 0]
    if not known:
        return [False] * len(letters)
    stones = dict(
        db.execute(
            "SELECT person, forgotten_at FROM tombstones WHERE forgotten_at >= ?", (min(known),)
        ).fetchall()
    )
    return (
        covers_letters([(d.data, d.received_at) for d in letters], stones)
        if stones
        else [False] * len(letters)
    )


def forget(
    db: sqlite3.Connection, who: str, now: float, rules: BehaviorRules, periods: Periods
) -> ForgetReport:
    """Remove every trace of `who` (and of the anonymous ids actively linked to them) from
    raw events, aggregates, sessions, funnels, links naming them and dead letters; leave
    tombstones dated `now` (epoch seconds) or later. Run it inside a write transaction on `db`;
    `rules` decide how the links left behind resolve, `periods` which buckets the counts leave.
    `who` may be an anonymous actor (`anonymous:ID`) that no active link makes a user's; raises
    `LinkedAnonymousId` for one that is."""
    report = ForgetReport(who)
    if who.startswith(ANONYMOUS_PREFIX):
        linked = db.execute(
            "SELECT user_id FROM links WHERE anonymous_id = ? AND status = 'active'",
            (who.removeprefix(ANONYMOUS_PREFIX),),
        ).fetchone()
        if linked is not None:
            raise LinkedAnonymousId(who, linked[0])
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
        rows = _events_of(db, person)
        humans: list[Event] = []
        bots: Counter[tuple[str, str]] = Counter()
        for key, event_id, uid, aid, etype, ts, sid, props, received, bot in rows:
            if bot:
                for k in zip(GRANULARITIES, periods.of(ts), strict=True):
                    bots[k] -= 1
                continue
            humans.append(
                Event(key, event_id, uid, aid, etype, ts, sid, json.loads(props), received, person)
            )
        subtract_buckets(db, fold(humans, periods))
        forget_breakdowns(db, person, humans, periods, rules.breakdowns)
        db.executemany(UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in bots.items()])
        changes = Counter(
            db.execute(
                "DELETE FROM unique_markers WHERE who = ? RETURNING granularity, period",
                (person,),
            ).fetchall()
        )
        db.executemany(ADD_UNIQUE, [(-n, g, p) for (g, p), n in changes.items()])
        db.execute("DELETE FROM profiles WHERE who = ?", (person,))
        db.execute("DELETE FROM profile_types WHERE who = ?", (person,))
        sessions = [
            Session(start, end, count, client_id)
            for start, end, count, client_id in db.execute(
                "DELETE FROM sessions WHERE person = ? RETURNING start, end, events, client_id",
                (person,),
            ).fetchall()
        ]
        session_delta.apply(sessions, periods, -1)
        report.sessions += len(sessions)
        entries = db.execute(
            "DELETE FROM funnel_progress WHERE person = ? RETURNING funnel, day, step",
            (person,),
        ).fetchall()
        report.funnel_entries += len(entries)
        db.executemany(
            UPSERT_FUNNEL_BUCKET,
            [(f, day, s, -1) for f, day, step in entries for s in range(1, step + 1)],
        )
        deleted = db.execute(
            "DELETE FROM events WHERE key IN (SELECT value FROM json_each(?)) "
            "RETURNING timestamp, parsers_id",
            (json_list(row[0] for row in rows),),
        ).fetchall()
        report.raw_events += len(deleted)
        drop_unreferenced(db, (parsers_id for _, parsers_id in deleted))
        # A redelivery of any deleted event (even one dated ahead of the clock) is dropped.
        forgotten_at = max([now, *(timestamp for timestamp, _ in deleted)])
        db.execute(
            "INSERT INTO tombstones VALUES (?, ?) ON CONFLICT (person) DO UPDATE SET "
            "forgotten_at = max(forgotten_at, excluded.forgotten_at)",
            (person, forgotten_at),
        )
    db.executemany(
        UPSERT_SESSION_BUCKET,
        [
            (g, p, s.sessions, s.duration_ms, s.bounces, s.events)
            for (g, p), s in session_delta.stats.items()
        ],
    )
    report.final_periods = rules.final_changed(session_delta, periods, now)
    # Every record naming the user goes; the anonymous ids' links to others stand, resolved
    # again without the user's (a proposal refused for the user's sake becomes active: the
    # events it covers were the user's or the anonymous id's own, all deleted above).
    naming = [
        row[0]
        for row in db.execute("SELECT DISTINCT anonymous_id FROM links WHERE user_id = ?", (who,))
    ]
    report.links = db.execute("DELETE FROM links WHERE user_id = ?", (who,)).rowcount
    for anonymous_id in naming:
        resolved = resolve(links_of_anonymous(db, anonymous_id), rules.allow_relink)
        db.executemany(
            "UPDATE links SET status = ? WHERE anonymous_id = ? AND event_key = ?",
            [(link.status, link.anonymous_id, link.event_key) for link in resolved],
        )
    report.dead_letters = _forget_dead_letters(db, *actor_ids(persons))
    for table in ("bucket_types", "profile_types"):
        db.execute(f"DELETE FROM {table} WHERE count = 0")
    db.execute("DELETE FROM funnel_buckets WHERE users = 0")
    return report


_EVENT_COLUMNS = (
    "key, event_id, user_id, anonymous_id, event_type, timestamp, session_id, properties, "
    "received_at, bot"
)


def _events_of(db: sqlite3.Connection, person: str) -> list[tuple[Any, ...]]:
    """The rows `forget` deletes for `person`: the human events counted for them, and the
    crawlers' events whose actor they are (a crawler's event counts for nobody; its stored
    `person` is who it would have counted for when it arrived, which a later link can
    change)."""
    prefix = ANONYMOUS_PREFIX
    if person.startswith(prefix):
        bots_of, value = "anonymous_id = ? AND user_id IS NULL", person.removeprefix(prefix)
    else:
        bots_of, value = "person = ? AND who = person", person
    return db.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE person = ? AND bot = 0 "
        f"UNION ALL SELECT {_EVENT_COLUMNS} FROM events WHERE bot = 1 AND {bots_of}",
        (person, value),
    ).fetchall()


def _forget_dead_letters(
    db: sqlite3.Connection, user_ids: set[str], anonymous_ids: set[str]
) -> int:
    doomed = []
    for id_, data in db.execute("SELECT id, data FROM dead_letters"):
        data = bytes(data)
        if mentions(data, user_ids, anonymous_ids):
            doomed.append((id_,))
    db.executemany("DELETE FROM dead_letters WHERE id = ?", doomed)
    return len(doomed)
