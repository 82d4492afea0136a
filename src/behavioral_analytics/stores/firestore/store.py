"""The read model on Firestore, in the seed recipe's layout: `FirestoreStore`, the facade the
rest of the program holds.

The store is composed of parts, each in its own module, layered so that none imports one
above it:

  schema, keys, wire              layout and limits; safe names; the `firestore.v1` protobufs
  identity, behavior              pure: identity links as stored; sessions and funnels per person
  documents                       documents as Python values
  gateway, options                the way to the database (reads, commit requests, counters);
                                  what the store was built with
  people, plan                    reading people and their events; who each event counts for
  profile_writes, person_writes   a commit's profile writes (without / with the behavioral
                                  read model)
  commit                          split, build, commit atomically, retry on conflict
  reads, audit, forget            the read side; verify and rebuild; `forget USER`
  reach                           the database id checked; requests at open, and reads at
                                  query time, bounded in time
  metadata                        the configuration recorded with the data
  groups, key_rule                group calls' documents; the key rule's version recorded
  store                           this facade

The commit path builds the `firestore.v1` protobufs itself (`wire`) and sends them through
the client's own GAPIC stub (`gateway`): the client library's per-field proto-plus
marshalling cost several times the commit itself (see docs/gcp.md, "Throughput"). With the
behavioral read model a commit first plans who each event counts for (`plan`: tombstones,
identity links, the stored events a changed link moves; `identity`), then recomputes
sessions and funnels per person (`person_writes`, `behavior`).

The parts share one `Gateway` (and its counters) and one `StoreOptions`; the facade's
attributes of the same names (`behavioral`, `max_request_bytes`, `write_ops`, …) read and
set them there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace as dataclass_replace

from google.cloud import firestore

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.named_calls import Group
from behavioral_analytics.retention import DEFAULT_MAX_OFFSET, RetentionCohort, Unit, plan
from behavioral_analytics.store import (
    AggregateSnapshot,
    BreakdownPoint,
    CommitResult,
    DeadLetter,
    ForgetReport,
    Freshness,
    FunnelDay,
    NewDeadLetter,
    NotSupported,
    Page,
    Profile,
    SeriesPoint,
    SessionPoint,
    Store,
    StoredEvent,
    StoreError,
)
from behavioral_analytics.stored_config import StoredConfig, before_record, recounted_dimensions
from behavioral_analytics.stores.firestore.audit import Audit
from behavioral_analytics.stores.firestore.commit import Committer
from behavioral_analytics.stores.firestore.forget import forget
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.groups import forget_members, read_group
from behavioral_analytics.stores.firestore.key_rule import KeyRuleDocument
from behavioral_analytics.stores.firestore.metadata import ConfigDocument
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.people import People
from behavioral_analytics.stores.firestore.reach import (
    ADMIN_READ_DEADLINE_S,
    ADMIN_WRITE_DEADLINE_S,
    OPEN_DEADLINE_S,
    PING_TIMEOUT_S,
    QUERY_DEADLINE_S,
    Reach,
    check_database_id,
)
from behavioral_analytics.stores.firestore.reads import Reads
from behavioral_analytics.stores.firestore.retention import retention as read_retention
from behavioral_analytics.stores.firestore.scan import scan_events
from behavioral_analytics.stores.firestore.schema import (
    DEFAULT_MARKER_RETENTION_S,
    EVENTS,
    FRESHNESS,
    MAX_REQUEST_BYTES,
    MAX_TRANSFORMS_PER_DOC,
    STATE,
)

__all__ = ["FirestoreStore"]


class FirestoreStore(Store):
    """The `Store` port on Firestore.

    `client` is a `google.cloud.firestore.Client` of the database named `database`;
    `timezone` an IANA name for the reporting buckets; retentions in seconds (raw events:
    the TTL written into each; markers: how long a unique-user marker must outlive the
    oldest event that can still be counted, raised to the raw retention plus two days);
    `counter_shards` 0 for single bucket documents, else the number of shards a bucket's
    counts spread over; `max_request_bytes` and `max_transforms_per_doc` keep commits under
    Firestore's limits (10 MiB per request, 500 field transforms per document);
    `timeout_s` bounds every request; `open_deadline_s` the requests made when a process opens
    the store (its recorded configuration and key rule), retries included, after which they
    raise `TransientStoreError` naming the database; `query_deadline_s` each read made after
    that, at query time (queries, `dlq`'s reads and `mark_replayed`), likewise;
    `admin_read_deadline_s` each read of `verify` (`snapshot`, `iter_raw_events`) and
    `admin_write_deadline_s` each request of `rebuild` and `forget`, likewise; `rules` the
    behavioral rules (sessions, funnels, identity); `behavior=False` turns the behavioral read
    model off (BA_FIRESTORE_BEHAVIOR=false) and the store counts as before.

    Raises StoreError when the client's database id is not one Firestore accepts.
    Methods raise as the port says: `TransientStoreError` (retry), `StoreError`,
    `NotSupported` for behavioral reads without the behavioral read model.
    """

    keeps_breakdowns = True  # with the behavioral read model (`verify` recounts them then)

    def __init__(
        self,
        client: firestore.Client,
        *,
        timezone: str = "UTC",
        raw_retention_s: float = 30 * 86400.0,
        marker_retention_s: float = DEFAULT_MARKER_RETENTION_S,
        counter_shards: int = 0,
        clock: Callable[[], float] = time.time,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_transforms_per_doc: int = MAX_TRANSFORMS_PER_DOC,
        timeout_s: float = 30.0,
        database: str = "(default)",
        rules: BehaviorRules | None = None,
        behavior: bool = True,
        dead_letter_retention_s: float = 30 * 86400.0,
        open_deadline_s: float = OPEN_DEADLINE_S,
        query_deadline_s: float = QUERY_DEADLINE_S,
        admin_read_deadline_s: float = ADMIN_READ_DEADLINE_S,
        admin_write_deadline_s: float = ADMIN_WRITE_DEADLINE_S,
    ) -> None:
        try:
            check_database_id(client._database)
        except StoreError:
            client.close()  # type: ignore[no-untyped-call]  # unannotated in the library
            raise
        self.options = StoreOptions(
            dead_letter_retention_s=dead_letter_retention_s,
            timezone=timezone,
            raw_retention_s=raw_retention_s,
            marker_retention_s=marker_retention_s,
            counter_shards=counter_shards,
            clock=clock,
            max_request_bytes=max_request_bytes,
            max_transforms_per_doc=max_transforms_per_doc,
            rules=rules,
            behavior=behavior,
        )
        self.database = database
        self.reach = Reach(
            client,
            timeout_s=timeout_s,
            deadline_s=open_deadline_s,
            query_deadline_s=query_deadline_s,
            admin_read_deadline_s=admin_read_deadline_s,
            admin_write_deadline_s=admin_write_deadline_s,
        )
        self.gateway = Gateway(client, timeout_s, self.reach.bound)
        self._people = People(self.gateway, self.options)
        self._committer = Committer(self.gateway, self.options, self._people)
        self._reads = Reads(self.gateway, self.options)
        self._audit = Audit(self.gateway, self.options)
        self._metadata = ConfigDocument(client, self.reach)
        self._key_rule = KeyRuleDocument(client, self.reach)

    # -- what the store was built with (shared by its parts; tests change some) -------------

    @property
    def behavioral(self) -> bool:
        """Bots, sessions, funnels, identity links and forget (the behavioral read model)."""
        return self.options.behavioral

    @behavioral.setter
    def behavioral(self, value: bool) -> None:
        self.options.behavioral = value

    @property
    def rules(self) -> BehaviorRules:
        """Sessions, funnels and identity rules."""
        return self.options.rules

    @rules.setter
    def rules(self, value: BehaviorRules | None) -> None:
        self.options.rules = value or BehaviorRules()

    @property
    def config(self) -> StoredConfig:
        """What shapes the numbers this store writes (recorded by its first commit)."""
        return StoredConfig.of(self.options.rules, self.options.periods.timezone)

    @property
    def periods(self) -> Periods:
        """The reporting buckets (minute, hour, day in the store's time zone)."""
        return self.options.periods

    @property
    def raw_retention_s(self) -> float:
        """Seconds a raw event is kept (its TTL)."""
        return self.options.raw_retention_s

    @property
    def marker_retention_s(self) -> float:
        """Seconds a unique-user marker is kept."""
        return self.options.marker_retention_s

    @property
    def counter_shards(self) -> int:
        """Shards a bucket's counts spread over (0: single documents)."""
        return self.options.counter_shards

    @property
    def max_request_bytes(self) -> int:
        """A commit request's size budget, in bytes."""
        return self.options.max_request_bytes

    @max_request_bytes.setter
    def max_request_bytes(self, value: int) -> None:
        self.options.max_request_bytes = value

    @property
    def max_transforms_per_doc(self) -> int:
        """Field transforms per document and commit, at most."""
        return self.options.max_transforms_per_doc

    @max_transforms_per_doc.setter
    def max_transforms_per_doc(self, value: int) -> None:
        self.options.max_transforms_per_doc = value

    @property
    def timeout_s(self) -> float:
        """Seconds a request may take."""
        return self.gateway.timeout_s

    @property
    def db(self) -> firestore.Client:
        """The Firestore client."""
        return self.gateway.client

    # -- counters (benchmarks and tests) ----------------------------------------------------

    @property
    def write_ops(self) -> int:
        """Document writes in successful commits (what Firestore bills)."""
        return self.gateway.counters.write_ops

    @property
    def commits(self) -> int:
        """Successful atomic commits."""
        return self.gateway.counters.commits

    @property
    def conflicts(self) -> int:
        """Commits refused (ALREADY_EXISTS, stale profile) and recomputed."""
        return self.gateway.counters.conflicts

    @property
    def behavior_queries(self) -> int:
        """Per-person raw-event queries (the digest did not reach)."""
        return self.gateway.counters.behavior_queries

    @property
    def identity_queries(self) -> int:
        """Raw-event queries for events a changed link moves."""
        return self.gateway.counters.identity_queries

    # -- the port ---------------------------------------------------------------------------

    def init(self) -> list[str]:
        return [
            f"Firestore database {self.database!r}: nothing to create; its composite indexes "
            f"and the TTL policies on {EVENTS}, dead_letters and delivery_failures (expire_at) "
            "come with the deployment (Terraform, Infrastructure Manager or scripts/deploy.sh, "
            "from firestore.indexes.json; docs/gcp.md)"
        ]

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,  # no write lock to wait for: never asked
    ) -> CommitResult:
        self._metadata.hold(self.config)
        self._key_rule.hold()
        return self._committer.commit(events, dead_letters)

    def recorded_config(self) -> StoredConfig | None:
        return self._metadata.read()

    def record_config(self, funnels_added: Sequence[str] = (), *, replace: bool = False) -> None:
        config, recorded = self.config, self._metadata.read()
        if recorded == config:
            return
        added = [n for n in funnels_added if recorded is None or recorded.funnel(n) is None]
        if recorded is not None and not replace:
            kept = tuple(f for f in config.funnels if f.name not in added)
            dimensions = tuple(
                d for d in config.breakdown_dimensions if d in recorded.breakdown_dimensions
            )
            before = dataclass_replace(
                config,
                funnels=kept,
                breakdown_dimensions=dimensions,
                # what a record with no breakdown yet says of the values is moot
                breakdown_values=recorded.breakdown_values
                if not recorded.breakdown_dimensions
                else config.breakdown_values,
            )
            if recorded != before:
                raise StoreError(
                    "the store's recorded configuration differs from this one by more than "
                    "added funnels and breakdown dimensions: use `config apply`"
                )
            if added and self.count_events():
                raise NotSupported(
                    f"adding funnel {added[0]!r} to a Firestore store that holds events "
                    "recomputes its figures: stop the workers, then run `behavioral-analytics "
                    "config apply`"
                )
        if recorded is None and self.count_events():
            recorded = before_record(config)
        if recorded is not None and self.behavioral:
            dropped = [
                d for d in recorded.breakdown_dimensions if d not in config.breakdown_dimensions
            ]
            self._audit.recount_dimensions(dropped, recounted_dimensions(recorded, config))
        self._metadata.write(config)

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> int:
        return self._committer.add_dead_letters(dead_letters)

    # Reads at query time (and `mark_replayed`, `dlq replay`'s write) are made with
    # `reach.bound` and run under `reach.querying`: each gives up after `query_deadline_s`
    # with one line naming the database and where it is.

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        with self.reach.querying("dead-letter update"):
            self._committer.mark_replayed(dead_letter_ids, when)

    def profile(self, who: str) -> Profile | None:
        with self.reach.querying("profile read"):
            return self._reads.profile(who)

    def links(self, who: str) -> list[Link]:
        with self.reach.querying("identity links read"):
            return self._reads.links(who)

    def stored_links(self) -> list[Link]:
        with self.reach.querying("identity links read"):
            return self._reads.stored_links()

    def group(self, group_id: str) -> Group | None:
        with self.reach.querying(f"read of group {group_id!r}"):
            return read_group(self.gateway, group_id, self.periods)

    def key_rules(self) -> list[int]:
        """The key rule versions that have written the store, oldest first (`key_rule`)."""
        return self._key_rule.read()

    def forget(self, who: str) -> ForgetReport:
        """Each request retried within `admin_write_deadline_s`; then one line naming the
        database, saying that each step made is complete and the same `forget` finishes."""
        then = "; each step it made is complete: run the same forget again to finish"
        with self._administering(f"forget of {who!r}", write=True, then=then):
            report = forget(who, self.gateway, self.options, self._people)
            forget_members(self.gateway, report.persons)
            return report

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        with self.reach.querying("timeline read"):
            return self._reads.timeline(who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        with self.reach.querying("events read"):
            return self._reads.events_by_type(event_type, limit, cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        with self.reach.querying("events read"):
            return self._reads.get_events(keys)

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        with self.reach.querying("series read"):
            return self._reads.series(granularity, start, end)

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        if not self.behavioral:
            return super().session_series(granularity, start, end)
        with self.reach.querying("sessions read"):
            return self._reads.session_series(granularity, start, end)

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        if not self.behavioral:
            return super().funnel(name, start, end)
        with self.reach.querying("funnel read"):
            return self._reads.funnel(name, start, end)

    def retention(
        self,
        start_day: str,
        end_day: str,
        max_offset: int = DEFAULT_MAX_OFFSET,
        unit: Unit = "day",
        start_event: str | None = None,
    ) -> list[RetentionCohort]:
        now, retention_s = self.options.clock(), self.raw_retention_s
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
        with self.reach.querying("retention read"):
            return read_retention(self.gateway, self.periods, read)

    def scan_events(self, start_s: float, end_s: float, limit: int) -> list[Event]:
        now, retention_s = self.options.clock(), self.raw_retention_s
        with self.reach.querying("scan of raw events"):
            gateway, reads, periods = self.gateway, self._reads, self.periods
            return scan_events(
                gateway, reads, periods, start_s, end_s, limit, now=now, raw_retention_s=retention_s
            )

    def breakdown(
        self,
        dimension: str,
        granularity: Granularity,
        start: str | None = None,
        end: str | None = None,
    ) -> list[BreakdownPoint]:
        self.options.need_behavior("breakdowns")
        with self.reach.querying("read of breakdowns"):
            return self._reads.breakdown(dimension, granularity, start, end)

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        with self.reach.querying("dead letters read"):
            return self._reads.dead_letters(limit, cursor)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        with self.reach.querying("dead letter read"):
            return self._reads.get_dead_letter(dead_letter_id)

    def count_dead_letters(self) -> int:
        with self.reach.querying("dead letters count"):
            return self._reads.count_dead_letters()

    def active_users(self, since: float) -> int:
        with self.reach.querying("active users count"):
            return self._reads.active_users(since)

    def freshness(self) -> Freshness:
        with self.reach.querying("freshness read"):
            return self._reads.freshness()

    def count_events(self) -> int:
        """How many raw events are stored (a count aggregation query)."""
        with self.reach.querying("raw events count"):
            return self._reads.count_events()

    # `verify`'s reads (`snapshot`, `iter_raw_events`) are each retried within
    # `admin_read_deadline_s`, `rebuild`'s and `forget`'s requests within
    # `admin_write_deadline_s`; then one line names the database and where it is.

    def iter_raw_events(self) -> Iterator[Event]:
        """Every raw event, each page read within `admin_read_deadline_s` (also in a
        rebuild: it reads them all before it writes)."""
        reach = self.reach
        with reach.administering("verify read of the raw events", reach.admin_read_deadline_s):
            yield from self._audit.iter_raw_events(reach.admin_read_bound)

    def snapshot(self) -> AggregateSnapshot:
        """Every aggregate, each page read within `admin_read_deadline_s`."""
        with self._administering("verify read of the aggregates"):
            return self._audit.snapshot()

    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace the aggregates by the fold of `events` (with the behavioral read model, by
        `behavior.recount` of them). Not atomic: stop the workers first. Each request retried
        within `admin_write_deadline_s`; then one line naming the database and saying that
        `verify --repair` finishes (what it leaves: `audit.Audit.rebuild`)."""
        self._committer.profiles.forget_known()
        then = (
            "; nothing was lost (links and tombstones are kept throughout): run "
            "`behavioral-analytics verify --repair` again to finish the rebuild"
        )
        with self._administering("rebuild of the aggregates", write=True, then=then):
            self._audit.rebuild(events)

    def drop_copies(self, digests: Sequence[str], lists: Sequence[str]) -> None:
        """Mark the digests of recent events of the persons `digests` and the event lists of the
        anonymous actors `lists` as not kept (`audit.Audit.drop_copies`). Stop the workers
        first. Each request retried within `admin_write_deadline_s`."""
        self._committer.profiles.forget_known()
        with self._administering("drop of the kept copies of raw events", write=True):
            self._audit.drop_copies(digests, lists)

    @contextmanager
    def _administering(self, what: str, *, write: bool = False, then: str = "") -> Iterator[None]:
        """`reach.administering` of `what`, its requests made with the reach's admin read
        bound, or with `write`, its admin write bound."""
        reach = self.reach
        if write:
            deadline_s, bound = reach.admin_write_deadline_s, reach.admin_write_bound
        else:
            deadline_s, bound = reach.admin_read_deadline_s, reach.admin_read_bound
        with reach.administering(what, deadline_s, then), self.gateway.bounded(bound):
            yield

    def ping(self) -> None:
        """A read, retried within `PING_TIMEOUT_S` in all (the worker pings to learn whether
        the store is down). Raises StoreError naming the database and where it is."""
        document = self.db.collection(STATE).document(FRESHNESS)
        self.reach.call(
            "ping",
            lambda timeout: document.get(timeout=timeout, retry=None),
            deadline_s=PING_TIMEOUT_S,
        )

    def close(self) -> None:
        self.gateway.close()
