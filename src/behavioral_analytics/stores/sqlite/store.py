"""The read model on one SQLite file, the embedded default: `SQLiteStore`, the facade the rest
of the program holds.

The store is composed of parts, each in its own module, layered so that none imports one
above it:

  schema, sql, rows               tables, shared upserts, migration; multi-row inserts and
                                  JSON parameters; rows read back as the port's types
  aggregates, dirty               buckets, markers and profiles by deltas; what a batch changed
  identity, sessions, funnels     links and the moves they cause; sessions; funnel progress
  behavior                        the behavioral side of a commit, over those three
  reads, audit, forget            the read side; verify and rebuild; `forget USER` and
                                  tombstones
  commit                          one write transaction per batch
  store                           this facade

Every connection is per thread (`sqlite_util.PerThreadConnection`); every write is one
`BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.sqlite_util import PerThreadConnection, transaction
from behavioral_analytics.store import (
    AggregateSnapshot,
    CommitResult,
    DeadLetter,
    ForgetReport,
    Freshness,
    FunnelDay,
    NewDeadLetter,
    Page,
    Profile,
    SeriesPoint,
    SessionPoint,
    Store,
    StoredEvent,
    StoreError,
)
from behavioral_analytics.stores.sqlite import audit
from behavioral_analytics.stores.sqlite.behavior import SQLiteBehavior
from behavioral_analytics.stores.sqlite.commit import commit_batch, insert_dead_letters
from behavioral_analytics.stores.sqlite.forget import forget
from behavioral_analytics.stores.sqlite.reads import Reads
from behavioral_analytics.stores.sqlite.schema import SCHEMA, migrate

__all__ = ["SQLiteStore"]


class SQLiteStore(Store):
    """The `Store` on the SQLite file at `path` (created with its directory if missing),
    counting periods in `timezone`, keeping raw events `raw_retention_s` seconds, under
    `rules`; `clock` gives the time (epoch seconds) commits are stamped with."""

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
        migrate(path)
        self._connections = PerThreadConnection(path, SCHEMA)
        self._reads = Reads(self._connections, self.rules, self.periods, clock)

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
        db = self._db
        try:
            return commit_batch(
                db,
                events,
                dead_letters,
                now=now,
                raw_retention_s=self.raw_retention_s,
                periods=self.periods,
                behavior=self.behavior,
            )
        except sqlite3.OperationalError as exc:
            raise StoreError(f"commit to {self.path} failed: {exc}") from exc

    def forget(self, who: str) -> ForgetReport:
        with transaction(self._db) as db:
            return forget(db, who, self._clock(), self.behavior.rules, self.behavior.periods)

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> None:
        if dead_letters:
            with transaction(self._db) as db:
                insert_dead_letters(db, dead_letters, self._clock())

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
        return self._reads.profile(who)

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        return self._reads.timeline(who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        return self._reads.events_by_type(event_type, limit, cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        return self._reads.get_events(keys)

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        return self._reads.series(granularity, start, end)

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        return self._reads.session_series(granularity, start, end)

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        return self._reads.funnel(name, start, end)

    def links(self, who: str) -> list[Link]:
        return self._reads.links(who)

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        return self._reads.dead_letters(limit, cursor)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return self._reads.get_dead_letter(dead_letter_id)

    def count_dead_letters(self) -> int:
        return self._reads.count_dead_letters()

    def active_users(self, since: float) -> int:
        return self._reads.active_users(since)

    def freshness(self) -> Freshness:
        return self._reads.freshness()

    def count_events(self) -> int:
        return self._reads.count_events()

    # -- verify -----------------------------------------------------------------------------

    def iter_raw_events(self) -> Iterator[Event]:
        yield from audit.raw_events(self._connections.get())

    def snapshot(self) -> AggregateSnapshot:
        return audit.snapshot(self._db)

    def stored_links(self) -> list[Link]:
        return audit.stored_links(self._db)

    def rebuild(self, events: Iterator[Event]) -> None:
        counted = recount(events, self.stored_links(), self.rules, self.periods)
        now = self._clock()
        with transaction(self._db) as db:
            audit.write_recount(db, counted, now)

    def ping(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM pipeline_state LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._connections.close()
