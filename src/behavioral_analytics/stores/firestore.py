"""The read model on Firestore, in the seed recipe's layout.

A commit is one atomic commit request (the `WriteBatch` semantics): `create()` for every raw
event (so a redelivered event fails the batch with ALREADY_EXISTS instead of being counted
twice) and one write per aggregate document touched (the fold has already merged the batch per
document) with `Increment`/`Minimum`/`Maximum` transforms. Unique users per hour and day are
markers kept in the user's profile document (`unique_hours`, `unique_days`), which the flush
writes anyway: the store reads the profiles first, and a profile that gains a marker is written
with a precondition (its update time as read, or create() when absent). A concurrent change
fails the whole batch (FAILED_PRECONDITION or ALREADY_EXISTS); the store then reads which raw
events exist, drops them, re-reads the profiles, recomputes and commits again. Collections:

  user_events/{event key}                 canonical event, TTL field `expire_at`
  analytics_aggregates/user_{who}         profile (kind=user) with its unique-user markers;
                                          an anonymous actor's also holds its identity links
                                          (kind=person when no event counts for it)
  analytics_aggregates/minute_|hourly_|daily_{period}   buckets (kind=bucket)
  analytics_aggregates/…{period}_shard{k} counter shards of a bucket (BA_FIRESTORE_COUNTER_SHARDS)
  dead_letters/{hash}                     rejected and dead-lettered messages
  pipeline_state/freshness[_shard{k}]     newest event time, last commit

The commit path builds the `firestore.v1` protobufs itself (`firestore_wire`) and sends them
through the client's own GAPIC stub: the client library's per-field proto-plus marshalling cost
several times the commit itself (see docs/gcp.md, "Throughput"). With the behavioral read model
a commit first plans who each event counts for (`_plan`: tombstones, identity links, the
stored events a changed link moves; `firestore_identity`), then recomputes sessions and
funnels per person (`firestore_behavior`); `forget` is in `firestore_forget`.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from math import inf
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import firestore as request_types

from behavioral_analytics.aggregation import (
    UNIQUE_GRANULARITIES,
    BucketDelta,
    Deltas,
    Granularity,
    Periods,
    ProfileDelta,
    fold,
)
from behavioral_analytics.behavior import BehaviorRules, as_person, recount
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event, actor
from behavioral_analytics.identity import Link, attribute, coverage, proposal
from behavioral_analytics.sessions import SessionDelta, SessionStats
from behavioral_analytics.store import (
    AggregateSnapshot,
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
    TransientStoreError,
    decode_cursor,
    encode_cursor,
)
from behavioral_analytics.stores.firestore_behavior import (
    PersonChange,
    PersonState,
    RawEvent,
    decode_progress,
    decode_recent,
    decode_sessions,
    encode_progress,
    encode_recent,
    encode_sessions,
    exact_low,
    raw_event,
    read_range,
    recompute,
    recount_range,
)
from behavioral_analytics.stores.firestore_identity import (
    ANONYMOUS_EVENTS_FIELD,
    LINKED_USERS_FIELD,
    LINKS_FIELD,
    LinkChange,
    Move,
    decode_anonymous_events,
    decode_links,
    encode_anonymous_events,
    encode_links,
    link_changes,
)
from behavioral_analytics.stores.firestore_keys import (
    decode_map,
    decode_map_key,
    doc_id,
    encode_map,
    encode_map_key,
)
from behavioral_analytics.stores.firestore_wire import (
    BatchGetRequestPb,
    CommitRequestPb,
    field_path,
    from_value,
    write,
)

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot

    from behavioral_analytics.config import Settings

__all__ = ["FirestoreStore"]

T = TypeVar("T")

EVENTS = "user_events"
AGGREGATES = "analytics_aggregates"
DEAD_LETTERS = "dead_letters"
STATE = "pipeline_state"
FRESHNESS = "freshness"
SHARD_SUFFIX = "_shard"

BUCKET_PREFIX: dict[str, str] = {"minute": "minute_", "hour": "hourly_", "day": "daily_"}
# Profile fields holding the user's unique-user markers: {period label: true}.
MARKER_FIELD: dict[str, str] = {"hour": "unique_hours", "day": "unique_days"}
_GRANULARITY_OF_FIELD = {v: k for k, v in MARKER_FIELD.items()}
# The behavioral read model. Profile: the person's stored derivation. Bucket documents: bots
# (minute, hour, day), sessions started (hour, day) and funnel users per step (day).
SESSIONS_FIELD = "sessions"  # profile: {session key: [start, end, events, client id]}
PROGRESS_FIELD = "funnel_progress"  # profile: {funnel: {day: furthest step}}
RECENT_FIELD = "recent"  # profile: digest of the person's recent events (firestore_behavior)
BOT_FIELD = "bot_events"
FORGOTTEN_FIELD = "forgotten_at"  # profile or person document: a `forget`'s tombstone
REVISION_FIELD = "revision"  # anonymous actor: bumped when its events count for a linked user
SESSION_STATS_FIELD = "sessions"  # bucket: {started, duration_ms, bounces, events}
FUNNEL_FIELD = "funnel_users"  # daily bucket: {funnel: {step: users}}
_SESSION_STATS = ("started", "duration_ms", "bounces", "events")
QUERY_THREADS = 16
# What a behavioral commit reads of a person's (or anonymous actor's) document, beyond markers.
_PERSON_FIELDS = (
    "total_events",
    "first_seen",
    "last_activity",
    SESSIONS_FIELD,
    PROGRESS_FIELD,
    RECENT_FIELD,
    LINKS_FIELD,
    FORGOTTEN_FIELD,
    ANONYMOUS_EVENTS_FIELD,
)
# What recounting a person or moving events needs of a raw event.
_MOVE_FIELDS = (
    "ts",
    "event_type",
    "session_id",
    "properties",
    "user_id",
    "anonymous_id",
    "person",
    "bot",
)

# Firestore: 10 MiB per commit request, 500 field transforms per document, 1 MiB per document.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_TRANSFORMS_PER_DOC = 450
MAX_DEAD_LETTER_DATA = 900 * 1024
# A built commit request over this is split (profiles carry the behavioral state, so their size
# is known only once built): under the emulator's 4 MiB gRPC limit (Firestore allows 10 MiB).
MAX_BUILT_REQUEST_BYTES = 4_000_000
_WRITE_OVERHEAD = 300  # bytes per write beyond its fields (name, precondition, framing)
# Markers must outlive every event that can still be counted for their period: the oldest
# accepted event (BA_MAX_EVENT_AGE_DAYS) redelivered or replayed as late as possible.
# `from_settings` computes it; this conservative default serves stores built without settings.
DEFAULT_MARKER_RETENTION_S = (30 + 7 + 7 + 2) * 86400.0
KNOWN_MARKERS_MAX = 200_000  # markers remembered per store (about 40 MB at most)

_TRANSIENT = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.GatewayTimeout,
)


class _Stale(Exception):
    """A document changed between a commit's two reads of it: plan again."""


# A precondition failed (a document changed since read, or a raw event appeared or went).
_CONFLICTS = (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound, _Stale)
_MAX_CONFLICTS = 12
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_PAGE = 1000
_MANY_HOURS = 100  # read a profile's whole hour map rather than this many single paths
_json = msgspec.json.Encoder().encode


class _TooLarge(Exception):
    """A built commit request exceeds the size limit: split the part."""


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _hash(*parts: object) -> str:
    raw = "\x1f".join(repr(p) if not isinstance(p, str | bytes) else str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def dead_letter_id(d: NewDeadLetter) -> str:
    """Stable across redeliveries of the same message (same id and publish time), distinct for a
    replay (a new publish time), so recording one is idempotent."""
    return _hash(d.source, d.message_id, d.received_at, d.reason, hashlib.sha256(d.data).digest())


def _type_transforms(prefix: str, by_type: Counter[str]) -> list[tuple[str, str, float]]:
    return [(field_path(prefix, encode_map_key(t)), "increment", c) for t, c in by_type.items()]


@dataclass(frozen=True, slots=True)
class _Seen:
    """A profile (or an anonymous actor's document) as read before a commit: its version, the
    markers it holds and, with the behavioral read model, the rest of what a commit needs."""

    update_time: Any  # protobuf Timestamp; None when not read (the markers were known)
    markers: frozenset[tuple[str, str]]  # (granularity, period)
    days: tuple[str, ...]  # every day marker (pruning needs them all)
    behavior: PersonState | None = None  # stored sessions and funnel progress (when read)
    kind: str | None = "user"  # "person": no profile (links or a tombstone only)
    total: int = 0
    first_seen: float | None = None
    last_activity: float | None = None
    links: tuple[Link, ...] = ()
    forgotten_at: float | None = None
    anonymous_events: list[Event] | None = None  # an anonymous actor's, when kept


def _forgets(seen: _Seen | None, timestamp: float) -> bool:
    """Whether a `forget` took events at `timestamp` of this document's person."""
    return seen is not None and seen.forgotten_at is not None and timestamp <= seen.forgotten_at


@dataclass(frozen=True, slots=True)
class _Built:
    writes: list[Any]
    lag: float | None
    markers: set[tuple[Granularity, str, str]]
    created: list[Event]  # the raw events the commit creates


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a behavioral commit does, decided from what it read."""

    events: list[Event]  # to create: the batch less what a `forget` covers
    persons: dict[str, str]  # event key -> the person it counts for
    seen: dict[str, _Seen]  # person or actor -> its document as read (absent: none)
    links: dict[str, LinkChange]  # anonymous id -> its links, changed by the batch
    moves: list[Move]  # stored events counting for someone else from now on
    bumps: set[str]  # anonymous actors with events counted for a linked user
    # Anonymous actor whose links change who its events count for -> its stored events,
    # each with the person it counted for until now.
    anonymous: dict[str, list[tuple[Event, str]]]


@dataclass(frozen=True, slots=True)
class _Recounted:
    """A person losing stored events, recounted."""

    change: PersonChange
    lost: set[tuple[str, str]]  # markers no event of theirs holds any more
    bounds: tuple[float, float] | None  # first seen, last activity


@dataclass(frozen=True, slots=True)
class _PersonUpdate:
    who: str
    seen: _Seen | None
    delta: ProfileDelta | None  # the batch's new events
    moved_in: list[Event]  # stored events now counted for them
    moved_out: list[Event]  # stored events now counted for someone else
    bounds: tuple[float, float] | None  # first seen, last activity, recounted
    behavior: dict[str, Any] | None  # the stored derivation's fields
    links: tuple[Link, ...] | None  # replaced, when the batch changes them
    bump: bool
    gained: list[tuple[str, str]]
    lost: list[tuple[str, str]]
    anonymous_events: bytes | None  # replaced, when the batch adds some


@dataclass(slots=True)
class _BucketSum:
    """A bucket summed over its document and its counter shards."""

    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    unique_users: int = 0
    counted: bool = False  # some document of it counts human events (not only bots)
    bot_events: int = 0
    sessions: SessionStats = field(default_factory=SessionStats)
    funnel_users: Counter[tuple[str, int]] = field(default_factory=Counter)

    def add(self, data: dict[str, Any]) -> None:
        self.counted = self.counted or "total_events" in data
        self.total += data.get("total_events", 0)
        self.by_type.update(_by_type(data))
        self.unique_users += data.get("unique_users", 0)
        self.bot_events += data.get(BOT_FIELD, 0)
        stats = data.get(SESSION_STATS_FIELD) or {}
        self.sessions.sessions += stats.get("started", 0)
        self.sessions.duration_ms += stats.get("duration_ms", 0)
        self.sessions.bounces += stats.get("bounces", 0)
        self.sessions.events += stats.get("events", 0)
        for name, steps in (data.get(FUNNEL_FIELD) or {}).items():
            for step, users in (steps or {}).items():
                self.funnel_users[decode_map_key(name), int(step)] += users


class FirestoreStore(Store):
    # Bots, sessions, funnels, identity links and forget; `behavior=False` turns the
    # behavioral read model off (BA_FIRESTORE_BEHAVIOR=false) and the store counts as before.
    behavioral = True

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
    ) -> None:
        self.behavioral = behavior
        self.rules: BehaviorRules = rules or BehaviorRules()
        self._pool: ThreadPoolExecutor | None = None
        self.db = client
        self.database = database
        self.periods = Periods(timezone)
        self.raw_retention_s = raw_retention_s
        # verify recounts markers back to the raw-event horizon: keep them at least that long.
        self.marker_retention_s = max(marker_retention_s, raw_retention_s + 2 * 86400.0)
        self.counter_shards = counter_shards
        self._shard_turn = random.randrange(max(counter_shards, 1))
        self.max_request_bytes = max_request_bytes
        self.max_transforms_per_doc = max_transforms_per_doc
        self.timeout_s = timeout_s
        self._clock = clock
        self._database_path: str = client._database_string
        self._root = f"{self._database_path}/documents"
        # Unique-user markers known to exist, oldest first: (granularity, period, who).
        self._known: dict[tuple[str, str, str], None] = {}
        self.write_ops = 0  # document writes in successful commits (what Firestore bills)
        self.commits = 0
        self.conflicts = 0  # commits refused (ALREADY_EXISTS, stale profile) and recomputed
        self.behavior_queries = 0  # per-person raw-event queries (the digest did not reach)
        self.identity_queries = 0  # raw-event queries for events a changed link moves

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        client = firestore.Client(project=settings.project, database=settings.firestore_database)
        latest_count_days = (
            settings.max_event_age_days
            + settings.message_retention_days
            + settings.replay_window_days
        )
        return cls(
            client,
            timezone=settings.timezone,
            raw_retention_s=settings.raw_retention_days * 86400.0,
            marker_retention_s=(latest_count_days + 2) * 86400.0,
            counter_shards=settings.firestore_counter_shards,
            database=settings.firestore_database,
            rules=settings.behavior_rules(),
            behavior=settings.firestore_behavior,
        )

    def init(self) -> list[str]:
        return [
            f"Firestore database {self.database!r}: nothing to create; composite indexes "
            "come from firestore.indexes.json (Terraform), the TTL policy on "
            f"{EVENTS}.expire_at likewise"
        ]

    # -- references -------------------------------------------------------------------------

    def _name(self, collection: str, document: str) -> str:
        return f"{self._root}/{collection}/{document}"

    def _event_ref(self, key: str) -> DocumentReference:
        return self.db.collection(EVENTS).document(key)

    def _bucket_ref(self, granularity: str, period: str) -> DocumentReference:
        return self.db.collection(AGGREGATES).document(BUCKET_PREFIX[granularity] + period)

    def _profile_ref(self, who: str) -> DocumentReference:
        return self.db.collection(AGGREGATES).document(doc_id("user_", who))

    def _next_shard(self) -> int | None:
        """The counter shard a flush writes to (None: the single documents): in turn, from a
        random start, so that workers spread over the shards."""
        if not self.counter_shards:
            return None
        self._shard_turn += 1
        return self._shard_turn % self.counter_shards

    # -- writes -----------------------------------------------------------------------------

    def commit(
        self, events: Sequence[Event], dead_letters: Sequence[NewDeadLetter] = ()
    ) -> CommitResult:
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.key, event)
        created: list[Event] = []
        lag: float | None = None
        parts = list(self._split(list(unique.values()), list(dead_letters)))
        parts.reverse()
        while parts:
            part_events, part_dead = parts.pop()
            try:
                part_created, part_lag = self._commit_atomic(part_events, part_dead)
            except _TooLarge:
                # Profiles carry the behavioral state: the request came out larger than the
                # estimate. Halve the part; each half is its own atomic commit.
                middle = len(part_events) // 2
                parts += [(part_events[middle:], []), (part_events[:middle], part_dead)]
                continue
            created.extend(part_created)
            if part_lag is not None:
                lag = part_lag if lag is None else max(lag, part_lag)
        return CommitResult(
            created=len(created),
            duplicates=len(events) - len(created),
            dead_letters=len(dead_letters),
            created_by_type=dict(Counter(e.event_type for e in created)),
            max_lag_s=lag,
        )

    def _split(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> Iterator[tuple[list[Event], list[NewDeadLetter]]]:
        """One part when the batch fits a commit; else parts that each fit, each atomic."""
        budget = self.max_request_bytes
        dl_sizes = [_dead_letter_size(d) for d in dead_letters]
        ev_sizes = [_event_size(e) for e in events]
        if sum(dl_sizes) + sum(ev_sizes) <= budget // 2 and self._transforms_fit(events):
            yield events, dead_letters
            return
        chunk: list[NewDeadLetter] = []
        used = 0
        for d, size in zip(dead_letters, dl_sizes, strict=True):
            if chunk and used + size > budget:
                yield [], chunk
                chunk, used = [], 0
            chunk.append(d)
            used += size
        if chunk:
            yield [], chunk
        # Aggregate writes add at most a few per event: half the budget for raw events.
        part: list[Event] = []
        used = 0
        for event, size in zip(events, ev_sizes, strict=True):
            if part and used + size > budget // 2:
                yield from self._split_by_transforms(part)
                part, used = [], 0
            part.append(event)
            used += size
        if part:
            yield from self._split_by_transforms(part)

    def _split_by_transforms(
        self, events: list[Event]
    ) -> Iterator[tuple[list[Event], list[NewDeadLetter]]]:
        if len(events) <= 1 or self._transforms_fit(events):
            yield events, []
            return
        middle = len(events) // 2
        yield from self._split_by_transforms(events[:middle])
        yield from self._split_by_transforms(events[middle:])

    def _transforms_fit(self, events: Sequence[Event]) -> bool:
        """Each aggregate document gets one transform per event type plus a few more (bots,
        session figures and funnel steps with the behavioral read model)."""
        limit = self.max_transforms_per_doc - 4
        if self.behavioral:
            limit -= 1 + len(_SESSION_STATS) + sum(len(f.steps) for f in self.rules.funnels)
        types_per_doc: dict[tuple[str, ...], set[str]] = {}
        for event in events:
            minute, hour, day = self.periods.of(event.timestamp)
            for key in (("m", minute), ("h", hour), ("d", day), ("u", event.who)):
                seen = types_per_doc.setdefault(key, set())
                seen.add(event.event_type)
                if len(seen) > limit:
                    return False
        return True

    def _commit_atomic(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> tuple[list[Event], float | None]:
        transient_failures = conflicts = 0
        while True:
            now = self._clock()
            try:
                built = self._build(events, dead_letters, now)
                writes = built.writes
                if not writes:
                    return [], None
                if len(events) > 1 and self.behavioral:
                    size = sum(w.ByteSize() for w in writes)
                    if size > min(self.max_request_bytes, MAX_BUILT_REQUEST_BYTES):
                        raise _TooLarge(size)
                self._send(writes)
            except _CONFLICTS as exc:
                self.conflicts += 1
                conflicts += 1
                if conflicts > _MAX_CONFLICTS:
                    raise TransientStoreError(f"Firestore commit kept conflicting: {exc}") from exc
                if conflicts > 2:  # another worker keeps changing the same profiles
                    time.sleep(random.uniform(0, 0.05 * conflicts))
                events, dead_letters = self._drop_existing(events, dead_letters)
                continue
            except _TRANSIENT as exc:
                if transient_failures >= len(_BACKOFF_S):
                    raise TransientStoreError(f"Firestore commit failed: {exc}") from exc
                time.sleep(_BACKOFF_S[transient_failures])
                transient_failures += 1
                continue
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"Firestore commit failed: {exc}") from exc
            self.write_ops += len(writes)
            self.commits += 1
            if not self.behavioral:
                self._remember(built.markers)
            return built.created, built.lag

    def _send(self, writes: list[Any]) -> None:
        request = CommitRequestPb(database=self._database_path, writes=writes)
        self.db._firestore_api.commit(
            request=request_types.CommitRequest.wrap(request),
            metadata=self.db._rpc_metadata,
            timeout=self.timeout_s,
        )

    def _get(self, names: Sequence[str], mask: Sequence[str]) -> dict[str, Any]:
        """The documents among `names` that exist (name → Document protobuf), only the fields
        in `mask`."""
        found: dict[str, Any] = {}
        for start in range(0, len(names), _PAGE):
            request = BatchGetRequestPb(database=self._database_path)
            request.documents.extend(names[start : start + _PAGE])
            request.mask.field_paths.extend(mask)
            try:
                responses = self.db._firestore_api.batch_get_documents(
                    request=request_types.BatchGetDocumentsRequest.wrap(request),
                    metadata=self.db._rpc_metadata,
                    timeout=self.timeout_s,
                )
                for response in responses:
                    pb = request_types.BatchGetDocumentsResponse.pb(response)
                    if pb.HasField("found"):
                        found[pb.found.name] = pb.found
            except _TRANSIENT as exc:
                raise TransientStoreError(f"Firestore read failed: {exc}") from exc
        return found

    def _drop_existing(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> tuple[list[Event], list[NewDeadLetter]]:
        names = [self._name(EVENTS, e.key) for e in events]
        names += [self._name(DEAD_LETTERS, dead_letter_id(d)) for d in dead_letters]
        # Neither raw events nor dead letters have `kind`: the read returns existence only.
        existing = {name.rsplit("/", 1)[1] for name in self._get(names, ["kind"])}
        return (
            [e for e in events if e.key not in existing],
            [d for d in dead_letters if dead_letter_id(d) not in existing],
        )

    def _build(self, events: list[Event], dead_letters: list[NewDeadLetter], now: float) -> _Built:
        expire_at = _dt(now + self.raw_retention_s)
        processed_at = _dt(now)
        extra: dict[tuple[str, str], list[tuple[str, str, float]]] = {}
        writes: list[Any] = []
        if self.behavioral and events:
            plan = self._plan(events)
            events = plan.events
            persons = plan.persons
            humans = [as_person(e, persons[e.key]) for e in events if not is_bot(e.properties)]
            deltas = fold(humans, self.periods)
            new_uniques = self._add_people(writes, deltas, humans, plan, extra, now)
        else:
            persons = {}
            deltas = fold(events, self.periods)
            seen = self._read_profiles(deltas)
            new_uniques = self._add_profiles(writes, deltas, seen, now)
        writes.extend(
            write(
                self._name(EVENTS, event.key),
                _event_doc(event, persons.get(event.key, event.who), now, processed_at, expire_at),
                exists=False,
            )
            for event in events
        )
        shard = self._next_shard()
        self._add_buckets(writes, deltas, new_uniques, processed_at, shard, extra)
        writes.extend(
            write(
                self._name(DEAD_LETTERS, dead_letter_id(d)), _dead_letter_doc(d, now), exists=False
            )
            for d in dead_letters
        )
        lag = max((now - e.received_at for e in events), default=None)
        if events:
            writes.append(self._freshness_write(events, now, lag, shard))
        return _Built(writes, lag, deltas.markers, events)

    # -- identity: who each event counts for ------------------------------------------------

    def _plan(self, events: list[Event]) -> _Plan:
        """Read the documents of the batch's actors (tombstones, links, the stored derivation),
        drop what a `forget` covers, resolve the batch's identify proposals, attribute every
        event, find the stored events a changed link moves, and read the documents of the
        persons that brings in."""
        rules = self.rules
        window = rules.identity_window_s
        hours = {self.periods.of(e.timestamp)[1] for e in events}
        wanted = {e.who for e in events}
        wanted |= {actor(None, e.anonymous_id) for e in events if proposal(e) is not None}
        seen = self._read_people(wanted, hours)
        read = set(wanted)
        events = [e for e in events if not _forgets(seen.get(e.who), e.timestamp)]
        stored = {who: state.links for who, state in seen.items() if state.links}
        humans = [e for e in events if not is_bot(e.properties)]
        links = link_changes(humans, stored, rules.allow_relink)
        covers = {who: coverage(own, window) for who, own in stored.items()}
        covers.update({c.actor: coverage(c.after, window) for c in links.values()})
        persons = {
            e.key: attribute(e, covers.get(e.who) if e.user_id is None else None) for e in events
        }
        anonymous: dict[str, list[tuple[Event, str]]] = {}
        unlisted = []
        listable = not any(step.where for f in rules.funnels for step in f.steps)
        for change in links.values():
            if not change.moves_events(window):
                continue
            state = seen.get(change.actor)
            listed = [] if state is None else state.anonymous_events
            if listed is None or not listable:
                unlisted.append(change)
                continue
            before = coverage(change.before, window)  # what their `person` says now
            anonymous[change.actor] = [(e, attribute(e, before)) for e in listed]
        self.identity_queries += len(unlisted)
        found = self._in_parallel(self._anonymous_events, [c.anonymous_id for c in unlisted])
        anonymous.update(zip((c.actor for c in unlisted), found, strict=True))
        # A redelivered event of the batch is stored already: its create fails the commit,
        # which then drops it and plans again (moving it, if it moves).
        batch = {e.key for e in events}
        moves = [
            Move(event, old, new)
            for who, stored_events in anonymous.items()
            for event, old in stored_events
            if (new := attribute(event, covers[who])) != old and event.key not in batch
        ]
        moving = {m.old for m in moves} | {m.new for m in moves}
        wanted = ({*persons.values()} - read) | moving
        if wanted:
            hours |= {self.periods.of(m.event.timestamp)[1] for m in moves}
            again = self._read_people(wanted, hours)
            for who in wanted & read:  # read twice: the plan holds only if nothing changed
                before, now = seen.get(who), again.get(who)
                if (before is None) != (now is None) or (
                    before is not None and now is not None and before.update_time != now.update_time
                ):
                    raise _Stale(who)
            seen.update(again)
        events = [e for e in events if not _forgets(seen.get(persons[e.key]), e.timestamp)]
        bumps = {
            e.who
            for e in events
            if e.user_id is None and persons[e.key] != e.who and not is_bot(e.properties)
        }
        return _Plan(events, persons, seen, links, moves, bumps, anonymous)

    def _read_people(self, people: Iterable[str], hours: Iterable[str] | None) -> dict[str, _Seen]:
        """The documents of `people` that exist: profiles with the markers of `hours` (None:
        all), the stored derivation, links and tombstones."""
        hours = sorted(set(hours)) if hours is not None else None
        mask = [MARKER_FIELD["day"], *_PERSON_FIELDS]
        if hours is None or len(hours) > _MANY_HOURS:
            mask.append(MARKER_FIELD["hour"])
        else:
            mask.extend(field_path(MARKER_FIELD["hour"], hour) for hour in hours)
        names = {self._name(AGGREGATES, doc_id("user_", who)): who for who in people}
        return {
            names[name]: _seen(doc, True, names[name])
            for name, doc in self._get(list(names), mask).items()
        }

    def _anonymous_events(self, anonymous_id: str) -> list[tuple[Event, str]]:
        """The stored human events of `anonymous_id` without a user id, each with the person
        it counts for now."""
        query = self.db.collection(EVENTS).where(
            filter=firestore.FieldFilter("anonymous_id", "==", anonymous_id)
        )
        who = actor(None, anonymous_id)
        found = []
        for snap in query.select(_MOVE_FIELDS).stream(timeout=self.timeout_s):
            data = snap.to_dict() or {}
            if data.get("user_id") is None and not data.get("bot"):
                found.append((_queried_event(snap.id, data, who), data.get("person", who)))
        return found

    def _in_parallel(self, function: Callable[[str], T], items: Sequence[str]) -> list[T]:
        """`function` over `items`, queries in flight together (a thread pool)."""
        if len(items) <= 1:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="fs-behavior")
        return list(self._pool.map(function, items))

    def _add_people(
        self,
        writes: list[Any],
        deltas: Deltas,
        humans: list[Event],
        plan: _Plan,
        extra: dict[tuple[str, str], list[tuple[str, str, float]]],
        now: float,
    ) -> Counter[tuple[str, str]]:
        """The behavioral read model's writes for a batch: moved events, one write per person
        or actor document touched, bots, sessions and funnels; return the unique-user changes
        per bucket."""
        writes.extend(
            write(self._name(EVENTS, m.event.key), {"person": m.new}, mask=["person"], exists=True)
            for m in plan.moves
        )
        moved_in: dict[str, list[Event]] = defaultdict(list)
        moved_out: dict[str, list[Event]] = defaultdict(list)
        for m in plan.moves:
            moved_in[m.new].append(as_person(m.event, m.new))
            moved_out[m.old].append(as_person(m.event, m.old))
        # Gaining stored events is like gaining new ones; losing some is recounted.
        gaining = [e for person, own in moved_in.items() if person not in moved_out for e in own]
        changes = self._recompute(
            [h for h in humans if h.who not in moved_out] + gaining, plan.seen
        )
        recounted = {
            person: self._recount_person(
                person, [h for h in humans if h.who == person], moved_in[person], out, plan
            )
            for person, out in sorted(moved_out.items())
        }
        changes.update({person: r.change for person, r in recounted.items()})
        self._behavior_transforms(extra, plan.events, changes.values())
        markers = _markers_by_who(deltas.markers)
        links = {change.actor: change for change in plan.links.values()}
        arrivals: dict[str, list[Event]] = defaultdict(list)
        for event in plan.events:
            if event.user_id is None and event.anonymous_id and not is_bot(event.properties):
                arrivals[event.who].append(event)
        people = [*deltas.profiles, *moved_in, *moved_out, *links]
        uniques: Counter[tuple[str, str]] = Counter()
        horizon = self._horizon(plan.events, now)
        for who in dict.fromkeys([*people, *sorted(plan.bumps)]):
            seen = plan.seen.get(who)
            have = seen.markers if seen is not None else frozenset()
            redo = recounted.get(who)
            gained = {m for m in markers.get(who, ()) if m not in have}
            gained |= {
                marker
                for e in moved_in.get(who, ())
                for marker in self._marker_periods(e.timestamp)
                if marker not in have
            }
            lost = redo.lost if redo is not None else set()
            uniques.update(gained)
            uniques.subtract(lost)
            change = changes.get(who)
            link = links.get(who)
            listed = None
            if who in arrivals:  # the commit writes this document: its list grows
                before = [] if seen is None else seen.anonymous_events
                listed = encode_anonymous_events(
                    None if before is None else [*before, *arrivals[who]]
                )
            writes.append(
                self._person_write(
                    _PersonUpdate(
                        who,
                        seen,
                        deltas.profiles.get(who),
                        moved_in.get(who, []),
                        moved_out.get(who, []),
                        redo.bounds if redo is not None else None,
                        self._behavior_fields(change, horizon) if change is not None else None,
                        link.after if link is not None else None,
                        who in plan.bumps,
                        sorted(gained),
                        sorted(lost),
                        listed,
                    ),
                    now,
                )
            )
        for key, n in uniques.items():
            if n and key not in deltas.buckets:
                extra.setdefault(key, []).append(("unique_users", "increment", n))
        return uniques

    def _behavior_fields(self, change: PersonChange, horizon: float) -> dict[str, Any]:
        return {
            SESSIONS_FIELD: encode_sessions(change.state.sessions.values(), horizon),
            PROGRESS_FIELD: encode_progress(
                change.state.progress, self.periods.label("day", horizon)
            ),
            RECENT_FIELD: encode_recent(change.state.recent_from, change.state.recent),
        }

    def _recount_person(
        self,
        person: str,
        new: list[Event],
        moved_in: list[Event],
        moved_out: list[Event],
        plan: _Plan,
    ) -> _Recounted:
        """A person losing stored events (a link moved them away): their derivation recounted
        over what the change reaches, the markers they lose, the bounds of their profile."""
        seen = plan.seen.get(person)
        state = seen.behavior if seen is not None and seen.behavior is not None else PersonState()
        changed = [*new, *moved_in, *moved_out]
        low = exact_low(state, changed, self.rules, self.periods)
        out = {e.key for e in moved_out}
        everything = None  # all their events, when known
        if person in plan.anonymous:  # an anonymous actor: its events were just read
            own = [event for event, counted_for in plan.anonymous[person] if counted_for == person]
            everything = [e for e in own if e.key not in out] + new + moved_in
            stored = [e for e in own if e.timestamp >= low]
        else:
            stored = self._person_all(person, low)
            self.identity_queries += 1
        after = [e for e in stored if e.key not in out] + new + moved_in
        change = recount_range(state, after, low, changed, self.rules, self.periods)
        left = {marker for e in after for marker in self._marker_periods(e.timestamp)}
        have = seen.markers if seen is not None else frozenset()
        lost = {
            marker
            for e in moved_out
            for marker in self._marker_periods(e.timestamp)
            if marker not in left and marker in have
        }
        bounds = None
        if everything:
            stamps = [e.timestamp for e in everything]
            bounds = (min(stamps), max(stamps))
        elif everything is None and seen is not None:
            first = seen.first_seen
            if first is None or first >= low:
                first = min((e.timestamp for e in after), default=first)
            last = max((e.timestamp for e in after), default=None)
            if last is None:
                last = self._last_before(person, low)
            if first is not None and last is not None:
                bounds = (first, last)
        return _Recounted(change, lost, bounds)

    def _marker_periods(self, timestamp: float) -> tuple[tuple[str, str], tuple[str, str]]:
        _, hour, day = self.periods.of(timestamp)
        return ("hour", hour), ("day", day)

    def _person_all(self, person: str, low: float) -> list[Event]:
        """Every stored human event counted for `person` at or after `low`."""
        return [
            _queried_event(key, data, person)
            for key, data in self._humans_from(person, low, _MOVE_FIELDS)
        ]

    def _humans_from(
        self, person: str, low: float, fields: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, `fields`) of the stored human events counted for `person` at or after `low`,
        by time (index: person, timestamp)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=firestore.FieldFilter("person", "==", person))
            # The Timestamp keeps microseconds: a millisecond of slack, then the exact `ts`.
            .where(filter=firestore.FieldFilter("timestamp", ">=", _dt(low - 0.001)))
            .order_by("timestamp")
            .select([*fields])
        )
        for snap in query.stream(timeout=self.timeout_s):
            data = snap.to_dict() or {}
            timestamp = data.get("ts")
            if not data.get("bot") and timestamp is not None and timestamp >= low:
                yield snap.id, data

    def _last_before(self, person: str, before: float) -> float | None:
        """The time of the person's latest stored human event before `before`."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=firestore.FieldFilter("person", "==", person))
            .where(filter=firestore.FieldFilter("timestamp", "<", _dt(before)))
            .order_by("timestamp", direction=firestore.Query.DESCENDING)
            .select(["ts", "bot"])
        )
        for snap in query.stream(timeout=self.timeout_s):
            data = snap.to_dict() or {}
            if not data.get("bot"):
                return data.get("ts")
        return None

    def _person_write(self, update: _PersonUpdate, now: float) -> Any:
        """The one write of a person's or anonymous actor's document in a behavioral commit,
        under the precondition that it is as read (or absent)."""
        who, seen, delta = update.who, update.seen, update.delta
        by_type: Counter[str] = Counter(delta.by_type if delta is not None else {})
        total = delta.total if delta is not None else 0
        stamps = [delta.first_seen, delta.last_activity] if delta is not None else []
        for event in update.moved_in:
            by_type[event.event_type] += 1
            stamps.append(event.timestamp)
        for event in update.moved_out:
            by_type[event.event_type] -= 1
        total += len(update.moved_in) - len(update.moved_out)
        name = self._name(AGGREGATES, doc_id("user_", who))
        updated = _dt(now)
        links = encode_links(update.links) if update.links is not None else {}
        if update.anonymous_events is not None:
            links[ANONYMOUS_EVENTS_FIELD] = update.anonymous_events
        behavior = update.behavior or {}
        if seen is None:
            if total > 0:
                gained = ProfileDelta(total, by_type, min(stamps), max(stamps))
                doc = _profile_doc(who, gained, update.gained, updated, behavior)
            else:  # an anonymous id's first link: no event of theirs is stored
                doc = {
                    "kind": "person",
                    "user_id": who,
                    "last_updated": updated,
                    RECENT_FIELD: encode_recent(0.0, {}),
                    **behavior,
                }
            if who.startswith("anonymous:"):  # none of its events is stored yet
                doc[ANONYMOUS_EVENTS_FIELD] = encode_anonymous_events([])
            doc.update(links)
            return write(name, doc, exists=False)
        if seen.total + total <= 0 and (seen.kind == "user" or update.lost):
            # Every event of theirs now counts for someone else: no profile any more, only
            # what is not one (links, a tombstone).
            doc = {"kind": "person", "user_id": who, "last_updated": updated, **behavior}
            doc.update(encode_links(seen.links) if seen.links else {})
            doc[ANONYMOUS_EVENTS_FIELD] = encode_anonymous_events(seen.anonymous_events)
            doc.update(links)
            if seen.forgotten_at is not None:
                doc[FORGOTTEN_FIELD] = seen.forgotten_at
            return write(name, doc, update_time=seen.update_time)
        fields: dict[str, Any] = {"user_id": who, "last_updated": updated, **behavior, **links}
        mask = [*fields]
        if seen.total + total > 0:
            fields["kind"] = "user"
            mask.append("kind")
        transforms: list[tuple[str, str, float]] = []
        if total:
            transforms.append(("total_events", "increment", total))
        transforms += _type_transforms(
            "events_by_type", Counter({t: n for t, n in by_type.items() if n})
        )
        if update.bounds is not None:
            fields["first_seen"], fields["last_activity"] = update.bounds
            mask += ["first_seen", "last_activity"]
        elif stamps:
            transforms += [
                ("first_seen", "minimum", min(stamps)),
                ("last_activity", "maximum", max(stamps)),
            ]
        for granularity, period in update.gained:
            fields.setdefault(MARKER_FIELD[granularity], {})[period] = True
            mask.append(field_path(MARKER_FIELD[granularity], period))
        mask += [field_path(MARKER_FIELD[g], period) for g, period in update.lost]
        if any(granularity == "day" for granularity, _ in update.gained):
            mask.extend(self._expired_marker_paths(seen.days, now))
        if update.bump:
            transforms.append((REVISION_FIELD, "increment", 1))
        return write(name, fields, mask=mask, transforms=transforms, update_time=seen.update_time)

    # -- the behavioral read model -----------------------------------------------------------

    def _recompute(self, humans: list[Event], seen: dict[str, _Seen]) -> dict[str, PersonChange]:
        """Per person of the batch: their stored relevant events over the range the rules
        need — from the digest in their profile when it reaches back far enough, else queried
        (from the range's start on, in parallel; after the profiles: see firestore_behavior) —
        and the recomputation."""
        by_person: dict[str, list[Event]] = {}
        for event in humans:
            by_person.setdefault(event.who, []).append(event)
        inputs: dict[str, tuple[PersonState, list[RawEvent], float | None]] = {}
        queries: dict[str, float] = {}
        for person, new in by_person.items():
            seen_state = seen.get(person)
            if seen_state is None or seen_state.behavior is None:
                # No profile: no stored human event of theirs; the digest starts complete.
                inputs[person] = (PersonState(), [], 0.0)
                continue
            state = seen_state.behavior
            span = read_range(state, new, self.rules)
            if span is None or (state.recent_from is not None and span[0] >= state.recent_from):
                inputs[person] = (state, list(state.recent.values()), state.recent_from)
            else:
                queries[person] = span[0]
                inputs[person] = (state, [], span[0])
        self.behavior_queries += len(queries)
        if queries:
            people = list(queries)
            found = self._in_parallel(lambda p: self._person_events(p, queries[p]), people)
            for person, events in zip(people, found, strict=True):
                state, _, low = inputs[person]
                inputs[person] = (state, events, low)
        return {
            person: recompute(
                inputs[person][0],
                inputs[person][1],
                inputs[person][2],
                new,
                self.rules,
                self.periods,
            )
            for person, new in by_person.items()
        }

    def _person_events(self, person: str, low: float) -> list[RawEvent]:
        """A person's stored human events at or after `low` that sessions or funnels need."""
        fields = ["ts", "session_id", "event_type", "bot"]
        if any(step.where for f in self.rules.funnels for step in f.steps):
            fields.append("properties")
        found = []
        for key, data in self._humans_from(person, low, fields):
            event = raw_event(
                key,
                data["ts"],
                data.get("session_id"),
                data.get("event_type", ""),
                decode_map(data.get("properties") or {}),
                self.rules,
            )
            if event.relevant:
                found.append(event)
        return found

    def _behavior_transforms(
        self,
        extra: dict[tuple[str, str], list[tuple[str, str, float]]],
        events: list[Event],
        changes: Iterable[PersonChange],
    ) -> None:
        """Bot counts, session figures and funnel users as transforms on bucket documents."""
        bots: Counter[tuple[str, str]] = Counter()
        for event in events:
            if is_bot(event.properties):
                minute, hour, day = self.periods.of(event.timestamp)
                bots.update((("minute", minute), ("hour", hour), ("day", day)))
        for key, n in bots.items():
            extra.setdefault(key, []).append((BOT_FIELD, "increment", n))
        sessions = SessionDelta()
        funnel_users: Counter[tuple[str, str, int]] = Counter()
        for change in changes:
            for key, stats in change.sessions.stats.items():
                total = sessions.stats.setdefault(key, SessionStats())
                total.sessions += stats.sessions
                total.duration_ms += stats.duration_ms
                total.bounces += stats.bounces
                total.events += stats.events
            funnel_users.update(change.funnel_users)
        for key, stats in sessions.stats.items():
            if stats.is_zero():
                continue
            values = (stats.sessions, stats.duration_ms, stats.bounces, stats.events)
            extra.setdefault(key, []).extend(
                (field_path(SESSION_STATS_FIELD, name), "increment", value)
                for name, value in zip(_SESSION_STATS, values, strict=True)
                if value
            )
        for (name, day, step), n in funnel_users.items():
            if n:
                path = field_path(FUNNEL_FIELD, encode_map_key(name), str(step))
                extra.setdefault(("day", day), []).append((path, "increment", n))

    def _horizon(self, events: Sequence[Event], now: float) -> float:
        """Stored sessions and funnel days older than this are dropped from the profile: no
        event that can still be accepted reaches them (as for the markers)."""
        oldest = min((e.timestamp for e in events), default=now)
        return min(now, oldest) - self.marker_retention_s

    def _remember(self, markers: Iterable[tuple[str, str, str]]) -> None:
        """Markers a commit of this store made or found: they exist until they expire."""
        self._known.update(dict.fromkeys(markers))
        if len(self._known) > KNOWN_MARKERS_MAX:
            for marker in list(islice(self._known, len(self._known) - KNOWN_MARKERS_MAX // 2)):
                del self._known[marker]

    def _read_profiles(self, deltas: Deltas) -> dict[str, _Seen]:
        """Without the behavioral read model: the batch's users' profiles that exist, with the
        markers that matter. A user whose markers this store already knows needs no read:
        markers are never removed before they expire (without the behavioral read model no
        link moves events and no `forget` runs), so that profile's write needs no
        precondition either."""
        seen = {
            who: _Seen(None, frozenset(markers), ())
            for who, markers in _markers_by_who(deltas.markers).items()
            if all((*marker, who) in self._known for marker in markers)
        }
        unknown = [who for who in deltas.profiles if who not in seen]
        if not unknown:
            return seen
        hours = sorted({period for unit, period, _ in deltas.markers if unit == "hour"})
        mask = [MARKER_FIELD["day"]]
        if len(hours) > _MANY_HOURS:
            mask.append(MARKER_FIELD["hour"])
        else:
            mask.extend(field_path(MARKER_FIELD["hour"], hour) for hour in hours)
        names = {self._name(AGGREGATES, doc_id("user_", who)): who for who in unknown}
        for name, doc in self._get(list(names), mask).items():
            seen[names[name]] = _seen(doc)
        return seen

    def _add_profiles(
        self, writes: list[Any], deltas: Deltas, seen: dict[str, _Seen], now: float
    ) -> Counter[tuple[str, str]]:
        """Without the behavioral read model: one write per profile; return the new markers
        counted per bucket."""
        new_markers: dict[str, list[tuple[str, str]]] = {}
        for granularity, period, who in deltas.markers:
            state = seen.get(who)
            if state is None or (granularity, period) not in state.markers:
                new_markers.setdefault(who, []).append((granularity, period))
        updated = _dt(now)
        for who, delta in deltas.profiles.items():
            name = self._name(AGGREGATES, doc_id("user_", who))
            new = new_markers.get(who, [])
            state = seen.get(who)
            if state is None:
                writes.append(_new_profile_write(name, who, delta, new, updated))
            else:
                writes.append(self._profile_update(name, who, delta, new, state, now))
        return Counter(marker for markers in new_markers.values() for marker in markers)

    def _profile_update(
        self,
        name: str,
        who: str,
        delta: ProfileDelta,
        new: list[tuple[str, str]],
        state: _Seen,
        now: float,
    ) -> Any:
        """A merge of the profile's deltas; with new markers, only onto the version read."""
        fields: dict[str, Any] = {"kind": "user", "user_id": who, "last_updated": _dt(now)}
        mask = ["kind", "user_id", "last_updated"]
        for granularity, period in new:
            fields.setdefault(MARKER_FIELD[granularity], {})[period] = True
            mask.append(field_path(MARKER_FIELD[granularity], period))
        if any(granularity == "day" for granularity, _ in new):
            mask.extend(self._expired_marker_paths(state.days, now))
        return write(
            name,
            fields,
            mask=mask,
            transforms=_profile_transforms(delta),
            update_time=state.update_time if new else None,
        )

    def _expired_marker_paths(self, days: Iterable[str], now: float) -> list[str]:
        """Paths of markers too old for any event still to be counted in their period: deleted
        when the profile gains a day, which bounds the profile's size."""
        horizon = self.periods.label("day", now - self.marker_retention_s)
        paths: list[str] = []
        for day in days:
            if day < horizon:
                paths.append(field_path(MARKER_FIELD["day"], day))
                paths.extend(field_path(MARKER_FIELD["hour"], f"{day}-{h:02d}") for h in range(24))
        return paths

    def _add_buckets(
        self,
        writes: list[Any],
        deltas: Deltas,
        new_uniques: Counter[tuple[str, str]],
        updated: datetime,
        shard: int | None,
        extra: dict[tuple[str, str], list[tuple[str, str, float]]] | None = None,
    ) -> None:
        """One write per bucket document: the fold's counts and `extra` transforms (bots,
        sessions, funnels), which may touch a bucket the fold does not."""
        extra = extra or {}
        for key in dict.fromkeys([*deltas.buckets, *extra]):
            granularity, period = key
            document = BUCKET_PREFIX[granularity] + period
            fields: dict[str, Any] = {
                "kind": "bucket",
                "granularity": granularity,
                "period": period,
                "last_updated": updated,
            }
            if shard is not None:
                document += f"{SHARD_SUFFIX}{shard}"
                fields["shard"] = shard
            bucket = deltas.buckets.get(key)  # type: ignore[call-overload]
            transforms = (
                _bucket_transforms(granularity, period, bucket, new_uniques) if bucket else []
            )
            transforms += extra.get(key, [])
            writes.append(
                write(
                    self._name(AGGREGATES, document),
                    fields,
                    mask=list(fields),
                    transforms=transforms,
                )
            )

    def _freshness_write(
        self, events: list[Event], now: float, lag: float | None, shard: int | None
    ) -> Any:
        document = FRESHNESS if shard is None else f"{FRESHNESS}{SHARD_SUFFIX}{shard}"
        return write(
            self._name(STATE, document),
            {"lag_s": lag},
            mask=["lag_s"],
            transforms=[
                ("newest_event_at", "maximum", max(e.timestamp for e in events)),
                ("last_commit_at", "maximum", now),
            ],
        )

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> None:
        for _, part in self._split([], list(dead_letters)):
            self._commit_atomic([], part)

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        ids = list(dead_letter_ids)
        for start in range(0, len(ids), 500):
            batch = self.db.batch()
            for dead_letter_id_ in ids[start : start + 500]:
                ref = self.db.collection(DEAD_LETTERS).document(dead_letter_id_)
                batch.update(ref, {"replayed_at": when})
            try:
                batch.commit(timeout=self.timeout_s)
            except gexc.NotFound as exc:
                raise StoreError(f"no such dead letter: {exc}") from exc
            self.write_ops += len(batch)

    # -- reads ------------------------------------------------------------------------------

    def profile(self, who: str) -> Profile | None:
        snap = self._profile_ref(who).get(timeout=self.timeout_s)
        return _profile(snap) if snap.exists and snap.get("kind") == "user" else None

    def links(self, who: str) -> list[Link]:
        self._need_behavior("identity links")
        if who.startswith("anonymous:"):
            snap = self._profile_ref(who).get(timeout=self.timeout_s)
            found = decode_links(who, (snap.to_dict() or {}).get(LINKS_FIELD))
        else:
            query = (
                self.db.collection(AGGREGATES)
                .where(filter=firestore.FieldFilter(LINKED_USERS_FIELD, "array_contains", who))
                .select(["user_id", LINKS_FIELD])
            )
            found = tuple(
                link
                for snap in query.stream(timeout=self.timeout_s)
                for link in _links_of(snap)
                if link.user_id == who
            )
        return sorted(found, key=lambda link: (link.linked_at, link.event_key))

    def stored_links(self) -> list[Link]:
        if not self.behavioral:
            return []
        query = (
            self.db.collection(AGGREGATES)
            .select(["user_id", LINKS_FIELD])
            .order_by(FieldPath.document_id())
        )
        return [link for snap in self._stream_all(query) for link in _links_of(snap)]

    def forget(self, who: str) -> ForgetReport:
        from behavioral_analytics.stores.firestore_forget import forget

        try:
            return forget(self, who)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(
                f"Firestore forget of {who!r} stopped: {exc}; run it again to finish (each "
                "step it made is complete)"
            ) from exc

    def _need_behavior(self, what: str) -> None:
        if not self.behavioral:
            raise NotSupported(
                f"{what}: only with the behavioral read model on Firestore "
                "(BA_FIRESTORE_BEHAVIOR=true)"
            )

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        if self.behavioral:  # who each event counts for, identity links followed
            return self._page("person", who, limit, cursor)
        if who.startswith("anonymous:"):
            return self._page("who", who, limit, cursor)
        return self._page("user_id", who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        return self._page("event_type", event_type, limit, cursor)

    def _page(self, name: str, value: str, limit: int, cursor: str | None) -> Page[StoredEvent]:
        limit = max(1, min(limit, 1000))
        query = (
            self.db.collection(EVENTS)
            .where(filter=firestore.FieldFilter(name, "==", value))
            .order_by("timestamp", direction=firestore.Query.DESCENDING)
            .order_by(FieldPath.document_id(), direction=firestore.Query.DESCENDING)
        )
        if cursor:
            ts, key = decode_cursor(cursor)
            query = query.start_after({"timestamp": _dt(ts), "__name__": self._event_ref(key)})
        docs = list(query.limit(limit + 1).stream(timeout=self.timeout_s))
        items = [_stored_event(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = items[-1].event
            next_cursor = encode_cursor(last.timestamp, last.key)
        return Page(items, next_cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        refs = [self._event_ref(k) for k in dict.fromkeys(keys) if k and "/" not in k]
        found: list[StoredEvent] = []
        for start in range(0, len(refs), _PAGE):
            snapshots = self.db.get_all(refs[start : start + _PAGE], timeout=self.timeout_s)
            found.extend(_stored_event(s) for s in snapshots if s.exists)
        return found

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        return [
            _series_point(granularity, period, total, self.behavioral)
            for period, total in self._bucket_sums(granularity, start, end).items()
            if total.counted or not self.behavioral
        ]

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        if not self.behavioral:
            return super().session_series(granularity, start, end)
        if granularity not in ("hour", "day"):
            raise StoreError("sessions are kept per hour and per day")
        now = self._clock()
        return [
            SessionPoint(
                granularity,
                period,
                total.sessions,
                self.rules.session_final(self.periods, granularity, period, now),
            )
            for period, total in self._bucket_sums(granularity, start, end).items()
            if total.sessions.sessions
        ]

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        if not self.behavioral:
            return super().funnel(name, start, end)
        funnel = self.rules.funnel(name)
        if funnel is None:
            raise StoreError(f"no funnel named {name!r}")
        days = []
        for day, total in self._bucket_sums("day", start, end).items():
            users = [
                total.funnel_users.get((name, step), 0) for step in range(1, len(funnel.steps) + 1)
            ]
            if users[0]:
                days.append(FunnelDay(day, users))
        return days

    def _bucket_sums(
        self, granularity: Granularity, start: str | None, end: str | None
    ) -> dict[str, _BucketSum]:
        """Per period (start <= period <= end, in order), its bucket documents summed."""
        # Bucket ids sort like their periods, so a range on the id needs no composite index;
        # a bucket's counter shards (`…{period}_shard{k}`) sort right after its document.
        prefix = BUCKET_PREFIX[granularity]
        collection = self.db.collection(AGGREGATES)
        query = (
            collection.where(
                filter=firestore.FieldFilter(
                    FieldPath.document_id(), ">=", collection.document(prefix + (start or ""))
                )
            )
            .where(
                filter=firestore.FieldFilter(
                    FieldPath.document_id(),
                    "<=",
                    collection.document(prefix + (end or "") + "\uf8ff"),
                )
            )
            .order_by(FieldPath.document_id())
        )
        sums: dict[str, _BucketSum] = {}
        for snap in self._stream_all(query):
            data = snap.to_dict() or {}
            period = data.get("period", "")
            if data.get("kind") != "bucket" or data.get("granularity") != granularity:
                continue
            if (start is None or period >= start) and (end is None or period <= end):
                sums.setdefault(period, _BucketSum()).add(data)
        return sums

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        limit = max(1, min(limit, 1000))
        query = (
            self.db.collection(DEAD_LETTERS)
            .order_by("recorded_at", direction=firestore.Query.DESCENDING)
            .order_by(FieldPath.document_id(), direction=firestore.Query.DESCENDING)
        )
        if cursor:
            recorded_at, key = decode_cursor(cursor)
            query = query.start_after(
                {
                    "recorded_at": recorded_at,
                    "__name__": self.db.collection(DEAD_LETTERS).document(key),
                }
            )
        docs = list(query.limit(limit + 1).stream(timeout=self.timeout_s))
        items = [_dead_letter(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            next_cursor = encode_cursor(items[-1].recorded_at, items[-1].id)
        return Page(items, next_cursor)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        if not dead_letter_id or "/" in dead_letter_id:
            return None
        snap = self.db.collection(DEAD_LETTERS).document(dead_letter_id).get(timeout=self.timeout_s)
        return _dead_letter(snap) if snap.exists else None

    def count_dead_letters(self) -> int:
        return _count(self.db.collection(DEAD_LETTERS).count(), self.timeout_s)

    def active_users(self, since: float) -> int:
        # Only profiles carry `last_activity`, so the automatic single-field index serves this.
        query = self.db.collection(AGGREGATES).where(
            filter=firestore.FieldFilter("last_activity", ">=", since)
        )
        return _count(query.count(), self.timeout_s)

    def freshness(self) -> Freshness:
        state = self.db.collection(STATE)
        refs = [state.document(FRESHNESS)]
        refs += [
            state.document(f"{FRESHNESS}{SHARD_SUFFIX}{k}") for k in range(self.counter_shards)
        ]
        found = [s.to_dict() or {} for s in self.db.get_all(refs, timeout=self.timeout_s)]
        found = [d for d in found if d.get("last_commit_at") is not None]
        if not found:
            return Freshness(None, None, None)
        latest = max(found, key=lambda d: d["last_commit_at"])
        return Freshness(
            max(d.get("newest_event_at", 0.0) for d in found),
            latest["last_commit_at"],
            latest.get("lag_s"),
        )

    def count_events(self) -> int:
        return _count(self.db.collection(EVENTS).count(), self.timeout_s)

    # -- verify -----------------------------------------------------------------------------

    def _stream_all(self, query: Any) -> Iterator[DocumentSnapshot]:
        """Page through a query ordered by document id (a long single stream can time out)."""
        last = None
        while True:
            page_query = query.limit(_PAGE)
            if last is not None:
                page_query = page_query.start_after(last)
            docs = list(page_query.stream(timeout=self.timeout_s))
            yield from docs
            if len(docs) < _PAGE:
                return
            last = docs[-1]

    def _all(self, collection: str) -> Iterator[DocumentSnapshot]:
        return self._stream_all(self.db.collection(collection).order_by(FieldPath.document_id()))

    def iter_raw_events(self) -> Iterator[Event]:
        for snap in self._all(EVENTS):
            yield _stored_event(snap).event

    def snapshot(self) -> AggregateSnapshot:
        snap = AggregateSnapshot()
        sums: dict[tuple[str, str], _BucketSum] = {}
        for doc in self._all(AGGREGATES):
            data = doc.to_dict() or {}
            kind = data.get("kind")
            if kind == "bucket":
                sums.setdefault((data["granularity"], data["period"]), _BucketSum()).add(data)
            elif kind == "user":
                profile = _profile(doc)
                snap.profiles[profile.who] = (
                    profile.total_events,
                    profile.events_by_type,
                    profile.first_seen,
                    profile.last_activity,
                )
                snap.markers.update(_markers(profile.who, data))
        for key, total in sums.items():
            if total.counted or not self.behavioral:  # not a bucket of bots only
                snap.buckets[key] = (total.total, dict(total.by_type))
                if key[0] in UNIQUE_GRANULARITIES:
                    snap.unique_users[key] = total.unique_users
            if not self.behavioral:
                continue
            if total.bot_events:
                snap.bot_events[key] = total.bot_events
            if not total.sessions.is_zero():
                snap.session_stats[key] = total.sessions
            for (name, step), users in total.funnel_users.items():
                if users:
                    snap.funnel_users[name, key[1], step] = users
        return snap

    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace the aggregates by the fold of `events` (with the behavioral read model, by
        `behavior.recount` of them: bots apart, sessions and funnel progress in the profiles,
        their figures in the buckets). Not atomic: stop the workers first."""
        counted = None
        kept: dict[str, dict[str, Any]] = {}  # person or actor -> links and tombstone fields
        if self.behavioral:
            kept = self._identity_fields()
            links = [link for fields in kept.values() for link in fields.pop("_links", ())]
            counted = recount(events, links, self.rules, self.periods)
            self._backfill_person(counted.persons)
            deltas = counted.deltas
        else:
            deltas = fold(events, self.periods)
        self._known.clear()
        self._delete_all(AGGREGATES)
        writer = self.db.batch()
        now = self._clock()
        updated = _dt(now)
        uniques = deltas.unique_users()
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for (granularity, period), bucket in deltas.buckets.items():
            doc: dict[str, Any] = {
                "total_events": bucket.total,
                "events_by_type": encode_map(dict(bucket.by_type)),
            }
            if granularity in UNIQUE_GRANULARITIES:
                doc["unique_users"] = uniques[granularity, period]
            docs[granularity, period] = doc
        progress: dict[str, dict[str, dict[str, int]]] = {}
        if counted is not None:
            for key, n in counted.bot_events.items():
                docs.setdefault(key, {})[BOT_FIELD] = n
            for key, stats in counted.session_stats.items():
                values = (stats.sessions, stats.duration_ms, stats.bounces, stats.events)
                docs.setdefault(key, {})[SESSION_STATS_FIELD] = dict(
                    zip(_SESSION_STATS, values, strict=True)
                )
            for (name, day, step), n in counted.funnel_users.items():
                if n:
                    funnels = docs.setdefault(("day", day), {}).setdefault(FUNNEL_FIELD, {})
                    funnels.setdefault(encode_map_key(name), {})[str(step)] = n
            for (name, person, day), step in counted.funnel_progress.items():
                progress.setdefault(person, {}).setdefault(name, {})[day] = step
        for (granularity, period), fields in docs.items():
            doc = {
                "kind": "bucket",
                "granularity": granularity,
                "period": period,
                **fields,
                "last_updated": updated,
            }
            writer.set(self._bucket_ref(granularity, period), doc)
            writer = self._flush_if_full(writer)
        markers = _markers_by_who(deltas.markers)
        for who, p in deltas.profiles.items():
            behavior = None
            if counted is not None:
                behavior = {
                    # Everything the raw events hold (they are younger than the horizon).
                    SESSIONS_FIELD: encode_sessions(counted.sessions.get(who, []), -inf),
                    PROGRESS_FIELD: encode_progress(progress.get(who, {}), ""),
                }
            doc = _profile_doc(who, p, markers.get(who, []), updated, behavior)
            writer.set(self._profile_ref(who), {**doc, **kept.pop(who, {})})
            writer = self._flush_if_full(writer)
        for who, fields in kept.items():  # links or a tombstone, no profile
            doc = {"kind": "person", "user_id": who, "last_updated": updated, **fields}
            writer.set(self._profile_ref(who), doc)
            writer = self._flush_if_full(writer)
        self._flush_if_full(writer, force=True)

    def _identity_fields(self) -> dict[str, dict[str, Any]]:
        """Per document holding links or a tombstone: those fields (and its links, decoded,
        under `_links`), which a rebuild keeps."""
        query = (
            self.db.collection(AGGREGATES)
            .select(["user_id", LINKS_FIELD, LINKED_USERS_FIELD, FORGOTTEN_FIELD])
            .order_by(FieldPath.document_id())
        )
        kept: dict[str, dict[str, Any]] = {}
        for snap in self._stream_all(query):
            data = snap.to_dict() or {}
            fields = {
                name: data[name]
                for name in (LINKS_FIELD, LINKED_USERS_FIELD, FORGOTTEN_FIELD)
                if data.get(name) is not None
            }
            if fields:
                fields["_links"] = _links_of(snap)
                kept[data["user_id"]] = fields
        return kept

    def _backfill_person(self, persons: dict[str, str]) -> None:
        """Set each raw event's `person` (and `bot`, for events stored before the behavioral
        read model) to what the recount says: what the behavioral queries select on."""
        writer = self.db.batch()
        for snap in self._all(EVENTS):
            data = snap.to_dict() or {}
            fields: dict[str, Any] = {}
            if "bot" not in data:
                fields["bot"] = is_bot(decode_map(data.get("properties") or {}))
            person = persons.get(snap.id, data.get("person", data["who"]))
            if data.get("person") != person:
                fields["person"] = person
            if fields:
                writer.update(snap.reference, fields)
                writer = self._flush_if_full(writer)
        self._flush_if_full(writer, force=True)

    def _flush_if_full(
        self, batch: firestore.WriteBatch, *, force: bool = False
    ) -> firestore.WriteBatch:
        if len(batch) >= 400 or (force and len(batch)):
            batch.commit(timeout=self.timeout_s)
            self.write_ops += len(batch)
            return self.db.batch()
        return batch

    def _delete_all(self, collection: str) -> None:
        batch = self.db.batch()
        for snap in self._all(collection):
            batch.delete(snap.reference)
            batch = self._flush_if_full(batch)
        self._flush_if_full(batch, force=True)

    def ping(self) -> None:
        try:
            self.db.collection(STATE).document(FRESHNESS).get(timeout=5.0, retry=None)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"Firestore unreachable: {exc}") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.db.close()


# -- documents ------------------------------------------------------------------------------


def _seen(doc: Any, behavioral: bool = False, who: str = "") -> _Seen:
    fields = doc.fields
    markers: set[tuple[str, str]] = set()
    days: tuple[str, ...] = ()
    for name, granularity in _GRANULARITY_OF_FIELD.items():
        if name in fields:
            periods = tuple(fields[name].map_value.fields.keys())
            markers.update((granularity, period) for period in periods)
            if granularity == "day":
                days = periods
    if not behavioral:
        return _Seen(doc.update_time, frozenset(markers), days)

    def read(name: str) -> Any:
        return from_value(fields[name]) if name in fields else None

    return _Seen(
        doc.update_time,
        frozenset(markers),
        days,
        PersonState(
            decode_sessions(read(SESSIONS_FIELD)),
            decode_progress(read(PROGRESS_FIELD)),
            *decode_recent(read(RECENT_FIELD)),  # none (a profile from before it): query
        ),
        kind="user" if read("total_events") else "person",  # a profile has events
        total=read("total_events") or 0,
        first_seen=read("first_seen"),
        last_activity=read("last_activity"),
        links=decode_links(who, read(LINKS_FIELD)),
        forgotten_at=read(FORGOTTEN_FIELD),
        anonymous_events=decode_anonymous_events(who, read(ANONYMOUS_EVENTS_FIELD)),
    )


def _links_of(snap: DocumentSnapshot) -> tuple[Link, ...]:
    data = snap.to_dict() or {}
    return decode_links(data.get("user_id", ""), data.get(LINKS_FIELD))


def _queried_event(key: str, data: dict[str, Any], person: str) -> Event:
    """A raw event as a person query returns it (`_MOVE_FIELDS`), counted for `person`."""
    return Event(
        key=key,
        event_id="",
        user_id=data.get("user_id"),
        anonymous_id=data.get("anonymous_id"),
        event_type=data.get("event_type", ""),
        timestamp=data["ts"],
        session_id=data.get("session_id"),
        properties=decode_map(data.get("properties") or {}),
        received_at=0.0,
        who=person,
    )


def _markers(who: str, profile: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for name, granularity in _GRANULARITY_OF_FIELD.items():
        for period in profile.get(name) or {}:
            yield granularity, period, who


def _markers_by_who(markers: Iterable[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    by_who: dict[str, list[tuple[str, str]]] = {}
    for granularity, period, who in markers:
        by_who.setdefault(who, []).append((granularity, period))
    return by_who


def _profile_doc(
    who: str,
    delta: ProfileDelta,
    markers: Iterable[tuple[str, str]],
    updated: datetime,
    behavior: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole profile document holding `delta` and `markers`."""
    doc: dict[str, Any] = {
        "kind": "user",
        "user_id": who,
        "total_events": delta.total,
        "events_by_type": encode_map(dict(delta.by_type)),
        "first_seen": delta.first_seen,
        "last_activity": delta.last_activity,
        "last_updated": updated,
        MARKER_FIELD["hour"]: {},
        MARKER_FIELD["day"]: {},
    }
    for granularity, period in markers:
        doc[MARKER_FIELD[granularity]][period] = True
    if behavior:
        doc.update(behavior)
    return doc


def _new_profile_write(
    name: str,
    who: str,
    delta: ProfileDelta,
    markers: list[tuple[str, str]],
    updated: datetime,
    behavior: dict[str, Any] | None = None,
) -> Any:
    """create(): fails the batch with ALREADY_EXISTS if another worker made it meanwhile."""
    return write(name, _profile_doc(who, delta, markers, updated, behavior), exists=False)


def _profile_transforms(delta: ProfileDelta) -> list[tuple[str, str, float]]:
    return [
        ("total_events", "increment", delta.total),
        *_type_transforms("events_by_type", delta.by_type),
        ("first_seen", "minimum", delta.first_seen),
        ("last_activity", "maximum", delta.last_activity),
    ]


def _bucket_transforms(
    granularity: str, period: str, bucket: BucketDelta, new_uniques: Counter[tuple[str, str]]
) -> list[tuple[str, str, float]]:
    transforms = [
        ("total_events", "increment", bucket.total),
        *_type_transforms("events_by_type", bucket.by_type),
    ]
    if granularity in UNIQUE_GRANULARITIES:
        transforms.append(("unique_users", "increment", new_uniques[granularity, period]))
    return transforms


def _event_doc(
    event: Event, person: str, now: float, processed_at: datetime, expire_at: datetime
) -> dict:
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "who": event.who,
        # Who the event counts for (its actor, or the user an identity link gives it to) and
        # whether a bot sent it: what the behavioral recomputation queries and skips.
        "person": person,
        "bot": is_bot(event.properties),
        "event_type": event.event_type,
        "timestamp": _dt(event.timestamp),
        "ts": event.timestamp,  # exact epoch seconds: the Timestamp keeps microseconds only
        "session_id": event.session_id,
        "properties": encode_map(event.properties),
        "received_at": event.received_at,
        "processed_at": processed_at,
        "latency": now - event.received_at,
        "expire_at": expire_at,
    }


def _event_size(event: Event) -> int:
    """Bytes the event adds to a commit: its document plus a share of aggregate writes."""
    return 4 * _WRITE_OVERHEAD + len(_json(event.properties))


def _dead_letter_size(d: NewDeadLetter) -> int:
    return _WRITE_OVERHEAD + min(len(d.data), MAX_DEAD_LETTER_DATA) + len(d.detail) + 1024


def _dead_letter_doc(d: NewDeadLetter, now: float) -> dict:
    truncated = len(d.data) > MAX_DEAD_LETTER_DATA
    return {
        "reason": d.reason,
        "detail": d.detail,
        "source": d.source,
        "message_id": d.message_id,
        "attributes": encode_map(d.attributes),
        "data": d.data[:MAX_DEAD_LETTER_DATA],
        "data_truncated": truncated,
        "data_size": len(d.data),
        "received_at": d.received_at,
        "attempts": encode_map(d.attempts),
        "recorded_at": now,
        "replayed_at": None,
    }


def _stored_event(snap: DocumentSnapshot) -> StoredEvent:
    data = snap.to_dict() or {}
    event = Event(
        key=snap.id,
        event_id=data["event_id"],
        user_id=data.get("user_id"),
        anonymous_id=data.get("anonymous_id"),
        event_type=data["event_type"],
        timestamp=data["ts"],
        session_id=data.get("session_id"),
        properties=decode_map(data.get("properties") or {}),
        received_at=data["received_at"],
    )
    return StoredEvent(event, data["processed_at"].timestamp())


def _by_type(data: dict[str, Any]) -> dict[str, int]:
    # A type whose events all moved away (identity) or were forgotten is left at 0.
    return {t: n for t, n in decode_map(data.get("events_by_type") or {}).items() if n}


def _profile(snap: DocumentSnapshot) -> Profile:
    data = snap.to_dict() or {}
    return Profile(
        who=data["user_id"],
        total_events=data.get("total_events", 0),
        events_by_type=_by_type(data),
        first_seen=data["first_seen"],
        last_activity=data["last_activity"],
    )


def _series_point(
    granularity: Granularity, period: str, total: _BucketSum, behavioral: bool = False
) -> SeriesPoint:
    return SeriesPoint(
        granularity=granularity,
        period=period,
        total_events=total.total,
        events_by_type=dict(sorted(total.by_type.items())),
        unique_users=total.unique_users if granularity in UNIQUE_GRANULARITIES else None,
        bot_events=total.bot_events if behavioral else None,
    )


def _dead_letter(snap: DocumentSnapshot) -> DeadLetter:
    data = snap.to_dict() or {}
    return DeadLetter(
        reason=data["reason"],
        detail=data.get("detail", ""),
        data=bytes(data.get("data") or b""),
        message_id=data.get("message_id", ""),
        attributes=decode_map(data.get("attributes") or {}),
        source=data.get("source", "worker"),
        received_at=data.get("received_at", 0.0),
        attempts=decode_map(data.get("attempts") or []),
        id=snap.id,
        recorded_at=data.get("recorded_at", 0.0),
        replayed_at=data.get("replayed_at"),
    )


def _count(aggregation: Any, timeout: float) -> int:
    result = aggregation.get(timeout=timeout)
    return int(result[0][0].value)
