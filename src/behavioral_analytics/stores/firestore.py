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
  analytics_aggregates/user_{who}         profile (kind=user) with its unique-user markers
  analytics_aggregates/minute_|hourly_|daily_{period}   buckets (kind=bucket)
  analytics_aggregates/…{period}_shard{k} counter shards of a bucket (BA_FIRESTORE_COUNTER_SHARDS)
  dead_letters/{hash}                     rejected and dead-lettered messages
  pipeline_state/freshness[_shard{k}]     newest event time, last commit

The commit path builds the `firestore.v1` protobufs itself and sends them through the client's
own GAPIC stub: the client library's per-field proto-plus marshalling cost several times the
commit itself (see docs/gcp.md, "Throughput").
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import firestore as request_types
from google.cloud.firestore_v1.types import write as write_types

from behavioral_analytics.aggregation import (
    UNIQUE_GRANULARITIES,
    BucketDelta,
    Deltas,
    Granularity,
    Periods,
    ProfileDelta,
    fold,
)
from behavioral_analytics.events import Event
from behavioral_analytics.store import (
    AggregateSnapshot,
    CommitResult,
    DeadLetter,
    Freshness,
    NewDeadLetter,
    Page,
    Profile,
    SeriesPoint,
    Store,
    StoredEvent,
    StoreError,
    TransientStoreError,
    decode_cursor,
    encode_cursor,
)
from behavioral_analytics.stores.firestore_keys import (
    decode_map,
    doc_id,
    encode_map,
    encode_map_key,
)

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot

    from behavioral_analytics.config import Settings

__all__ = ["FirestoreStore"]

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

# Firestore: 10 MiB per commit request, 500 field transforms per document, 1 MiB per document.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_TRANSFORMS_PER_DOC = 450
MAX_DEAD_LETTER_DATA = 900 * 1024
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
_CONFLICTS = (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition)
_MAX_CONFLICTS = 12
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_PAGE = 1000
_MANY_HOURS = 100  # read a profile's whole hour map rather than this many single paths
_json = msgspec.json.Encoder().encode

_WritePb = write_types.Write.pb()
_CommitRequestPb = request_types.CommitRequest.pb()
_BatchGetRequestPb = request_types.BatchGetDocumentsRequest.pb()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _hash(*parts: object) -> str:
    raw = "\x1f".join(repr(p) if not isinstance(p, str | bytes) else str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def dead_letter_id(d: NewDeadLetter) -> str:
    """Stable across redeliveries of the same message (same id and publish time), distinct for a
    replay (a new publish time), so recording one is idempotent."""
    return _hash(d.source, d.message_id, d.received_at, d.reason, hashlib.sha256(d.data).digest())


# -- wire: firestore.v1 protobufs ------------------------------------------------------------


@lru_cache(maxsize=8192)
def _path(*parts: str) -> str:
    """A field path with every part quoted as needed (`events_by_type.\\`checkout.step_2\\``)."""
    return FieldPath(*parts).to_api_repr()


def _set_value(out: Any, value: Any) -> None:
    """Fill the `firestore.v1.Value` protobuf `out` with a JSON-like Python value."""
    if isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):
        out.boolean_value = value
    elif isinstance(value, int):
        out.integer_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif value is None:
        out.null_value = 0
    elif isinstance(value, dict):
        out.map_value.SetInParent()
        _set_fields(out.map_value.fields, value)
    elif isinstance(value, list | tuple):
        array = out.array_value
        array.SetInParent()
        for item in value:
            _set_value(array.values.add(), item)
    elif isinstance(value, datetime):
        out.timestamp_value.FromDatetime(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        out.bytes_value = bytes(value)
    else:
        raise TypeError(f"cannot store {type(value).__name__} in Firestore")


def _set_fields(out: Any, data: dict[str, Any]) -> None:
    for key, value in data.items():
        _set_value(out[key], value)


def _write(
    name: str,
    fields: dict[str, Any],
    *,
    mask: Iterable[str] | None = None,
    transforms: Iterable[tuple[str, str, float]] = (),
    exists: bool | None = None,
    update_time: Any = None,
) -> Any:
    """One `Write`: `mask` None replaces the document (create/set), else only the masked paths
    change (a merge; masked paths absent from `fields` are deleted). A transform is
    (field path, increment|minimum|maximum, number)."""
    write = _WritePb()
    write.update.name = name
    _set_fields(write.update.fields, fields)
    if mask is not None:
        write.update_mask.SetInParent()
        write.update_mask.field_paths.extend(mask)
    for path, operation, number in transforms:
        transform = write.update_transforms.add()
        transform.field_path = path
        _set_value(getattr(transform, operation), number)
    if exists is not None:
        write.current_document.exists = exists
    elif update_time is not None:
        write.current_document.update_time.CopyFrom(update_time)
    return write


def _type_transforms(prefix: str, by_type: Counter[str]) -> list[tuple[str, str, float]]:
    return [(_path(prefix, encode_map_key(t)), "increment", c) for t, c in by_type.items()]


@dataclass(frozen=True, slots=True)
class _Seen:
    """A profile as read before a commit: its version and the markers it holds."""

    update_time: Any  # protobuf Timestamp; None when not read (the markers were known)
    markers: frozenset[tuple[str, str]]  # (granularity, period)
    days: tuple[str, ...]  # every day marker (pruning needs them all)


@dataclass(slots=True)
class _BucketSum:
    """A bucket summed over its document and its counter shards."""

    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    unique_users: int = 0

    def add(self, data: dict[str, Any]) -> None:
        self.total += data.get("total_events", 0)
        self.by_type.update(_by_type(data))
        self.unique_users += data.get("unique_users", 0)


class FirestoreStore(Store):
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
    ) -> None:
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
        for part_events, part_dead in self._split(list(unique.values()), list(dead_letters)):
            part_created, part_lag = self._commit_atomic(part_events, part_dead)
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
        """Each aggregate document gets one transform per event type plus a few more."""
        limit = self.max_transforms_per_doc - 4
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
                writes, lag, markers = self._build(events, dead_letters, now)
                if not writes:
                    return [], None
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
            self._remember(markers)
            return events, lag

    def _send(self, writes: list[Any]) -> None:
        request = _CommitRequestPb(database=self._database_path, writes=writes)
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
            request = _BatchGetRequestPb(database=self._database_path)
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

    def _build(
        self, events: list[Event], dead_letters: list[NewDeadLetter], now: float
    ) -> tuple[list[Any], float | None, set[tuple[Granularity, str, str]]]:
        deltas = fold(events, self.periods)
        expire_at = _dt(now + self.raw_retention_s)
        processed_at = _dt(now)
        writes = [
            _write(
                self._name(EVENTS, event.key),
                _event_doc(event, now, processed_at, expire_at),
                exists=False,
            )
            for event in events
        ]
        new_uniques = self._add_profiles(writes, deltas, self._read_profiles(deltas), now)
        shard = self._next_shard()
        self._add_buckets(writes, deltas, new_uniques, processed_at, shard)
        writes.extend(
            _write(
                self._name(DEAD_LETTERS, dead_letter_id(d)), _dead_letter_doc(d, now), exists=False
            )
            for d in dead_letters
        )
        lag = max((now - e.received_at for e in events), default=None)
        if events:
            writes.append(self._freshness_write(events, now, lag, shard))
        return writes, lag, deltas.markers

    def _remember(self, markers: Iterable[tuple[str, str, str]]) -> None:
        """Markers a commit of this store made or found: they exist until they expire."""
        self._known.update(dict.fromkeys(markers))
        if len(self._known) > KNOWN_MARKERS_MAX:
            for marker in list(islice(self._known, len(self._known) - KNOWN_MARKERS_MAX // 2)):
                del self._known[marker]

    def _read_profiles(self, deltas: Deltas) -> dict[str, _Seen]:
        """The batch's users' profiles that exist, with the markers that matter. A user whose
        markers this store already knows needs no read: markers are never removed before they
        expire, so that profile's write needs no precondition either."""
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
            mask.extend(_path(MARKER_FIELD["hour"], hour) for hour in hours)
        names = {self._name(AGGREGATES, doc_id("user_", who)): who for who in unknown}
        for name, doc in self._get(list(names), mask).items():
            seen[names[name]] = _seen(doc)
        return seen

    def _add_profiles(
        self, writes: list[Any], deltas: Deltas, seen: dict[str, _Seen], now: float
    ) -> Counter[tuple[str, str]]:
        """Append one write per profile; return the new markers counted per bucket."""
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
            mask.append(_path(MARKER_FIELD[granularity], period))
        if any(granularity == "day" for granularity, _ in new):
            mask.extend(self._expired_marker_paths(state.days, now))
        return _write(
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
                paths.append(_path(MARKER_FIELD["day"], day))
                paths.extend(_path(MARKER_FIELD["hour"], f"{day}-{h:02d}") for h in range(24))
        return paths

    def _add_buckets(
        self,
        writes: list[Any],
        deltas: Deltas,
        new_uniques: Counter[tuple[str, str]],
        updated: datetime,
        shard: int | None,
    ) -> None:
        for (granularity, period), bucket in deltas.buckets.items():
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
            writes.append(
                _write(
                    self._name(AGGREGATES, document),
                    fields,
                    mask=list(fields),
                    transforms=_bucket_transforms(granularity, period, bucket, new_uniques),
                )
            )

    def _freshness_write(
        self, events: list[Event], now: float, lag: float | None, shard: int | None
    ) -> Any:
        document = FRESHNESS if shard is None else f"{FRESHNESS}{SHARD_SUFFIX}{shard}"
        return _write(
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
        return _profile(snap) if snap.exists else None

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
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
        return [_series_point(granularity, period, total) for period, total in sums.items()]

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
            snap.buckets[key] = (total.total, dict(total.by_type))
            if key[0] in UNIQUE_GRANULARITIES:
                snap.unique_users[key] = total.unique_users
        return snap

    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace the aggregates by the fold of `events`. Not atomic: stop the workers first."""
        deltas = fold(events, self.periods)
        self._known.clear()
        self._delete_all(AGGREGATES)
        writer = self.db.batch()
        updated = _dt(self._clock())
        uniques = deltas.unique_users()
        for (granularity, period), bucket in deltas.buckets.items():
            doc: dict[str, Any] = {
                "kind": "bucket",
                "granularity": granularity,
                "period": period,
                "total_events": bucket.total,
                "events_by_type": encode_map(dict(bucket.by_type)),
                "last_updated": updated,
            }
            if granularity in UNIQUE_GRANULARITIES:
                doc["unique_users"] = uniques[granularity, period]
            writer.set(self._bucket_ref(granularity, period), doc)
            writer = self._flush_if_full(writer)
        markers = _markers_by_who(deltas.markers)
        for who, p in deltas.profiles.items():
            writer.set(
                self._profile_ref(who),
                _profile_doc(who, p, markers.get(who, []), updated),
            )
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
        self.db.close()


# -- documents ------------------------------------------------------------------------------


def _seen(doc: Any) -> _Seen:
    fields = doc.fields
    markers: set[tuple[str, str]] = set()
    days: tuple[str, ...] = ()
    for name, granularity in _GRANULARITY_OF_FIELD.items():
        if name in fields:
            periods = tuple(fields[name].map_value.fields.keys())
            markers.update((granularity, period) for period in periods)
            if granularity == "day":
                days = periods
    return _Seen(doc.update_time, frozenset(markers), days)


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
    who: str, delta: ProfileDelta, markers: Iterable[tuple[str, str]], updated: datetime
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
    return doc


def _new_profile_write(
    name: str, who: str, delta: ProfileDelta, markers: list[tuple[str, str]], updated: datetime
) -> Any:
    """create(): fails the batch with ALREADY_EXISTS if another worker made it meanwhile."""
    return _write(name, _profile_doc(who, delta, markers, updated), exists=False)


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


def _event_doc(event: Event, now: float, processed_at: datetime, expire_at: datetime) -> dict:
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "who": event.who,
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
    return decode_map(data.get("events_by_type") or {})


def _profile(snap: DocumentSnapshot) -> Profile:
    data = snap.to_dict() or {}
    return Profile(
        who=data["user_id"],
        total_events=data.get("total_events", 0),
        events_by_type=_by_type(data),
        first_seen=data["first_seen"],
        last_activity=data["last_activity"],
    )


def _series_point(granularity: Granularity, period: str, total: _BucketSum) -> SeriesPoint:
    return SeriesPoint(
        granularity=granularity,
        period=period,
        total_events=total.total,
        events_by_type=dict(sorted(total.by_type.items())),
        unique_users=total.unique_users if granularity in UNIQUE_GRANULARITIES else None,
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
