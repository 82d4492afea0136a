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
  metadata                        the configuration recorded with the data; funnel backfill
  groups, key_rule                group calls' tables; the key rule's version recorded
  commit                          one write transaction per batch
  checkpoints                     the write-ahead log's checkpoint after each commit, on a
                                  thread of its own
  store                           this facade

Every connection is per thread (`sqlite_util.PerThreadConnection`); every write is one
`BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace as dataclass_replace
from pathlib import Path

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link, relinked
from behavioral_analytics.named_calls import Group
from behavioral_analytics.retention import DEFAULT_MAX_OFFSET, RetentionCohort, Unit, plan
from behavioral_analytics.session_breakdowns import session_dimensions
from behavioral_analytics.shared_values import shared_events
from behavioral_analytics.sqlite_util import (
    AsItStands,
    PerThreadConnection,
    access_problem,
    erase_log_copies,
    transaction,
)
from behavioral_analytics.store import (
    AggregateSnapshot,
    BreakdownPoint,
    CommitAbandoned,
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
from behavioral_analytics.stored_config import StoredConfig, before_record, recounted_dimensions
from behavioral_analytics.stores.sqlite import audit, files
from behavioral_analytics.stores.sqlite.behavior import SQLiteBehavior
from behavioral_analytics.stores.sqlite.breakdowns import (
    BREAKDOWN_SCHEMA,
    backfill_breakdowns,
    delete_breakdowns,
    read_breakdown,
    rebuild_breakdowns,
)
from behavioral_analytics.stores.sqlite.checkpoints import Checkpoints
from behavioral_analytics.stores.sqlite.commit import commit_batch, insert_dead_letters
from behavioral_analytics.stores.sqlite.dead_letters import purge_dead_letters, purged_counts
from behavioral_analytics.stores.sqlite.derived_parsers import drop_unreferenced
from behavioral_analytics.stores.sqlite.forget import forget
from behavioral_analytics.stores.sqlite.groups import GROUPS_SCHEMA, forget_members, read_group
from behavioral_analytics.stores.sqlite.key_rule import read_key_rules
from behavioral_analytics.stores.sqlite.layout import hold_layout, record_layout, refuse_other
from behavioral_analytics.stores.sqlite.metadata import (
    METADATA_SCHEMA,
    backfill_funnels,
    read_config,
    write_config,
)
from behavioral_analytics.stores.sqlite.reads import Reads
from behavioral_analytics.stores.sqlite.retention import retention as read_retention
from behavioral_analytics.stores.sqlite.scan import scan_events
from behavioral_analytics.stores.sqlite.schema import SCHEMA, migrate

__all__ = ["SQLiteStore"]


class SQLiteStore(Store):
    """The `Store` on the SQLite file at `path` (created with its directory if missing),
    counting periods in `timezone`, keeping raw events `raw_retention_s` seconds, under
    `rules`; `clock` gives the time (epoch seconds) commits are stamped with.

    With `reading`, for a process that reads the file apart (`sqlite_util.reads_apart`):
    every connection only reads (`sqlite_util.connect_reading`), nothing is created, migrated
    or numbered, and a write fails with SQLite's SQLITE_READONLY (`sqlite_util.is_read_only`,
    `access_problem`). Raises StoreError (one line) when there is no store to read there, or
    its layout is not this release's (`layout.refuse_other`)."""

    behavioral = True
    keeps_breakdowns = True
    commits_in_process = True

    def __init__(
        self,
        path: Path,
        *,
        timezone: str = "UTC",
        raw_retention_s: float = 30 * 86400.0,
        dead_letter_retention_s: float | None = 30 * 86400.0,
        rules: BehaviorRules | None = None,
        clock: Callable[[], float] = time.time,
        reading: bool = False,
    ) -> None:
        self.path = path
        self.periods = Periods(timezone)
        self.raw_retention_s = raw_retention_s
        self.dead_letter_retention_s = dead_letter_retention_s
        self.rules: BehaviorRules = rules or BehaviorRules()
        self.behavior = SQLiteBehavior(self.rules, self.periods)
        self.config = StoredConfig.of(self.rules, timezone)
        self._clock = clock
        self._checkpoints = Checkpoints(path)
        new = files.check_before_open(path)
        if new and reading:
            raise StoreError(
                f"no store at {path} yet, and a command that only reads creates none there: "
                "start a worker (or `behavioral-analytics init`) as the user the folder is for"
            )
        files.note_open(path)

        def opened() -> PerThreadConnection:
            if reading:
                connections = PerThreadConnection(path, reading=True)
                refuse_other(connections.get(), path)
                return connections
            migrate(path)
            connections = PerThreadConnection(
                path, SCHEMA + METADATA_SCHEMA + GROUPS_SCHEMA + BREAKDOWN_SCHEMA
            )
            record_layout(connections.get())
            return connections

        # Workers starting together create the same new store: a lock, not damage.
        self._connections = files.waiting_out_locks(path, opened)
        if new:
            files.mark_created(path)
        self._reads = Reads(self._connections, self.rules, self.periods, clock)

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    @property
    def reads_as_it_stands(self) -> bool:
        """Whether this thread's connection reads the file as it stands, without locks
        (`sqlite_util.connect_reading`): no worker had it open when it was opened."""
        return isinstance(self._db, AsItStands)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection, refused (`layout.hold_layout`:
        ConfigChanged, nothing written) once a newer release has upgraded the file."""
        with transaction(self._db) as db:
            hold_layout(db)
            yield db

    def init(self) -> list[str]:
        self.check_files()
        return [f"store ready at {self.path} (every page checked)"]

    def check_files(self) -> None:
        """The file's header, size and every page (`files.quick_check`: time in proportion
        to the file). Raises StoreError naming the file and what to do."""
        files.check_header(self.path)
        files.quick_check(self._db, self.path)

    # -- writes -----------------------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        now = self._clock()
        db = self._db
        checkpoints = self._checkpoints
        try:
            checkpoints.before_commit(db)
            result = commit_batch(
                db,
                events,
                dead_letters,
                now=now,
                raw_retention_s=self.raw_retention_s,
                periods=self.periods,
                behavior=self.behavior,
                config=self.config,
                dead_letter_retention_s=self.dead_letter_retention_s,
                before_write=checkpoints.wait,
                waiting=None if give_up is None else _waiting(give_up, self.path),
            )
        except sqlite3.OperationalError as exc:
            problem = access_problem(self.path, exc) or f"{self.path}: {exc}"
            raise StoreError(f"commit failed: {problem}") from exc
        checkpoints.after_commit()
        return result

    def forget(self, who: str) -> ForgetReport:
        """Forget `who` (see the port). The deleted rows are overwritten, not just unlinked
        (`secure_delete`, on for every connection: `sqlite_util.PRAGMAS`), and the write-ahead
        log that held their old pages is checkpointed and truncated, so the file keeps no copy
        (`sqlite_util.erase_log_copies`). A checkpoint this process runs after a commit is
        waited for first: one running beside the truncation would keep the log (`checkpoints`)."""
        self._checkpoints.wait()
        with self._writing() as db:
            report = forget(db, who, self._clock(), self.behavior.rules, self.behavior.periods)
            forget_members(db, report.persons)
        erase_log_copies(db, self.path)
        return report

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> int:
        if not dead_letters:
            return 0
        with self._writing() as db:
            return insert_dead_letters(
                db, dead_letters, self._clock(), self.dead_letter_retention_s
            )

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        with self._writing() as db:
            db.executemany(
                "UPDATE dead_letters SET replayed_at = ? WHERE id = ?",
                [(when, int(i)) for i in dead_letter_ids],
            )

    def purge_expired(self, now: float) -> int:
        """Delete expired raw events (returns how many), the parsers only they named
        (`derived_parsers.drop_unreferenced`) and expired dead letters."""
        with self._writing() as db:
            purge_dead_letters(db, now)
            named: set[int | None] = set()
            deleted = 0
            for (parsers_id,) in db.execute(
                "DELETE FROM events WHERE expire_at < ? RETURNING parsers_id", (now,)
            ):
                named.add(parsers_id)
                deleted += 1
            drop_unreferenced(db, named)
            return deleted

    def purge_dead_letters(self, now: float, before: float | None = None) -> dict[str, int]:
        with self._writing() as db:
            purge_dead_letters(db, now, before)
            return purged_counts(db)

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

    def retention(
        self,
        start_day: str,
        end_day: str,
        max_offset: int = DEFAULT_MAX_OFFSET,
        unit: Unit = "day",
        start_event: str | None = None,
    ) -> list[RetentionCohort]:
        now, retention_s = self._clock(), self.raw_retention_s
        read = plan(
            self.periods,
            start_day,
            end_day,
            max_offset,
            unit,
            now=now,
            raw_retention_s=retention_s,
            start_event=start_event,
        )
        return read_retention(self._db, self.periods, read)

    def scan_events(self, start_s: float, end_s: float, limit: int) -> list[Event]:
        now, retention_s = self._clock(), self.raw_retention_s
        return scan_events(
            self._db, self.periods, start_s, end_s, limit, now=now, raw_retention_s=retention_s
        )

    def breakdown(
        self,
        dimension: str,
        granularity: Granularity,
        start: str | None = None,
        end: str | None = None,
    ) -> list[BreakdownPoint]:
        return read_breakdown(self._db, dimension, granularity, start or "", end or "\uffff")

    def links(self, who: str) -> list[Link]:
        return self._reads.links(who)

    def group(self, group_id: str) -> Group | None:
        return read_group(self._db, group_id, self.periods)

    def key_rules(self) -> list[int]:
        """The key rule versions that have written the store, oldest first (`key_rule`)."""
        return read_key_rules(self._db)

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
        return audit.snapshot(self._db, self.rules.breakdowns.dimensions)

    @contextmanager
    def consistent_reads(self) -> Iterator[None]:
        # A deferred read transaction: in WAL mode it reads the state of its first read until
        # it ends, whatever other processes commit meanwhile.
        db = self._db
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    def stored_links(self) -> list[Link]:
        return audit.stored_links(self._db)

    def rebuild(self, events: Iterator[Event]) -> None:
        retained = list(events)
        stored = self.stored_links()
        links = relinked(stored, self.rules.allow_relink)
        counted = recount(retained, links, self.rules, self.periods)
        now = self._clock()
        with self._writing() as db:
            audit.write_link_statuses(db, stored, links)
            audit.write_recount(db, counted, now)
            rebuild_breakdowns(db, retained, counted.persons, self.periods, self.rules.breakdowns)

    def recorded_config(self) -> StoredConfig | None:
        hold_layout(self._db)  # the API's watch reads it: a newer layout stops the API too
        return read_config(self._db)

    def record_config(self, funnels_added: Sequence[str] = (), *, replace: bool = False) -> None:
        with self._writing() as db:
            recorded = read_config(db)
            if recorded == self.config:
                return  # another process got there first
            added = [n for n in funnels_added if recorded is None or recorded.funnel(n) is None]
            if recorded is not None and not replace:
                kept = tuple(f for f in self.config.funnels if f.name not in added)
                dimensions = tuple(
                    d
                    for d in self.config.breakdown_dimensions
                    if d in recorded.breakdown_dimensions
                )
                before = dataclass_replace(
                    self.config,
                    funnels=kept,
                    breakdown_dimensions=dimensions,
                    # what a record with no breakdown yet says of the values is moot
                    breakdown_values=recorded.breakdown_values
                    if not recorded.breakdown_dimensions
                    else self.config.breakdown_values,
                )
                if recorded != before:
                    raise StoreError(
                        "the store's recorded configuration differs from this one by more than "
                        "added funnels and breakdown dimensions: use `config apply`"
                    )
            if added:
                events = shared_events(audit.raw_events(db))
                links = audit.stored_links(db)
                backfill_funnels(db, added, events, links, self.rules, self.periods)
            if recorded is None and db.execute("SELECT 1 FROM events LIMIT 1").fetchall():
                recorded = before_record(self.config)
            if recorded is not None:
                self._recount_breakdowns(db, recorded)
            write_config(db, self.config, self._clock())

    def _recount_breakdowns(self, db: sqlite3.Connection, recorded: StoredConfig) -> None:
        """Bring the breakdowns from `recorded`'s dimensions and values admitted to this
        store's: delete the dimensions dropped, count the ones added (all of them when the
        values admitted change) from the raw events."""
        config = self.config
        # With entry and exit pages, which go with the last dimension (`session_dimensions`).
        kept = session_dimensions(BreakdownRules(config.breakdown_dimensions))
        dropped = [
            d
            for d in session_dimensions(BreakdownRules(recorded.breakdown_dimensions))
            if d not in kept
        ]
        if not kept and dropped:
            db.execute("UPDATE sessions SET vals = NULL WHERE vals IS NOT NULL")
        delete_breakdowns(db, dropped)
        recount = recounted_dimensions(recorded, config)
        if recount:
            backfill_breakdowns(
                db,
                recount,
                shared_events(audit.raw_events(db)),
                self.periods,
                self.rules.breakdowns,
            )

    def ping(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM pipeline_state LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._checkpoints.close()
        self._connections.close()


def _waiting(give_up: Callable[[], bool], path: Path) -> Callable[[], None]:
    """What a commit runs between tries at the write lock (`sqlite_util.transaction`): raises
    CommitAbandoned once `give_up` says so."""

    def waiting() -> None:
        if give_up():
            raise CommitAbandoned(f"{path}: another process held the write lock; gave up waiting")

    return waiting
