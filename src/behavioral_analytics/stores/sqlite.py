"""The read model on one SQLite file: the embedded default.

A commit is one write transaction: each raw event is inserted unless its key exists, and the
deltas of exactly the rows inserted are applied. A redelivered batch therefore inserts nothing
and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from behavioral_analytics.aggregation import Deltas, Granularity, Periods, fold
from behavioral_analytics.behavior import BehaviorRules, as_person, recount
from behavioral_analytics.bots import BOT_PROPERTY, is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.sqlite_util import PerThreadConnection, connect, transaction
from behavioral_analytics.store import (
    AggregateSnapshot,
    CommitResult,
    DeadLetter,
    ForgetReport,
    Freshness,
    FunnelDay,
    InvalidCursor,
    NewDeadLetter,
    Page,
    Profile,
    SeriesPoint,
    SessionPoint,
    Store,
    StoredEvent,
    StoreError,
    decode_cursor,
    encode_cursor,
)
from behavioral_analytics.stores.sqlite_behavior import (
    BEHAVIOR_SCHEMA,
    UPSERT_PROFILE,
    UPSERT_PROFILE_TYPE,
    SQLiteBehavior,
)

if TYPE_CHECKING:
    from behavioral_analytics.config import Settings

__all__ = ["EVENTS_SCHEMA", "SQLiteStore"]

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
  bot INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_person ON events (person, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, timestamp DESC);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expire_at);
"""

_SCHEMA = (
    EVENTS_SCHEMA
    + """
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
  fingerprint TEXT  -- NewDeadLetter.fingerprint: a redelivered rejection is recorded once
);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_by_fingerprint ON dead_letters (fingerprint);
CREATE TABLE IF NOT EXISTS pipeline_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  newest_event_at REAL,
  last_commit_at REAL,
  lag_s REAL
);
"""
    + BEHAVIOR_SCHEMA
)

INSERT_EVENT = (
    "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO NOTHING"
)
_UPSERT_BUCKET = """
INSERT INTO buckets VALUES (?, ?, ?, ?, ?)
ON CONFLICT (granularity, period) DO UPDATE SET
  total_events = total_events + excluded.total_events,
  unique_users = unique_users + excluded.unique_users,
  last_updated = excluded.last_updated
"""
_UPSERT_BUCKET_TYPE = """
INSERT INTO bucket_types VALUES (?, ?, ?, ?)
ON CONFLICT (granularity, period, event_type) DO UPDATE SET count = count + excluded.count
"""
_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (recorded_at, reason, detail, source, message_id, attributes, data,
                          received_at, attempts, fingerprint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint) DO NOTHING
"""
_UPDATE_STATE = """
INSERT INTO pipeline_state VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
  newest_event_at = max(coalesce(newest_event_at, excluded.newest_event_at),
                        excluded.newest_event_at),
  last_commit_at = excluded.last_commit_at,
  lag_s = excluded.lag_s
"""

_EVENT_COLUMNS = (
    "key, event_id, user_id, anonymous_id, event_type, timestamp, session_id, properties, "
    "received_at, processed_at"
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class SQLiteStore(Store):
    behavioral = True

    def __init__(
        self,
        path: Path,
        *,
        timezone: str = "UTC",
        raw_retention_s: float = 30 * 86400.0,
        rules: BehaviorRules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.periods = Periods(timezone)
        self.raw_retention_s = raw_retention_s
        self.rules: BehaviorRules = rules or BehaviorRules()
        self.behavior = SQLiteBehavior(self.rules, self.periods)
        self._clock = clock
        _migrate(path)
        self._connections = PerThreadConnection(path, _SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteStore:
        return cls(
            settings.data_dir / "store.db",
            timezone=settings.timezone,
            raw_retention_s=settings.raw_retention_days * 86400.0,
            rules=settings.behavior_rules(),
        )

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def init(self) -> list[str]:
        return [f"store ready at {self.path}"]

    # -- writes -----------------------------------------------------------------------------

    def commit(
        self, events: Sequence[Event], dead_letters: Sequence[NewDeadLetter] = ()
    ) -> CommitResult:
        now = self._clock()
        expire_at = now + self.raw_retention_s
        db = self._db
        behavior = self.behavior
        try:
            with transaction(db):
                persons = behavior.persons(db, events)
                forgotten = behavior.forgotten(db, events, persons)
                if any(forgotten):
                    kept = [i for i, gone in enumerate(forgotten) if not gone]
                    events = [events[i] for i in kept]
                    persons = [persons[i] for i in kept]
                person_of = {e.key: p for e, p in zip(events, persons, strict=True)}
                created = self._insert_new(db, events, person_of, now, expire_at)
                humans = [
                    e if person_of[e.key] == e.who else as_person(e, person_of[e.key])
                    for e in created
                    if BOT_PROPERTY not in e.properties
                ]
                self._apply(db, fold(humans, self.periods), now)
                behavior.apply(db, created, person_of, now)
                if dead_letters:
                    self._insert_dead_letters(db, dead_letters, now)
                lag = max((now - event.received_at for event in created), default=None)
                if created:
                    newest = max(event.timestamp for event in created)
                    db.execute(_UPDATE_STATE, (newest, now, lag))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"commit to {self.path} failed: {exc}") from exc
        by_type = Counter(event.event_type for event in created)
        return CommitResult(
            created=len(created),
            duplicates=len(events) - len(created) + sum(forgotten),
            dead_letters=len(dead_letters),
            created_by_type=dict(by_type),
            max_lag_s=lag,
        )

    @staticmethod
    def _insert_new(
        db: sqlite3.Connection,
        events: Sequence[Event],
        person_of: dict[str, str],
        now: float,
        expire_at: float,
    ) -> list[Event]:
        """Insert the events whose key is not stored yet; return exactly those (the rows the
        insert reports as created)."""
        rows = [
            (
                event.key,
                event.event_id,
                event.user_id,
                event.anonymous_id,
                event.who,
                event.event_type,
                event.timestamp,
                event.session_id,
                _encode(event.properties),
                event.received_at,
                now,
                expire_at,
                person_of[event.key],
                is_bot(event.properties),
            )
            for event in events
        ]
        inserted = set(_insert_returning(db, "events", 14, rows, "key", "(key) DO NOTHING"))
        created = []
        for event in events:
            if event.key in inserted:
                inserted.discard(event.key)  # a key twice in one batch counts once
                created.append(event)
        return created

    @staticmethod
    def _new_markers(
        db: sqlite3.Connection, markers: set[tuple[str, str, str]]
    ) -> Counter[tuple[str, str]]:
        """Create the unique-user markers not stored yet; count the new ones per bucket."""
        return Counter(
            _insert_returning(
                db, "unique_markers", 3, list(markers), "granularity, period", "DO NOTHING"
            )
        )

    @classmethod
    def _apply(cls, db: sqlite3.Connection, deltas: Deltas, now: float) -> None:
        new_uniques = cls._new_markers(db, deltas.markers)
        db.executemany(
            _UPSERT_BUCKET,
            [
                (granularity, period, bucket.total, new_uniques[granularity, period], now)
                for (granularity, period), bucket in deltas.buckets.items()
            ],
        )
        db.executemany(
            _UPSERT_BUCKET_TYPE,
            [
                (granularity, period, event_type, count)
                for (granularity, period), bucket in deltas.buckets.items()
                for event_type, count in bucket.by_type.items()
            ],
        )
        db.executemany(
            UPSERT_PROFILE,
            [
                (who, p.total, p.first_seen, p.last_activity, now)
                for who, p in deltas.profiles.items()
            ],
        )
        db.executemany(
            UPSERT_PROFILE_TYPE,
            [
                (who, event_type, count)
                for who, p in deltas.profiles.items()
                for event_type, count in p.by_type.items()
            ],
        )

    @staticmethod
    def _subtract_buckets(db: sqlite3.Connection, deltas: Deltas) -> None:
        """Take events' bucket counts back out (forgetting them); markers and profiles are
        removed per person by the caller."""
        db.executemany(
            _UPSERT_BUCKET,
            [(g, p, -bucket.total, 0, 0.0) for (g, p), bucket in deltas.buckets.items()],
        )
        db.executemany(
            _UPSERT_BUCKET_TYPE,
            [
                (g, p, event_type, -count)
                for (g, p), bucket in deltas.buckets.items()
                for event_type, count in bucket.by_type.items()
            ],
        )

    def forget(self, who: str) -> ForgetReport:
        with transaction(self._db) as db:
            return self.behavior.forget(db, who, self._clock(), self._subtract_buckets)

    @staticmethod
    def _insert_dead_letters(
        db: sqlite3.Connection, dead_letters: Sequence[NewDeadLetter], now: float
    ) -> None:
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
                )
                for d in dead_letters
            ],
        )

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> None:
        if dead_letters:
            with transaction(self._db) as db:
                self._insert_dead_letters(db, dead_letters, self._clock())

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        with transaction(self._db) as db:
            db.executemany(
                "UPDATE dead_letters SET replayed_at = ? WHERE id = ?",
                [(when, int(i)) for i in dead_letter_ids],
            )

    def purge_expired(self, now: float) -> int:
        with transaction(self._db) as db:
            return db.execute("DELETE FROM events WHERE expire_at < ?", (now,)).rowcount

    # -- reads ------------------------------------------------------------------------------

    def profile(self, who: str) -> Profile | None:
        row = self._db.execute(
            "SELECT total_events, first_seen, last_activity FROM profiles WHERE who = ?", (who,)
        ).fetchone()
        if row is None:
            return None
        by_type = dict(
            self._db.execute(
                "SELECT event_type, count FROM profile_types WHERE who = ? ORDER BY event_type",
                (who,),
            ).fetchall()
        )
        return Profile(who, row[0], by_type, row[1], row[2])

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        return self._page("person", who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        return self._page("event_type", event_type, limit, cursor)

    def _page(self, column: str, value: str, limit: int, cursor: str | None) -> Page[StoredEvent]:
        limit = max(1, min(limit, 1000))
        if cursor:
            timestamp, key = decode_cursor(cursor)
            rows = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE {column} = ? "
                "AND (timestamp < ? OR (timestamp = ? AND key < ?)) "
                "ORDER BY timestamp DESC, key DESC LIMIT ?",
                (value, timestamp, timestamp, key, limit + 1),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE {column} = ? "
                "ORDER BY timestamp DESC, key DESC LIMIT ?",
                (value, limit + 1),
            ).fetchall()
        items = [_stored_event(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last.event.timestamp, last.event.key)
        return Page(items, next_cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for start in range(0, len(keys), 10_000):
            chunk = _encode(list(keys[start : start + 10_000])).decode()
            found.extend(
                _stored_event(row)
                for row in self._db.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events "
                    "WHERE key IN (SELECT value FROM json_each(?))",
                    (chunk,),
                )
            )
        return found

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        low, high = start or "", end or "\uffff"
        rows = self._db.execute(
            "SELECT period, total_events, unique_users FROM buckets "
            "WHERE granularity = ? AND period >= ? AND period <= ? ORDER BY period",
            (granularity, low, high),
        ).fetchall()
        bots = dict(
            self._db.execute(
                "SELECT period, events FROM bot_buckets "
                "WHERE granularity = ? AND period >= ? AND period <= ?",
                (granularity, low, high),
            ).fetchall()
        )
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        for period, event_type, count in self._db.execute(
            "SELECT period, event_type, count FROM bucket_types "
            "WHERE granularity = ? AND period >= ? AND period <= ? ORDER BY period, event_type",
            (granularity, low, high),
        ):
            by_type[period][event_type] = count
        return [
            SeriesPoint(
                granularity,
                period,
                total,
                by_type.get(period, {}),
                None if granularity == "minute" else uniques,
                bots.get(period, 0),
            )
            for period, total, uniques in rows
        ]

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        if granularity not in ("hour", "day"):
            raise StoreError("sessions are kept per hour and per day")
        now = self._clock()
        return [
            SessionPoint(
                granularity,
                period,
                SessionStats(sessions, duration_ms, bounces, events),
                self.rules.session_final(self.periods, granularity, period, now),
            )
            for period, sessions, duration_ms, bounces, events in self._db.execute(
                "SELECT period, sessions, duration_ms, bounces, events FROM session_buckets "
                "WHERE granularity = ? AND period >= ? AND period <= ? AND sessions != 0 "
                "ORDER BY period",
                (granularity, start or "", end or "\uffff"),
            )
        ]

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        funnel = self.rules.funnel(name)
        if funnel is None:
            raise StoreError(f"no funnel named {name!r}")
        users: dict[str, list[int]] = {}
        for day, step, count in self._db.execute(
            "SELECT day, step, users FROM funnel_buckets WHERE funnel = ? AND day >= ? "
            "AND day <= ? ORDER BY day",
            (name, start or "", end or "\uffff"),
        ):
            users.setdefault(day, [0] * len(funnel.steps))[step - 1] = count
        return [FunnelDay(day, steps) for day, steps in users.items() if steps[0]]

    def links(self, who: str) -> list[Link]:
        anonymous_id = who.removeprefix("anonymous:") if who.startswith("anonymous:") else None
        return [
            Link(a, u, t, k, s)
            for a, k, u, t, s in self._db.execute(
                "SELECT anonymous_id, event_key, user_id, linked_at, status FROM links "
                "WHERE user_id = ? OR anonymous_id = ? ORDER BY linked_at, event_key",
                (who, anonymous_id),
            )
        ]

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        limit = max(1, min(limit, 1000))
        try:
            before = int(cursor) if cursor else 2**62
            if not 0 <= before < 2**63:  # SQLite's INTEGER
                raise ValueError(cursor)
        except ValueError:
            raise InvalidCursor(f"invalid cursor {cursor!r}") from None
        rows = self._db.execute(
            "SELECT * FROM dead_letters WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before, limit + 1),
        ).fetchall()
        items = [_dead_letter(row) for row in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        try:
            key = int(dead_letter_id)
        except ValueError:
            return None
        row = self._db.execute("SELECT * FROM dead_letters WHERE id = ?", (key,)).fetchone()
        return _dead_letter(row) if row else None

    def count_dead_letters(self) -> int:
        return self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]

    def active_users(self, since: float) -> int:
        return self._db.execute(
            "SELECT count(*) FROM profiles WHERE last_activity >= ?", (since,)
        ).fetchone()[0]

    def freshness(self) -> Freshness:
        row = self._db.execute(
            "SELECT newest_event_at, last_commit_at, lag_s FROM pipeline_state WHERE id = 1"
        ).fetchone()
        return Freshness(*row) if row else Freshness(None, None, None)

    def count_events(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    # -- verify -----------------------------------------------------------------------------

    def iter_raw_events(self) -> Iterator[Event]:
        cursor = self._connections.get().execute(f"SELECT {_EVENT_COLUMNS} FROM events")
        while rows := cursor.fetchmany(5000):
            for row in rows:
                yield _stored_event(row).event

    def snapshot(self) -> AggregateSnapshot:
        db = self._db
        snap = AggregateSnapshot()
        types: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for granularity, period, event_type, count in db.execute("SELECT * FROM bucket_types"):
            types[granularity, period][event_type] = count
        for granularity, period, total, uniques, _ in db.execute("SELECT * FROM buckets"):
            snap.buckets[granularity, period] = (total, types.get((granularity, period), {}))
            if granularity != "minute":
                snap.unique_users[granularity, period] = uniques
        snap.markers = {tuple(row) for row in db.execute("SELECT * FROM unique_markers")}  # type: ignore[misc]
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
        return snap

    def stored_links(self) -> list[Link]:
        return [Link(a, u, t, k, s) for a, k, u, t, s, _ in self._db.execute("SELECT * FROM links")]

    def rebuild(self, events: Iterator[Event]) -> None:
        counted = recount(events, self.stored_links(), self.rules, self.periods)
        now = self._clock()
        with transaction(self._db) as db:
            for table in ("buckets", "bucket_types", "unique_markers", "profiles", "profile_types"):
                db.execute(f"DELETE FROM {table}")
            self._apply(db, counted.deltas, now)
            self.behavior.write_recount(db, counted)

    def ping(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM pipeline_state LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._connections.close()


def _migrate(path: Path) -> None:
    """Bring tables from before identity stitching, bot flags and dead-letter fingerprints up
    to date."""
    if not path.exists():
        return
    db = connect(path)
    try:
        letters = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
        if letters and "fingerprint" not in letters:
            db.execute("ALTER TABLE dead_letters ADD COLUMN fingerprint TEXT")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if columns and "person" not in columns:
            with transaction(db):
                db.execute("ALTER TABLE events ADD COLUMN person TEXT NOT NULL DEFAULT ''")
                db.execute("ALTER TABLE events ADD COLUMN bot INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE events SET person = who")
                db.execute("DROP INDEX IF EXISTS events_by_who")
    finally:
        db.close()


_CHUNK_PARAMETERS = 30_000  # below SQLite's limit of 32,766 bound parameters per statement


def _insert_returning(
    db: sqlite3.Connection,
    table: str,
    width: int,
    rows: Sequence[tuple[Any, ...]],
    returning: str,
    on_conflict: str,
) -> list[Any]:
    """Multi-row INSERT … ON CONFLICT … RETURNING: what was actually created, in few calls."""
    created: list[Any] = []
    step = _CHUNK_PARAMETERS // width
    placeholder = "(" + ", ".join("?" * width) + ")"
    single = "," not in returning
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        sql = (
            f"INSERT INTO {table} VALUES {', '.join([placeholder] * len(chunk))} "
            f"ON CONFLICT {on_conflict} RETURNING {returning}"
        )
        params = [value for row in chunk for value in row]
        result = db.execute(sql, params).fetchall()
        created.extend(row[0] for row in result) if single else created.extend(result)
    return created


def _stored_event(row: Sequence[Any]) -> StoredEvent:
    (
        key,
        event_id,
        user_id,
        anonymous_id,
        event_type,
        timestamp,
        session_id,
        properties,
        received_at,
        processed_at,
    ) = row
    event = Event(
        key=key,
        event_id=event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event_type=event_type,
        timestamp=timestamp,
        session_id=session_id,
        properties=_decode(properties),
        received_at=received_at,
    )
    return StoredEvent(event, processed_at)


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    (
        id_,
        recorded_at,
        reason,
        detail,
        source,
        message_id,
        attributes,
        data,
        received_at,
        attempts,
        replayed_at,
        _,  # fingerprint
    ) = row
    return DeadLetter(
        reason=reason,
        detail=detail,
        data=bytes(data),
        message_id=message_id,
        attributes=json.loads(attributes),
        source=source,
        received_at=received_at,
        attempts=json.loads(attempts),
        id=str(id_),
        recorded_at=recorded_at,
        replayed_at=replayed_at,
    )
