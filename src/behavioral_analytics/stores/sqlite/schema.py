"""The SQLite store's tables: their DDL, the upserts that several modules apply to them, and the
migration of files written before identity stitching, bot flags, dead-letter fingerprints, the
raw events' `call` and `id_kind`, `persons`, sessions' values in their rows, and the raw events'
`parsers_id` (`derived_parsers`).

Every aggregate row is kept by adding deltas (`… ON CONFLICT … DO UPDATE SET n = n + excluded.n`),
so the same statement serves a commit (positive deltas), a move between people and forgetting
(negative ones).

A person's profile and events per type are one `persons` row (issue #17's person-centric
shape): a commit writes one row per person it touches, where a row per (person, event type)
cost about half a row write per event more on live traffic. Readers keep the `profiles` and
`profile_types` names: views of `persons`, whose deletes and updates triggers carry over.

The raw `events` table is a rowid table, its `key` in a UNIQUE index (issue #17's growth target):
rows go in arrival order, so a commit's ~5,000 events fill a few new pages at the end instead
of dirtying pages all over a B-tree keyed by random keys, each written whole to the WAL. Files
that kept events in a `WITHOUT ROWID` table keyed by `key` are rebuilt (`migrate`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite.breakdowns import BUCKETS_SCHEMA
from behavioral_analytics.stores.sqlite.derived_parsers import PARSERS_SCHEMA
from behavioral_analytics.stores.sqlite.layout import refuse_newer
from behavioral_analytics.stores.sqlite.session_counts import SESSION_COUNTS_SCHEMA
from behavioral_analytics.telemetry import log

__all__ = [
    "ADD_UNIQUE",
    "BEHAVIOR_SCHEMA",
    "EVENTS_SCHEMA",
    "INSERT_EVENT",
    "SCHEMA",
    "SUBTRACT_PROFILE_TYPES",
    "UPSERT_BOT_BUCKET",
    "UPSERT_BUCKET",
    "UPSERT_BUCKET_TYPE",
    "UPSERT_FUNNEL_BUCKET",
    "UPSERT_PROFILE",
    "UPSERT_SESSION_BUCKET",
    "migrate",
]

# Also used by bench/pipeline.py for its bare-insert baseline: keep the two in step. A rowid
# table (rows in arrival order, `key` in a UNIQUE index): see the module docstring.
EVENTS_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS events (
  key TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL,
  user_id TEXT,
  anonymous_id TEXT,
  who TEXT NOT NULL,
  event_type TEXT NOT NULL,
  timestamp REAL NOT NULL,
  session_id TEXT,
  properties TEXT NOT NULL,
  received_at REAL NOT NULL,
  processed_at REAL NOT NULL,
  expire_at REAL NOT NULL,
  person TEXT NOT NULL,  -- who the event counts for (identity stitching); `who` is its actor
  bot INTEGER NOT NULL DEFAULT 0,
  call TEXT,  -- Event.call: "alias" or "group" for those Segment calls, else NULL
  id_kind TEXT,  -- Event.id_kind: "message" for a client's message id (else NULL)
  parsers_id INTEGER  -- its `$derived.parsers` in `derived_parsers` (NULL: in `properties`)
);
CREATE INDEX IF NOT EXISTS events_by_person ON events (person, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expire_at);
"""
    + PARSERS_SCHEMA
)

_PERSONS = """
CREATE TABLE IF NOT EXISTS persons (
  who TEXT PRIMARY KEY,
  total_events INTEGER NOT NULL,
  first_seen REAL NOT NULL,
  last_activity REAL NOT NULL,
  last_updated REAL NOT NULL,
  types TEXT NOT NULL
) WITHOUT ROWID;
"""

_AGGREGATES_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS buckets (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  total_events INTEGER NOT NULL,
  unique_users INTEGER NOT NULL,
  last_updated REAL NOT NULL,
  PRIMARY KEY (granularity, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_types (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  event_type TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (granularity, period, event_type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unique_markers (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  who TEXT NOT NULL,
  PRIMARY KEY (granularity, period, who)
) WITHOUT ROWID;
-- One row per person: their profile and their events per type (a JSON object, type → count,
-- counts above zero only), written once per person per commit. `profiles` and
-- `profile_types` are views of it, which readers select from and deletes go through.
"""
    + _PERSONS
    + """CREATE INDEX IF NOT EXISTS persons_by_activity ON persons (last_activity);
CREATE VIEW IF NOT EXISTS profiles AS
  SELECT who, total_events, first_seen, last_activity, last_updated FROM persons;
CREATE TRIGGER IF NOT EXISTS profiles_delete INSTEAD OF DELETE ON profiles
BEGIN
  DELETE FROM persons WHERE who = old.who;
END;
CREATE TRIGGER IF NOT EXISTS profiles_update INSTEAD OF UPDATE ON profiles
BEGIN
  UPDATE persons SET total_events = new.total_events, first_seen = new.first_seen,
    last_activity = new.last_activity, last_updated = new.last_updated WHERE who = old.who;
END;
CREATE VIEW IF NOT EXISTS profile_types AS
  SELECT p.who AS who, t.key AS event_type, t.value AS count
  FROM persons AS p, json_each(p.types) AS t;
CREATE TRIGGER IF NOT EXISTS profile_types_delete INSTEAD OF DELETE ON profile_types
BEGIN
  UPDATE persons SET types = (
    SELECT json_group_object(key, value) FROM json_each(persons.types) WHERE key <> old.event_type
  ) WHERE who = old.who;
END;
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recorded_at REAL NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  source TEXT NOT NULL,
  message_id TEXT NOT NULL,
  attributes TEXT NOT NULL,
  data BLOB NOT NULL,
  received_at REAL NOT NULL,
  attempts TEXT NOT NULL,
  replayed_at REAL,
  fingerprint TEXT,  -- NewDeadLetter.fingerprint: a redelivered rejection is recorded once
  expire_at REAL  -- recorded_at + the dead-letter retention; NULL: kept until purged by hand
);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_by_fingerprint ON dead_letters (fingerprint);
CREATE INDEX IF NOT EXISTS dead_letters_by_expiry ON dead_letters (expire_at);
-- What purging removed, by reason: the counts outlive the letters.
CREATE TABLE IF NOT EXISTS dead_letters_purged (
  reason TEXT PRIMARY KEY,
  count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pipeline_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  newest_event_at REAL,
  last_commit_at REAL,
  lag_s REAL
);
"""
)

# Sessions, funnels, identity links, bot counts and tombstones.
BEHAVIOR_SCHEMA = """
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
  vals TEXT,  -- what it counts under per breakdown value (session_counts); NULL: nowhere
  PRIMARY KEY (person, key)
) WITHOUT ROWID;
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

SCHEMA = EVENTS_SCHEMA + _AGGREGATES_SCHEMA + BEHAVIOR_SCHEMA

# Without `call` and `id_kind` (NULL): bench/pipeline.py's rows, recipe events.
INSERT_EVENT = (
    "INSERT INTO events (key, event_id, user_id, anonymous_id, who, event_type, timestamp, "
    "session_id, properties, received_at, processed_at, expire_at, person, bot) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
UPSERT_BUCKET = """
INSERT INTO buckets VALUES (?, ?, ?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET
  total_events = total_events + excluded.total_events,
  unique_users = unique_users + excluded.unique_users,
  last_updated = excluded.last_updated
"""
UPSERT_BUCKET_TYPE = """
INSERT INTO bucket_types VALUES (?, ?, ?, ?)
ON CONFLICT (granularity, period, event_type) DO UPDATE SET count = count + excluded.count
"""
# Adds a person's events: (who, events, first seen, last activity, updated at, events per type
# as a JSON object of positive counts). A move or forgetting takes from a person with
# `SUBTRACT_PROFILE_TYPES` and its own updates.
UPSERT_PROFILE = """
INSERT INTO persons VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (who) DO UPDATE SET
  total_events = total_events + excluded.total_events,
  first_seen = min(first_seen, excluded.first_seen),
  last_activity = max(last_activity, excluded.last_activity),
  last_updated = excluded.last_updated,
  types = (SELECT json_group_object(key, n) FROM (
    SELECT key, sum(value) AS n FROM (
      SELECT key, value FROM json_each(persons.types)
      UNION ALL SELECT key, value FROM json_each(excluded.types)
    ) GROUP BY key HAVING n > 0
  ))
"""
# (events per type to take away as a JSON object, who): types left at zero are dropped.
SUBTRACT_PROFILE_TYPES = """
UPDATE persons SET types = (SELECT json_group_object(key, n) FROM (
  SELECT key, sum(value) AS n FROM (
    SELECT key, value FROM json_each(persons.types)
    UNION ALL SELECT key, -value FROM json_each(?1)
  ) GROUP BY key HAVING n > 0
)) WHERE who = ?2
"""
ADD_UNIQUE = (
    "UPDATE buckets SET unique_users = unique_users + ? WHERE granularity = ? AND period = ?"
)
UPSERT_BOT_BUCKET = """
INSERT INTO bot_buckets VALUES (?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET events = events + excluded.events
"""
UPSERT_SESSION_BUCKET = """
INSERT INTO session_buckets VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET
  sessions = sessions + excluded.sessions,
  duration_ms = duration_ms + excluded.duration_ms,
  bounces = bounces + excluded.bounces,
  events = events + excluded.events
"""
UPSERT_FUNNEL_BUCKET = """
INSERT INTO funnel_buckets VALUES (?, ?, ?, ?)
ON CONFLICT (funnel, day, step) DO UPDATE SET users = users + excluded.users
"""


_HAS_MEMBERS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'group_members'"
_SESSION_VALUES_TABLE = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_values'"
)
# The values the earlier `session_values` table kept beside each session, moved into its row.
_TO_SESSION_ROWS = """
UPDATE sessions SET vals = v.vals FROM session_values AS v
WHERE v.person = sessions.person AND v.key = sessions.key
"""
_EVENTS_SQL = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'"
_EVENT_COLUMNS = (
    "key, event_id, user_id, anonymous_id, who, event_type, timestamp, session_id, properties, "
    "received_at, processed_at, expire_at, person, bot, call, id_kind"
)
_PROFILES_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'profiles'"
# A profile's events per type from the `profile_types` table files had before `persons`.
_TO_PERSONS = """
INSERT INTO persons
SELECT p.who, p.total_events, p.first_seen, p.last_activity, p.last_updated,
       (SELECT json_group_object(t.event_type, t.count) FROM profile_types AS t
        WHERE t.who = p.who AND t.count > 0)
FROM profiles AS p
"""

# Breakdown counts, from a row per value to a row per (granularity, period, dimension) holding
# every value's counts (`breakdowns`, `session_counts`).
_BY_VALUE = "SELECT 1 FROM pragma_table_info(?) WHERE name = 'value'"
_TO_SESSION_SETS = """
INSERT INTO breakdown_sessions
SELECT granularity, period, dimension, json_group_object(value, sessions)
FROM breakdown_sessions_by_value WHERE sessions != 0
GROUP BY granularity, period, dimension
"""
_TO_BUCKET_SETS = """
INSERT INTO breakdown_buckets
SELECT granularity, period, dimension,
       coalesce(json_group_object(value, events) FILTER (WHERE events != 0), '{}'),
       coalesce(json_group_object(value, unique_users) FILTER (WHERE unique_users != 0), '{}')
FROM breakdown_buckets_by_value
GROUP BY granularity, period, dimension
"""


def migrate(path: Path) -> None:
    """Bring the tables of the file at `path` (if it exists) from before identity stitching, bot
    flags, dead-letter fingerprints, the raw events' `call` and `id_kind`, `persons`, sessions'
    values in their rows and the raw events' `parsers_id` up to date, before `SCHEMA` is run on
    it. Events stored before carry neither `call` nor `id_kind` (NULL), and keep their parsers
    in their properties (`parsers_id` NULL: nothing is rewritten); the `profiles` and
    `profile_types` tables become one `persons` row per person (and the views of those names);
    the `session_values` table's values move into the `sessions` rows' `vals` as they are (the
    counts they were counted into are unchanged: nothing is recounted), its other columns
    (start, first event's key) are dropped, and the `sessions_by_start` index (no query needs
    it) is dropped; the breakdown counts (events, unique users and sessions per value), a row
    per value before, become a row per (granularity, period, dimension) with the same counts.

    Raises StoreError, changing nothing, when a newer release has upgraded the file
    (`layout.refuse_newer`)."""
    if not path.exists():
        return
    said: list[str] = []

    def step(what: str) -> None:
        if not said:
            log.warning(
                "bringing the store's tables to this release's layout (%s, …): one way, an "
                "earlier release cannot open the file afterwards; it may take a while on a large "
                "store",
                what,
                extra={"file": str(path)},
            )
        said.append(what)

    db = connect(path)
    try:
        refuse_newer(db, path)
        letters = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
        if letters and "fingerprint" not in letters:
            step("dead letters' fingerprints")
            db.execute("ALTER TABLE dead_letters ADD COLUMN fingerprint TEXT")
        if letters and "expire_at" not in letters:
            step("dead letters' expiry")
            db.execute("ALTER TABLE dead_letters ADD COLUMN expire_at REAL")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if columns and "person" not in columns:
            step("raw events' person and crawler flag")
            with transaction(db):
                db.execute("ALTER TABLE events ADD COLUMN person TEXT NOT NULL DEFAULT ''")
                db.execute("ALTER TABLE events ADD COLUMN bot INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE events SET person = who")
                db.execute("DROP INDEX IF EXISTS events_by_who")
        if columns and "call" not in columns:
            step("raw events' call")
            with transaction(db):
                db.execute("ALTER TABLE events ADD COLUMN call TEXT")
                db.execute("ALTER TABLE events ADD COLUMN id_kind TEXT")
                if db.execute(_HAS_MEMBERS).fetchone():  # a membership's call is a group call
                    db.execute(
                        "UPDATE events SET call = 'group' "
                        "WHERE key IN (SELECT event_key FROM group_members)"
                    )
        _rebuild_keyed_events(db, step)
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if columns and "parsers_id" not in columns:
            step("raw events' parsers stored once")
            db.execute("ALTER TABLE events ADD COLUMN parsers_id INTEGER")
        sessions = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
        if sessions and "vals" not in sessions:
            step("sessions' values in their rows")
            with transaction(db):
                db.execute("ALTER TABLE sessions ADD COLUMN vals TEXT")
                if db.execute(_SESSION_VALUES_TABLE).fetchone():
                    db.execute(_TO_SESSION_ROWS)
                    db.execute("DROP TABLE session_values")
        db.execute("DROP INDEX IF EXISTS sessions_by_start")
        for table, schema, packing in (
            ("breakdown_buckets", BUCKETS_SCHEMA, _TO_BUCKET_SETS),
            ("breakdown_sessions", SESSION_COUNTS_SCHEMA, _TO_SESSION_SETS),
        ):
            if db.execute(_BY_VALUE, (table,)).fetchone():
                step("breakdown counts in a row per dimension")
                with transaction(db):
                    db.execute(f"ALTER TABLE {table} RENAME TO {table}_by_value")
                    db.execute(schema)
                    db.execute(packing)
                    db.execute(f"DROP TABLE {table}_by_value")
        if db.execute(_PROFILES_TABLE).fetchone():
            step("one row per person")
            with transaction(db):
                db.execute(_PERSONS)
                db.execute(_TO_PERSONS)
                db.execute("DROP TABLE profiles")
                db.execute("DROP TABLE IF EXISTS profile_types")
    finally:
        db.close()


def _rebuild_keyed_events(db: sqlite3.Connection, step: Callable[[str], None]) -> None:
    """Rebuild a `WITHOUT ROWID` `events` table (keyed by `key`) as the rowid table of
    `EVENTS_SCHEMA`, rows in (received_at, key) order, in one transaction: a new table, filled,
    the old one dropped (its indexes with it: `SCHEMA` makes them again), the new one renamed.
    Does nothing to any other layout."""
    row = db.execute(_EVENTS_SQL).fetchone()
    if row is None or "WITHOUT ROWID" not in row[0].upper():
        return
    step("raw events in arrival order")
    table = EVENTS_SCHEMA[: EVENTS_SCHEMA.index("\n);") + 3]  # comments hold semicolons
    create = table.replace("IF NOT EXISTS events (", "events_rowid (")
    with transaction(db):
        db.execute(create)
        db.execute(
            f"INSERT INTO events_rowid ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
            "FROM events ORDER BY received_at, key"
        )
        db.execute("DROP TABLE events")
        db.execute("ALTER TABLE events_rowid RENAME TO events")
