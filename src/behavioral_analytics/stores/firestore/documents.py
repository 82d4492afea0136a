"""Documents of the Firestore store, as Python values: the raw event, the profile (with its
unique-user markers), buckets, dead letters and freshness as written; a profile or person
document as a commit reads it (`Seen`); the behavioral read model's profile fields and bucket
transforms.

Unique users per hour and day are markers kept in the user's profile document
(`unique_hours`, `unique_days`), which the flush writes anyway. Map keys (event types,
property keys, funnel names) are escaped (`keys`); field paths are quoted
(`wire.field_path`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from behavioral_analytics.aggregation import (
    UNIQUE_GRANULARITIES,
    BucketDelta,
    Deltas,
    Periods,
    ProfileDelta,
)
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.sessions import SessionDelta, SessionStats
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.stores.firestore.behavior import (
    PersonChange,
    PersonState,
    decode_progress,
    decode_recent,
    decode_sessions,
    encode_progress,
    encode_recent,
    encode_sessions,
)
from behavioral_analytics.stores.firestore.breakdowns import decode_markers
from behavioral_analytics.stores.firestore.identity import decode_anonymous_events, decode_links
from behavioral_analytics.stores.firestore.keys import (
    decode_map,
    encode_map,
    encode_map_key,
)
from behavioral_analytics.stores.firestore.minutes import minute_prefix, split_minute
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    ANONYMOUS_EVENTS_FIELD,
    BOT_FIELD,
    BREAKDOWN_MARKER_FIELD,
    BUCKET_PREFIX,
    FORGOTTEN_FIELD,
    FRESHNESS,
    FUNNEL_FIELD,
    GRANULARITY_OF_FIELD,
    LINKS_FIELD,
    MARKER_FIELD,
    MAX_DEAD_LETTER_DATA,
    PROGRESS_FIELD,
    RECENT_FIELD,
    SESSION_STATS,
    SESSION_STATS_FIELD,
    SESSIONS_FIELD,
    SHARD_SUFFIX,
    STATE,
    WRITE_OVERHEAD_BYTES,
)
from behavioral_analytics.stores.firestore.wire import field_path, from_value, write
from behavioral_analytics.tombstones import covers

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import DocumentSnapshot

__all__ = [
    "Extra",
    "Seen",
    "add_bucket_writes",
    "as_datetime",
    "behavior_fields",
    "behavior_transforms",
    "bucket_transforms",
    "dead_letter_doc",
    "dead_letter_id",
    "dead_letter_size",
    "distinct_dead_letters",
    "event_doc",
    "event_size",
    "forgets",
    "freshness_write",
    "links_of",
    "markers_by_who",
    "markers_of",
    "new_profile_write",
    "profile_doc",
    "profile_transforms",
    "queried_event",
    "read_seen",
    "type_transforms",
]

# Transforms per bucket document, beyond the fold's: (granularity, period) -> (field path,
# increment|minimum|maximum, number).
Extra = dict[tuple[str, str], list[tuple[str, str, float]]]

_json = msgspec.json.Encoder().encode


def as_datetime(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime (a Firestore Timestamp)."""
    return datetime.fromtimestamp(epoch, UTC)


def _hash(*parts: object) -> str:
    raw = "\x1f".join(repr(p) if not isinstance(p, str | bytes) else str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def dead_letter_id(d: NewDeadLetter) -> str:
    """The dead letter's `retry_fingerprint` when it has one (the same rejection retried is one
    document); else stable across redeliveries of the same message (same id and publish time),
    distinct for a replay (a new publish time), so recording one is idempotent."""
    if d.retry_fingerprint is not None:
        return d.retry_fingerprint
    return _hash(d.source, d.message_id, d.received_at, d.reason, hashlib.sha256(d.data).digest())


def type_transforms(prefix: str, by_type: Counter[str]) -> list[tuple[str, str, float]]:
    """An increment of `prefix.{type}` per event type."""
    return [(field_path(prefix, encode_map_key(t)), "increment", c) for t, c in by_type.items()]


# -- a profile as a commit reads it ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
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
    # (day, dimension, counted value): per-value breakdown markers of the days read
    breakdown_markers: frozenset[tuple[str, str, str]] = frozenset()


def forgets(seen: Seen | None, event: Event, sender: bool = True) -> bool:
    """Whether this document's person has a tombstone that covers `event` (`tombstones.covers`):
    as its sender's (`sender`), else as the tombstone of the person it counts for."""
    if seen is None:
        return False
    if sender:
        return covers(event, seen.forgotten_at)
    return covers(event, None, seen.forgotten_at)


def read_seen(doc: Any, behavioral: bool = False, who: str = "") -> Seen:
    """A `Document` protobuf read with a mask (markers; with `behavioral`, `PERSON_FIELDS`)
    as a `Seen` of `who`."""
    fields = doc.fields
    markers: set[tuple[str, str]] = set()
    days: tuple[str, ...] = ()
    for name, granularity in GRANULARITY_OF_FIELD.items():
        if name in fields:
            periods = tuple(fields[name].map_value.fields.keys())
            markers.update((granularity, period) for period in periods)
            if granularity == "day":
                days = periods
    if not behavioral:
        return Seen(doc.update_time, frozenset(markers), days)

    def read(name: str) -> Any:
        return from_value(fields[name]) if name in fields else None

    return Seen(
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
        breakdown_markers=decode_markers(read(BREAKDOWN_MARKER_FIELD)),
    )


def links_of(snap: DocumentSnapshot[Any]) -> tuple[Link, ...]:
    """The identity links a profile or person document holds."""
    data = snap.to_dict() or {}
    return decode_links(data.get("user_id", ""), data.get(LINKS_FIELD))


def queried_event(key: str, data: dict[str, Any], person: str) -> Event:
    """A raw event as a person query returns it (`MOVE_FIELDS`), counted for `person`."""
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


def markers_of(who: str, profile: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(granularity, period, who) per unique-user marker of a profile's fields."""
    for name, granularity in GRANULARITY_OF_FIELD.items():
        for period in profile.get(name) or {}:
            yield granularity, period, who


def markers_by_who(markers: Iterable[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    """(granularity, period, who) markers grouped by who."""
    by_who: dict[str, list[tuple[str, str]]] = {}
    for granularity, period, who in markers:
        by_who.setdefault(who, []).append((granularity, period))
    return by_who


# -- writes ---------------------------------------------------------------------------------


def profile_doc(
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


def new_profile_write(
    name: str,
    who: str,
    delta: ProfileDelta,
    markers: list[tuple[str, str]],
    updated: datetime,
    behavior: dict[str, Any] | None = None,
) -> Any:
    """create(): fails the batch with ALREADY_EXISTS if another worker made it meanwhile."""
    return write(name, profile_doc(who, delta, markers, updated, behavior), exists=False)


def profile_transforms(delta: ProfileDelta) -> list[tuple[str, str, float]]:
    """A profile's counts and bounds as transforms."""
    return [
        ("total_events", "increment", delta.total),
        *type_transforms("events_by_type", delta.by_type),
        ("first_seen", "minimum", delta.first_seen),
        ("last_activity", "maximum", delta.last_activity),
    ]


def bucket_transforms(
    granularity: str, period: str, bucket: BucketDelta, new_uniques: Counter[tuple[str, str]]
) -> list[tuple[str, str, float]]:
    """A bucket's counts (and, per hour and day, its new unique users) as transforms."""
    transforms = [
        ("total_events", "increment", bucket.total),
        *type_transforms("events_by_type", bucket.by_type),
    ]
    if granularity in UNIQUE_GRANULARITIES:
        transforms.append(("unique_users", "increment", new_uniques[granularity, period]))
    return transforms


def add_bucket_writes(
    writes: list[Any],
    name: Callable[[str, str], str],
    deltas: Deltas,
    new_uniques: Counter[tuple[str, str]],
    updated: datetime,
    shard: int | None,
    extra: Extra | None = None,
) -> None:
    """One write per bucket document, appended to `writes`: the fold's counts and `extra`
    transforms (bots, sessions, funnels), which may touch a bucket the fold does not. A
    minute's go to its hour's document, under `minutes.{MM}` (`minutes`).
    `name(collection, document)` gives a document's resource name."""
    extra = extra or {}
    per_document: dict[tuple[str, str], list[tuple[str, str, float]]] = {}
    for key in dict.fromkeys([*deltas.buckets, *extra]):
        granularity, period = key
        bucket = deltas.buckets.get(key)  # type: ignore[arg-type]  # `extra` is keyed alike, by str
        transforms = bucket_transforms(granularity, period, bucket, new_uniques) if bucket else []
        transforms += extra.get(key, [])
        if granularity == "minute":
            hour, minute = split_minute(period)
            prefix = minute_prefix(minute)
            per_document.setdefault(("hour", hour), []).extend(
                (f"{prefix}.{path}", op, value) for path, op, value in transforms
            )
        else:
            per_document.setdefault(key, []).extend(transforms)
    for (granularity, period), transforms in per_document.items():
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
            write(name(AGGREGATES, document), fields, mask=list(fields), transforms=transforms)
        )


def freshness_write(
    name: Callable[[str, str], str],
    events: list[Event],
    now: float,
    lag: float | None,
    shard: int | None,
) -> Any:
    """The freshness document's (or shard's) write for a commit of `events` at `now`."""
    document = FRESHNESS if shard is None else f"{FRESHNESS}{SHARD_SUFFIX}{shard}"
    return write(
        name(STATE, document),
        {"lag_s": lag},
        mask=["lag_s"],
        transforms=[
            ("newest_event_at", "maximum", max(e.timestamp for e in events)),
            ("last_commit_at", "maximum", now),
        ],
    )


def event_doc(
    event: Event, person: str, now: float, processed_at: datetime, expire_at: datetime
) -> dict[str, Any]:
    """A raw event's document; `call` and `id_kind` (`Event`'s) only when the event has them,
    so a recipe event's document holds neither."""
    doc = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "who": event.who,
        # Who the event counts for (its actor, or the user an identity link gives it to) and
        # whether a bot sent it: what the behavioral recomputation queries and skips.
        "person": person,
        "bot": is_bot(event.properties),
        "event_type": event.event_type,
        "timestamp": as_datetime(event.timestamp),
        "ts": event.timestamp,  # exact epoch seconds: the Timestamp keeps microseconds only
        "session_id": event.session_id,
        "properties": encode_map(event.properties),
        "received_at": event.received_at,
        "processed_at": processed_at,
        "latency": now - event.received_at,
        "expire_at": expire_at,
    }
    if event.call is not None:
        doc["call"] = event.call
    if event.id_kind is not None:
        doc["id_kind"] = event.id_kind
    return doc


def event_size(event: Event) -> int:
    """Bytes the event adds to a commit: its document plus a share of aggregate writes."""
    return 4 * WRITE_OVERHEAD_BYTES + len(_json(event.properties))


def distinct_dead_letters(dead_letters: Iterable[NewDeadLetter]) -> list[NewDeadLetter]:
    """`dead_letters`, the first of each `dead_letter_id` only: one commit cannot create the
    same document twice."""
    first: dict[str, NewDeadLetter] = {}
    for d in dead_letters:
        first.setdefault(dead_letter_id(d), d)
    return list(first.values())


def dead_letter_size(d: NewDeadLetter) -> int:
    """Bytes a dead letter adds to a commit (its data truncated to `MAX_DEAD_LETTER_DATA`)."""
    return WRITE_OVERHEAD_BYTES + min(len(d.data), MAX_DEAD_LETTER_DATA) + len(d.detail) + 1024


def dead_letter_doc(
    d: NewDeadLetter, now: float, retention_s: float = 30 * 86400.0
) -> dict[str, Any]:
    """A dead letter's document, recorded at `now` (epoch seconds) and expiring (`expire_at`,
    the TTL policy's field) `retention_s` later; its data is cut at `MAX_DEAD_LETTER_DATA`
    bytes (a document holds at most 1 MiB)."""
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
        "expire_at": as_datetime(now + retention_s),
    }


def behavior_fields(change: PersonChange, horizon: float, periods: Periods) -> dict[str, Any]:
    """A person's stored derivation as profile fields; what ended before `horizon` dropped."""
    return {
        SESSIONS_FIELD: encode_sessions(change.state.sessions.values(), horizon),
        PROGRESS_FIELD: encode_progress(change.state.progress, periods.label("day", horizon)),
        RECENT_FIELD: encode_recent(change.state.recent_from, change.state.recent),
    }


def behavior_transforms(
    extra: Extra, events: list[Event], changes: Iterable[PersonChange], periods: Periods
) -> None:
    """Bot counts, session figures and funnel users as transforms on bucket documents."""
    bots: Counter[tuple[str, str]] = Counter()
    for event in events:
        if is_bot(event.properties):
            minute, hour, day = periods.of(event.timestamp)
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
            for name, value in zip(SESSION_STATS, values, strict=True)
            if value
        )
    for (name, day, step), n in funnel_users.items():
        if n:
            path = field_path(FUNNEL_FIELD, encode_map_key(name), str(step))
            extra.setdefault(("day", day), []).append((path, "increment", n))
