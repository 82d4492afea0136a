"""The read side of the Firestore store: profiles, timelines, events by type, time series
(buckets summed over their counter shards), sessions, funnels, identity links, dead letters,
freshness and counts, and the codecs of what it reads.

Bucket ids sort like their periods, so a range of periods is a range of document ids (no
composite index); a bucket's counter shards (`…{period}_shard{k}`) sort right after its
document and are summed on read (`BucketSum`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from behavioral_analytics.actors import ANONYMOUS_PREFIX
from behavioral_analytics.aggregation import UNIQUE_GRANULARITIES, Granularity
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import (
    BreakdownPoint,
    DeadLetter,
    Freshness,
    FunnelDay,
    Page,
    Profile,
    SeriesPoint,
    SessionPoint,
    StoredEvent,
    StoreError,
    decode_cursor,
    encode_cursor,
)
from behavioral_analytics.stores.firestore.breakdown_layout import (
    ADMITTED,
    COUNT_MAPS,
    Gathered,
    breakdown_doc_id,
    bucket_breakdowns,
    bucket_doc_id,
    counts_prefix,
    values_prefix,
)
from behavioral_analytics.stores.firestore.documents import as_datetime, links_of
from behavioral_analytics.stores.firestore.gateway import PAGE, Gateway
from behavioral_analytics.stores.firestore.identity import decode_links
from behavioral_analytics.stores.firestore.keys import (
    decode_map,
    decode_map_key,
    doc_id,
    encode_map_key,
)
from behavioral_analytics.stores.firestore.minutes import MINUTES_FIELD, minutes_of, split_minute
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BOT_FIELD,
    BREAKDOWNS,
    BUCKET_BREAKDOWNS_FIELD,
    BUCKET_PREFIX,
    DEAD_LETTERS,
    EVENTS,
    FRESHNESS,
    FUNNEL_FIELD,
    LINKED_USERS_FIELD,
    LINKS_FIELD,
    SESSION_STATS_FIELD,
    SHARD_SUFFIX,
    STATE,
)
from behavioral_analytics.stores.firestore.wire import field_path

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot

__all__ = [
    "BucketSum",
    "Reads",
    "count",
    "dead_letter_of",
    "profile_of",
    "series_point",
    "stored_event",
]


class Reads:
    """The store's queries, through `gateway`, every request made with `gateway.bound` (the
    facade turns their errors into the port's); `options` says whether the behavioral read
    model is on and holds its rules. Every method raises as the `Store` port's does."""

    def __init__(self, gateway: Gateway, options: StoreOptions) -> None:
        self.gateway = gateway
        self.options = options

    def _profile_ref(self, who: str) -> DocumentReference:
        return self.gateway.collection(AGGREGATES).document(doc_id("user_", who))

    def profile(self, who: str) -> Profile | None:
        snap = self._profile_ref(who).get(**self.gateway.bound)
        return profile_of(snap) if snap.exists and snap.get("kind") == "user" else None

    def links(self, who: str) -> list[Link]:
        self.options.need_behavior("identity links")
        bound = self.gateway.bound
        if who.startswith(ANONYMOUS_PREFIX):
            snap = self._profile_ref(who).get(**bound)
            found = decode_links(who, (snap.to_dict() or {}).get(LINKS_FIELD))
        else:
            query = (
                self.gateway.collection(AGGREGATES)
                .where(filter=firestore.FieldFilter(LINKED_USERS_FIELD, "array_contains", who))
                .select(["user_id", LINKS_FIELD])
            )
            found = tuple(
                link
                for snap in query.stream(**bound)
                for link in links_of(snap)
                if link.user_id == who
            )
        return sorted(found, key=lambda link: (link.linked_at, link.event_key))

    def stored_links(self) -> list[Link]:
        if not self.options.behavioral:
            return []
        query = (
            self.gateway.collection(AGGREGATES)
            .select(["user_id", LINKS_FIELD])
            .order_by(FieldPath.document_id())
        )
        return [
            link for snap in self.gateway.stream_all(query, bounded=True) for link in links_of(snap)
        ]

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        if self.options.behavioral:  # who each event counts for, identity links followed
            return self._page("person", who, limit, cursor)
        if who.startswith(ANONYMOUS_PREFIX):
            return self._page("who", who, limit, cursor)
        return self._page("user_id", who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        return self._page("event_type", event_type, limit, cursor)

    def _page(self, name: str, value: str, limit: int, cursor: str | None) -> Page[StoredEvent]:
        limit = max(1, min(limit, 1000))
        events = self.gateway.collection(EVENTS)
        query = (
            events.where(filter=firestore.FieldFilter(name, "==", value))
            .order_by("timestamp", direction=firestore.Query.DESCENDING)
            .order_by(FieldPath.document_id(), direction=firestore.Query.DESCENDING)
        )
        if cursor:
            ts, key = decode_cursor(cursor)
            query = query.start_after(
                {"timestamp": as_datetime(ts), "__name__": events.document(key)}
            )
        docs = list(query.limit(limit + 1).stream(**self.gateway.bound))
        items = [stored_event(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = items[-1].event
            next_cursor = encode_cursor(last.timestamp, last.key)
        return Page(items, next_cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        events = self.gateway.collection(EVENTS)
        refs = [events.document(k) for k in dict.fromkeys(keys) if k and "/" not in k]
        found: list[StoredEvent] = []
        for start in range(0, len(refs), PAGE):
            snapshots = self.gateway.client.get_all(
                refs[start : start + PAGE], **self.gateway.bound
            )
            found.extend(stored_event(s) for s in snapshots if s.exists)
        return found

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        behavioral = self.options.behavioral
        return [
            series_point(granularity, period, total, behavioral)
            for period, total in self.bucket_sums(granularity, start, end).items()
            # Not a bucket every event left (`forget`); one of crawlers only is returned.
            if total.total or (behavioral and total.bot_events)
        ]

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        """With the behavioral read model only (the store checks)."""
        if granularity not in ("hour", "day"):
            raise StoreError("sessions are kept per hour and per day")
        options = self.options
        now = options.clock()
        return [
            SessionPoint(
                granularity,
                period,
                total.sessions,
                options.rules.session_final(options.periods, granularity, period, now),
            )
            for period, total in self.bucket_sums(granularity, start, end).items()
            if total.sessions.sessions
        ]

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        """With the behavioral read model only (the store checks)."""
        funnel = self.options.rules.funnel(name)
        if funnel is None:
            raise StoreError(f"no funnel named {name!r}")
        days = []
        for day, total in self.bucket_sums("day", start, end).items():
            users = [
                total.funnel_users.get((name, step), 0) for step in range(1, len(funnel.steps) + 1)
            ]
            if users[0]:
                days.append(FunnelDay(day, users))
        return days

    def breakdown(
        self, dimension: str, granularity: Granularity, start: str | None, end: str | None
    ) -> list[BreakdownPoint]:
        """One dimension's points with start <= period <= end (`breakdown_layout`): its own
        values documents, the granularity's bucket documents' breakdowns and its period values
        and counts documents (only this dimension's entries selected), each a range of document
        ids, no composite index."""
        gathered = Gathered(with_sessions=True)
        prefix = breakdown_doc_id(granularity, "", dimension)
        for data in self._id_range(prefix, start, end):
            if data.get("dimension") == dimension and data.get("granularity") == granularity:
                gathered.add(data)  # (not another dimension whose escaped name this prefixes)
        key = encode_map_key(dimension)
        held = [field_path(BUCKET_BREAKDOWNS_FIELD, m, key) for m in (ADMITTED, *COUNT_MAPS)]
        buckets = self._id_range(
            bucket_doc_id(granularity, ""), start, end, ["granularity", "period", *held], AGGREGATES
        )
        for data in buckets:
            in_bucket = bucket_breakdowns(data)
            if in_bucket is not None:
                gathered.add(in_bucket)
        mask = ["granularity", "period", *(field_path(m, key) for m in (ADMITTED, *COUNT_MAPS))]
        for data in self._id_range(values_prefix(granularity), start, end, mask):
            gathered.add({**data, ADMITTED: data.get(ADMITTED) or {}})
        mask = ["granularity", "period", *(field_path(m, key) for m in COUNT_MAPS)]
        for data in self._id_range(counts_prefix(granularity), start, end, mask):
            gathered.add(data)
        points = []
        for set_key in gathered.sets():
            period = set_key[1]
            if (start is None or period >= start) and (end is None or period <= end):
                point = gathered.point(set_key)
                if point is not None:
                    points.append(point)
        return sorted(points, key=lambda point: point.period)

    def _id_range(
        self,
        prefix: str,
        start: str | None,
        end: str | None,
        mask: list[str] | None = None,
        collection: str = BREAKDOWNS,
    ) -> Iterator[dict[str, Any]]:
        """The documents of `collection` whose ids are `prefix` + a period in [start, end]
        (and what follows it: spill parts, a bucket's shards), `mask`'s fields only when
        given."""
        for snap in self.gateway.id_range(collection, prefix, start, end, mask, bounded=True):
            yield snap.to_dict() or {}

    def bucket_sums(
        self, granularity: Granularity, start: str | None, end: str | None
    ) -> dict[str, BucketSum]:
        """Per period (start <= period <= end, in order), its bucket documents summed; a
        minute's from its hour's documents (`minutes`) and any `minute_…` document an earlier
        layout wrote."""
        sums: dict[str, BucketSum] = {}
        if granularity == "minute":
            first = None if start is None else split_minute(start)[0]
            last = None if end is None else split_minute(end)[0]
            for data in self._bucket_documents("hour", first, last, minutes=True):
                for period, fields in minutes_of(data.get("period", ""), data):
                    if (start is None or period >= start) and (end is None or period <= end):
                        sums.setdefault(period, BucketSum()).add(fields)
        for data in self._bucket_documents(granularity, start, end):
            period = data.get("period", "")
            if (start is None or period >= start) and (end is None or period <= end):
                sums.setdefault(period, BucketSum()).add(data)
        return dict(sorted(sums.items()))

    def _bucket_documents(
        self, granularity: Granularity, start: str | None, end: str | None, *, minutes: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The bucket documents (and counter shards) of `granularity` from period `start` to
        `end` (None: unbounded), in id order, with the fields `BucketSum` adds (`_SUMMED`) and,
        with `minutes`, an hour's minutes: not the breakdowns a period's bucket carries
        (`breakdown_layout`: up to 14 KB an hour on the live benchmark)."""
        # Bucket ids sort like their periods, so a range on the id needs no composite index;
        # a bucket's counter shards (`…{period}_shard{k}`) sort right after its document.
        mask = [*_SUMMED, MINUTES_FIELD] if minutes else list(_SUMMED)
        for data in self._id_range(BUCKET_PREFIX[granularity], start, end, mask, AGGREGATES):
            if data.get("kind") == "bucket" and data.get("granularity") == granularity:
                yield data

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        limit = max(1, min(limit, 1000))
        collection = self.gateway.collection(DEAD_LETTERS)
        query = collection.order_by("recorded_at", direction=firestore.Query.DESCENDING).order_by(
            FieldPath.document_id(), direction=firestore.Query.DESCENDING
        )
        if cursor:
            recorded_at, key = decode_cursor(cursor)
            query = query.start_after(
                {"recorded_at": recorded_at, "__name__": collection.document(key)}
            )
        docs = list(query.limit(limit + 1).stream(**self.gateway.bound))
        items = [dead_letter_of(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            next_cursor = encode_cursor(items[-1].recorded_at, items[-1].id)
        return Page(items, next_cursor)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        if not dead_letter_id or "/" in dead_letter_id:
            return None
        snap = (
            self.gateway.collection(DEAD_LETTERS).document(dead_letter_id).get(**self.gateway.bound)
        )
        return dead_letter_of(snap) if snap.exists else None

    def count_dead_letters(self) -> int:
        # google-cloud-firestore leaves `CollectionReference.count` unannotated.
        aggregation = self.gateway.collection(DEAD_LETTERS).count()  # type: ignore[no-untyped-call]
        return count(aggregation, **self.gateway.bound)

    def active_users(self, since: float) -> int:
        # Only profiles carry `last_activity`, so the automatic single-field index serves this.
        query = self.gateway.collection(AGGREGATES).where(
            filter=firestore.FieldFilter("last_activity", ">=", since)
        )
        return count(query.count(), **self.gateway.bound)

    def freshness(self) -> Freshness:
        state = self.gateway.collection(STATE)
        refs = [state.document(FRESHNESS)]
        refs += [
            state.document(f"{FRESHNESS}{SHARD_SUFFIX}{k}")
            for k in range(self.options.counter_shards)
        ]
        snapshots = self.gateway.client.get_all(refs, **self.gateway.bound)
        found = [s.to_dict() or {} for s in snapshots]
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
        # google-cloud-firestore leaves `CollectionReference.count` unannotated.
        aggregation = self.gateway.collection(EVENTS).count()  # type: ignore[no-untyped-call]
        return count(aggregation, **self.gateway.bound)


# -- codecs ----------------------------------------------------------------------------------


@dataclass(slots=True)
class BucketSum:
    """A bucket summed over its document and its counter shards."""

    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    unique_users: int = 0
    counted: bool = False  # some document of it counts human events (not only bots)
    bot_events: int = 0
    sessions: SessionStats = field(default_factory=SessionStats)
    funnel_users: Counter[tuple[str, int]] = field(default_factory=Counter)

    def add(self, data: dict[str, Any]) -> None:
        """Add one bucket document's (or shard's) fields."""
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


# What `BucketSum.add` reads of a bucket document, and what tells a bucket's document apart.
_SUMMED = (
    "kind",
    "granularity",
    "period",
    "total_events",
    "events_by_type",
    "unique_users",
    BOT_FIELD,
    SESSION_STATS_FIELD,
    FUNNEL_FIELD,
)


def series_point(
    granularity: Granularity, period: str, total: BucketSum, behavioral: bool = False
) -> SeriesPoint:
    """A summed bucket as a point of a time series."""
    return SeriesPoint(
        granularity=granularity,
        period=period,
        total_events=total.total,
        events_by_type=dict(sorted(total.by_type.items())),
        unique_users=total.unique_users if granularity in UNIQUE_GRANULARITIES else None,
        bot_events=total.bot_events if behavioral else None,
    )


def stored_event(snap: DocumentSnapshot[Any]) -> StoredEvent:
    """A raw event's document as read."""
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


def profile_of(snap: DocumentSnapshot[Any]) -> Profile:
    """A profile document as read."""
    data = snap.to_dict() or {}
    return Profile(
        who=data["user_id"],
        total_events=data.get("total_events", 0),
        events_by_type=_by_type(data),
        first_seen=data["first_seen"],
        last_activity=data["last_activity"],
    )


def dead_letter_of(snap: DocumentSnapshot[Any]) -> DeadLetter:
    """A dead letter's document as read."""
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


def count(aggregation: Any, **bound: Any) -> int:
    """The result of a count aggregation query, read with `bound` (`retry=`, `timeout=`)."""
    result = aggregation.get(**bound)
    return int(result[0][0].value)
