"""The SQLite store's tables: their DDL, the upserts that several modules apply to them, and the
migration of files written before identity stitching, bot flags, dead-letter fingerprints and
the raw events' `call` and `id_kind`.

Every aggregate row is kept by adding deltas (`… ON CONFLICT … DO UPDATE SET n = n + excluded.n`),
so the same statement serves a commit (positive deltas), a move between people and forgetting
(negative ones).
"""

from __future__ import annotations

from pathlib import Path

from behavioral_analytics.sqlite_util import connect, transaction

__all__ = [
    "ADD_UNIQUE",
    "BEHAVIOR_SCHEMA",
    "EVENTS_SCHEMA",
    "INSERT_EVENT",
    "SCHEMA",
    "UPSERT_BOT_BUCKET",
    "UPSERT_BUCKET",
    "UPSERT_BUCKET_TYPE",
    "UPSERT_FUNNEL_BUCKET",
    "UPSERT_PROFILE",
    "UPSERT_PROFILE_TYPE",
    "UPSERT_SESSION_BUCKET",
    "migrate",
]

# Also used by bench/pipeline.py for its bare-insert baseline: keep the two in step.
EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  key TEXT PRIMARY KEY,
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
  id_kind TEXT  -- Event.id_kind: "message" for a client's message id, else NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_person ON events (person, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expire_at);
"""

_AGGREGATES_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS profiles (
  who TEXT PRIMARY KEY,
  total_events INTEGER NOT NULL,
  first_seen REAL NOT NULL,
  last_activity REAL NOT NULL,
  last_updated REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS profiles_by_activity ON profiles (last_activity);
CREATE TABLE IF NOT EXISTS profile_types (
  who TEXT NOT NULL,
  event_type TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (who, event_type)
) WITHOUT ROWID;
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

# Sessions, funnels, identity links, bot counts and tombstones.
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
# A profile only ever gains by these; a move or forgetting takes from it with its own updates.
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


def migrate(path: Path) -> None:
    """Bring the tables of the file at `path` (if it exists) from before identity stitching, bot
    flags, dead-letter fingerprints and the raw events' `call` and `id_kind` up to date, before
    `SCHEMA` is run on it. Events stored before carry neither (NULL)."""
    if not path.exists():
        return
    db = connect(path)
    try:
        letters = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
        if letters and "fingerprint" not in letters:
            db.execute("ALTER TABLE dead_letters ADD COLUMN fingerprint TEXT")
        if letters and "expire_at" not in letters:
            db.execute("ALTER TABLE dead_letters ADD COLUMN expire_at REAL")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if columns and "person" not in columns:
            with transaction(db):
                db.execute("ALTER TABLE events ADD COLUMN person TEXT NOT NULL DEFAULT ''")
                db.execute("ALTER TABLE events ADD COLUMN bot INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE events SET person = who")
                db.execute("DROP INDEX IF EXISTS events_by_who")
        if columns and "call" not in columns:
            with transaction(db):
                db.execute("ALTER TABLE events ADD COLUMN call TEXT")
                db.execute("ALTER TABLE events ADD COLUMN id_kind TEXT")
                if db.execute(_HAS_MEMBERS).fetchone():  # a membership's call is a group call
                    db.execute(
                        "UPDATE events SET call = 'group' "
                        "WHERE key IN (SELECT event_key FROM group_members)"
                    )
    finally:
        db.close()
