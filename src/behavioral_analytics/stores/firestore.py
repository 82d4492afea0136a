"""The read model on Firestore, in the seed recipe's layout.

A commit is one atomic `WriteBatch`: `create()` for every raw event (so a redelivered event
fails the batch with ALREADY_EXISTS instead of being counted twice), `create()` for each new
unique-user marker, and one merge write with `Increment`/`Minimum`/`Maximum` transforms per
aggregate document touched (the fold has already merged the batch per document). On
ALREADY_EXISTS the store reads which documents exist, drops them, recomputes, and commits
again. Collections:

  user_events/{event key}                 canonical event, TTL field `expire_at`
  analytics_aggregates/user_{who}         profile (kind=user)
  analytics_aggregates/minute_|hourly_|daily_{period}   buckets (kind=bucket)
  unique_user_markers/{hash}              one per (granularity, period, who), hour and day
  dead_letters/{hash}                     rejected and dead-lettered messages
  pipeline_state/freshness                newest event time, last commit
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from behavioral_analytics.aggregation import (
    UNIQUE_GRANULARITIES,
    Deltas,
    Granularity,
    Periods,
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
MARKERS = "unique_user_markers"
DEAD_LETTERS = "dead_letters"
STATE = "pipeline_state"

BUCKET_PREFIX: dict[str, str] = {"minute": "minute_", "hour": "hourly_", "day": "daily_"}
_GRANULARITY_OF_PREFIX = {v: k for k, v in BUCKET_PREFIX.items()}

# Firestore: 10 MiB per commit request, 500 field transforms per document, 1 MiB per document.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_TRANSFORMS_PER_DOC = 450
MAX_DEAD_LETTER_DATA = 900 * 1024
_WRITE_OVERHEAD = 300  # bytes per write beyond its fields (name, precondition, framing)

_TRANSIENT = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.GatewayTimeout,
)
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_PAGE = 1000
_json = msgspec.json.Encoder().encode


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _hash(*parts: object) -> str:
    raw = "\x1f".join(repr(p) if not isinstance(p, str | bytes) else str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def marker_id(granularity: str, period: str, who: str) -> str:
    return _hash(granularity, period, who)


def dead_letter_id(d: NewDeadLetter) -> str:
    """Stable across redeliveries of the same message (same id and publish time), distinct for a
    replay (a new publish time), so recording one is idempotent."""
    return _hash(d.source, d.message_id, d.received_at, d.reason, hashlib.sha256(d.data).digest())


class FirestoreStore(Store):
    def __init__(
        self,
        client: firestore.Client,
        *,
        timezone: str = "UTC",
        raw_retention_s: float = 30 * 86400.0,
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
        self.max_request_bytes = max_request_bytes
        self.max_transforms_per_doc = max_transforms_per_doc
        self.timeout_s = timeout_s
        self._clock = clock
        self.write_ops = 0  # document writes in successful commits (what Firestore bills)
        self.commits = 0
        self.conflicts = 0  # commits refused with ALREADY_EXISTS and recomputed

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        client = firestore.Client(project=settings.project, database=settings.firestore_database)
        return cls(
            client,
            timezone=settings.timezone,
            raw_retention_s=settings.raw_retention_days * 86400.0,
            database=settings.firestore_database,
        )

    def init(self) -> list[str]:
        return [
            f"Firestore database {self.database!r}: nothing to create; composite indexes "
            "come from firestore.indexes.json (Terraform), the TTL policy on "
            f"{EVENTS}.expire_at likewise"
        ]

    # -- references -------------------------------------------------------------------------

    def _event_ref(self, key: str) -> DocumentReference:
        return self.db.collection(EVENTS).document(key)

    def _bucket_ref(self, granularity: str, period: str) -> DocumentReference:
        return self.db.collection(AGGREGATES).document(BUCKET_PREFIX[granularity] + period)

    def _profile_ref(self, who: str) -> DocumentReference:
        return self.db.collection(AGGREGATES).document(doc_id("user_", who))

    def _marker_ref(self, marker: tuple[str, str, str]) -> DocumentReference:
        return self.db.collection(MARKERS).document(marker_id(*marker))

    def _dead_letter_ref(self, d: NewDeadLetter) -> DocumentReference:
        return self.db.collection(DEAD_LETTERS).document(dead_letter_id(d))

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
        transient_failures = 0
        while True:
            now = self._clock()
            try:
                batch, lag = self._build(events, dead_letters, now)
                writes = len(batch)
                if writes == 0:
                    return [], None
                batch.commit(timeout=self.timeout_s)
            except (gexc.AlreadyExists, gexc.Conflict):
                self.conflicts += 1
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
            self.write_ops += writes
            self.commits += 1
            return events, lag

    def _drop_existing(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> tuple[list[Event], list[NewDeadLetter]]:
        refs = [self._event_ref(e.key) for e in events]
        refs += [self._dead_letter_ref(d) for d in dead_letters]
        existing = self._existing(refs)
        return (
            [e for e in events if e.key not in existing],
            [d for d in dead_letters if dead_letter_id(d) not in existing],
        )

    def _existing(self, refs: Sequence[DocumentReference]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(refs), _PAGE):
            chunk = refs[start : start + _PAGE]
            try:
                snapshots = self.db.get_all(chunk, field_paths=["kind"], timeout=self.timeout_s)
                found.update(s.id for s in snapshots if s.exists)
            except _TRANSIENT as exc:
                raise TransientStoreError(f"Firestore read failed: {exc}") from exc
        return found

    def _build(
        self, events: list[Event], dead_letters: list[NewDeadLetter], now: float
    ) -> tuple[firestore.WriteBatch, float | None]:
        batch = self.db.batch()
        deltas = fold(events, self.periods)
        expire_at = _dt(now + self.raw_retention_s)
        processed_at = _dt(now)
        for event in events:
            batch.create(
                self._event_ref(event.key), _event_doc(event, now, processed_at, expire_at)
            )
        new_uniques = self._create_new_markers(batch, deltas)
        self._add_aggregates(batch, deltas, new_uniques, processed_at)
        for d in dead_letters:
            batch.create(self._dead_letter_ref(d), _dead_letter_doc(d, now))
        lag = max((now - e.received_at for e in events), default=None)
        if events:
            batch.set(
                self.db.collection(STATE).document("freshness"),
                {
                    "newest_event_at": firestore.Maximum(max(e.timestamp for e in events)),
                    "last_commit_at": firestore.Maximum(now),
                    "lag_s": lag,
                },
                merge=True,
            )
        return batch, lag

    def _create_new_markers(
        self, batch: firestore.WriteBatch, deltas: Deltas
    ) -> Counter[tuple[str, str]]:
        """Create the markers that do not exist yet; count them per bucket. A worker creating
        the same marker concurrently makes the commit fail ALREADY_EXISTS: re-read, recompute."""
        markers = sorted(deltas.markers)
        existing = self._existing([self._marker_ref(m) for m in markers])
        new: Counter[tuple[str, str]] = Counter()
        for marker in markers:
            ref = self._marker_ref(marker)
            if ref.id in existing:
                continue
            granularity, period, who = marker
            batch.create(ref, {"granularity": granularity, "period": period, "who": who})
            new[granularity, period] += 1
        return new

    def _add_aggregates(
        self,
        batch: firestore.WriteBatch,
        deltas: Deltas,
        new_uniques: Counter[tuple[str, str]],
        updated: datetime,
    ) -> None:
        for (granularity, period), bucket in deltas.buckets.items():
            doc: dict[str, Any] = {
                "kind": "bucket",
                "granularity": granularity,
                "period": period,
                "total_events": firestore.Increment(bucket.total),
                "events_by_type": {
                    encode_map_key(t): firestore.Increment(c) for t, c in bucket.by_type.items()
                },
                "last_updated": updated,
            }
            if granularity in UNIQUE_GRANULARITIES:
                doc["unique_users"] = firestore.Increment(new_uniques[granularity, period])
            batch.set(self._bucket_ref(granularity, period), doc, merge=True)
        for who, profile in deltas.profiles.items():
            batch.set(
                self._profile_ref(who),
                {
                    "kind": "user",
                    "user_id": who,
                    "total_events": firestore.Increment(profile.total),
                    "events_by_type": {
                        encode_map_key(t): firestore.Increment(c)
                        for t, c in profile.by_type.items()
                    },
                    "first_seen": firestore.Minimum(profile.first_seen),
                    "last_activity": firestore.Maximum(profile.last_activity),
                    "last_updated": updated,
                },
                merge=True,
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
        # Bucket ids sort like their periods, so a range on the id needs no composite index.
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
                    FieldPath.document_id(), "<=", collection.document(prefix + (end or "\uf8ff"))
                )
            )
            .order_by(FieldPath.document_id())
        )
        return [
            _series_point(snap)
            for snap in self._stream_all(query)
            if snap.get("kind") == "bucket" and snap.get("granularity") == granularity
        ]

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
        snap = self.db.collection(STATE).document("freshness").get(timeout=self.timeout_s)
        if not snap.exists:
            return Freshness(None, None, None)
        data = snap.to_dict() or {}
        return Freshness(data.get("newest_event_at"), data.get("last_commit_at"), data.get("lag_s"))

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
        for doc in self._all(AGGREGATES):
            data = doc.to_dict() or {}
            kind = data.get("kind")
            if kind == "bucket":
                key = (data["granularity"], data["period"])
                snap.buckets[key] = (data.get("total_events", 0), _by_type(data))
                if data["granularity"] in UNIQUE_GRANULARITIES:
                    snap.unique_users[key] = data.get("unique_users", 0)
            elif kind == "user":
                profile = _profile(doc)
                snap.profiles[profile.who] = (
                    profile.total_events,
                    profile.events_by_type,
                    profile.first_seen,
                    profile.last_activity,
                )
        for doc in self._all(MARKERS):
            data = doc.to_dict() or {}
            snap.markers.add((data["granularity"], data["period"], data["who"]))
        return snap

    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace the aggregates by the fold of `events`. Not atomic: stop the workers first."""
        deltas = fold(events, self.periods)
        for collection in (AGGREGATES, MARKERS):
            self._delete_all(collection)
        writer = self.db.batch()
        updated = _dt(self._clock())
        for marker in deltas.markers:
            writer.set(
                self._marker_ref(marker),
                dict(zip(("granularity", "period", "who"), marker, strict=True)),
            )
            writer = self._flush_if_full(writer)
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
        for who, p in deltas.profiles.items():
            writer.set(
                self._profile_ref(who),
                {
                    "kind": "user",
                    "user_id": who,
                    "total_events": p.total,
                    "events_by_type": encode_map(dict(p.by_type)),
                    "first_seen": p.first_seen,
                    "last_activity": p.last_activity,
                    "last_updated": updated,
                },
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
            self.db.collection(STATE).document("freshness").get(timeout=5.0, retry=None)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"Firestore unreachable: {exc}") from exc

    def close(self) -> None:
        self.db.close()


# -- documents ------------------------------------------------------------------------------


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


def _series_point(snap: DocumentSnapshot) -> SeriesPoint:
    data = snap.to_dict() or {}
    granularity = data["granularity"]
    return SeriesPoint(
        granularity=granularity,
        period=data["period"],
        total_events=data.get("total_events", 0),
        events_by_type=dict(sorted(_by_type(data).items())),
        unique_users=data.get("unique_users", 0) if granularity in UNIQUE_GRANULARITIES else None,
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
