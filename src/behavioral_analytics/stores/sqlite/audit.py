"""What `verify` and `verify --repair` need of the SQLite store: every raw event, every
aggregate in comparable form (`snapshot`), the stored links, and the recount that replaces
the aggregates and derived tables (`write_recount`). Links and tombstones, which raw events
cannot give back, are kept."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence

from behavioral_analytics.behavior import Recount
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.named_calls import GROUP
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import AggregateSnapshot
from behavioral_analytics.stores.sqlite.aggregates import apply_deltas
from behavioral_analytics.stores.sqlite.breakdowns import snapshot_breakdowns
from behavioral_analytics.stores.sqlite.groups import members, rebuild_members
from behavioral_analytics.stores.sqlite.identity import LINKS_WITH_CUTS
from behavioral_analytics.stores.sqlite.rows import EVENT_COLUMNS, stored_event
from behavioral_analytics.stores.sqlite.schema import (
    UPSERT_BOT_BUCKET,
    UPSERT_FUNNEL_BUCKET,
    UPSERT_SESSION_BUCKET,
)
from behavioral_analytics.stores.sqlite.session_counts import snapshot_session_values

__all__ = ["raw_events", "snapshot", "stored_links", "write_link_statuses", "write_recount"]

_BASE_TABLES = ("buckets", "bucket_types", "unique_markers", "profiles", "profile_types")
_DERIVED_TABLES = (
    "bot_buckets",
    "sessions",
    "session_buckets",
    "funnel_progress",
    "funnel_buckets",
)


def raw_events(db: sqlite3.Connection, call: str | None = None) -> Iterator[Event]:
    """Every stored raw event (with `call`, only those of that call) with its `call` and
    `id_kind`, read 5,000 rows at a time."""
    select = f"SELECT {EVENT_COLUMNS}, call, id_kind FROM events"
    cursor = db.execute(select) if call is None else db.execute(f"{select} WHERE call = ?", (call,))
    while rows := cursor.fetchmany(5000):
        for row in rows:
            event = stored_event(row[:-2]).event
            event.call, event.id_kind = row[-2:]
            yield event


def snapshot(db: sqlite3.Connection, dimensions: Sequence[str]) -> AggregateSnapshot:
    """Every aggregate as stored (zero bot, session and funnel rows left out), and each
    person's kept sessions, their values (unpacked for the configured `dimensions`) and funnel
    progress."""
    snap = AggregateSnapshot()
    types: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for granularity, period, event_type, count in db.execute("SELECT * FROM bucket_types"):
        types[granularity, period][event_type] = count
    for granularity, period, total, uniques, _ in db.execute("SELECT * FROM buckets"):
        snap.buckets[granularity, period] = (total, types.get((granularity, period), {}))
        if granularity != "minute":
            snap.unique_users[granularity, period] = uniques
    snap.markers = {tuple(row) for row in db.execute("SELECT * FROM unique_markers")}
    profile_types: dict[str, dict[str, int]] = defaultdict(dict)
    for who, event_type, count in db.execute("SELECT * FROM profile_types"):
        profile_types[who][event_type] = count
    for who, total, first, last, _ in db.execute("SELECT * FROM profiles"):
        snap.profiles[who] = (total, profile_types.get(who, {}), first, last)
    snap.bot_events = {(g, p): n for g, p, n in db.execute("SELECT * FROM bot_buckets") if n}
    snap.session_stats = {
        (g, p): SessionStats(*stats)
        for g, p, *stats in db.execute("SELECT * FROM session_buckets")
        if any(stats)
    }
    snap.funnel_users = {
        (f, day, step): n for f, day, step, n in db.execute("SELECT * FROM funnel_buckets") if n
    }
    snapshot_breakdowns(db, snap)
    snap.group_members = members(db)
    sessions = {
        tuple(row) for row in db.execute("SELECT person, key, start, end, events FROM sessions")
    }
    progress = {
        (funnel, person, day): step
        for funnel, person, day, step in db.execute(
            "SELECT funnel, person, day, step FROM funnel_progress"
        )
    }
    # None, as an empty store's snapshot says, where there is neither state nor figure.
    snap.person_sessions = sessions if sessions or snap.session_stats else None
    snap.funnel_progress = progress if progress or snap.funnel_users else None
    if snap.breakdown_sessions is not None:
        snap.session_values = snapshot_session_values(db, dimensions)
    return snap


def stored_links(db: sqlite3.Connection) -> list[Link]:
    """Every stored link, whatever its status, with its user's tombstone as `user_forgotten_at`."""
    return [Link(*row) for row in db.execute(LINKS_WITH_CUTS)]


def write_link_statuses(
    db: sqlite3.Connection, stored: Sequence[Link], links: Sequence[Link]
) -> None:
    """Set the status of each of `links` that differs from `stored`'s (the same links, read
    before), inside the caller's write transaction."""
    before = {(link.anonymous_id, link.event_key): link.status for link in stored}
    db.executemany(
        "UPDATE links SET status = ? WHERE anonymous_id = ? AND event_key = ?",
        [
            (link.status, link.anonymous_id, link.event_key)
            for link in links
            if before.get((link.anonymous_id, link.event_key)) != link.status
        ],
    )


def write_recount(db: sqlite3.Connection, recount: Recount, now: float) -> None:
    """Replace every aggregate and derived table by `recount`, stamped updated at `now` (epoch
    seconds), set each event's person to the recount's, and recount the group memberships from
    the stored raw events (for `verify --repair`). Run it inside a write transaction on `db`."""
    for table in _BASE_TABLES:
        db.execute(f"DELETE FROM {table}")
    apply_deltas(db, recount.deltas, now)
    for table in _DERIVED_TABLES:
        db.execute(f"DELETE FROM {table}")
    db.executemany(
        "UPDATE events SET person = ? WHERE key = ?",
        [(person, key) for key, person in recount.persons.items()],
    )
    db.executemany(UPSERT_BOT_BUCKET, [(g, p, n) for (g, p), n in recount.bot_events.items()])
    db.executemany(
        "INSERT INTO sessions (person, key, start, end, events, client_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (person, s.key, s.start, s.end, s.events, s.client_id)
            for person, sessions in recount.sessions.items()
            for s in sessions
        ],
    )
    db.executemany(
        UPSERT_SESSION_BUCKET,
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
        UPSERT_FUNNEL_BUCKET,
        [(f, day, step, n) for (f, day, step), n in recount.funnel_users.items()],
    )
    rebuild_members(db, raw_events(db, GROUP))
