"""What the Store port takes and hands back: dead letters, commit results, stored events,
profiles, series, session and funnel points, pages, freshness, the aggregate snapshot that
`verify` compares, and the report of a `forget`. Plain values; `store` re-exports them."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from behavioral_analytics.aggregation import Granularity
from behavioral_analytics.events import Event
from behavioral_analytics.kept_copies import AnonymousRow, DigestEntry
from behavioral_analytics.retention import RetentionCohort
from behavioral_analytics.sessions import SessionStats

__all__ = [
    "AggregateSnapshot",
    "BreakdownPoint",
    "CommitResult",
    "DeadLetter",
    "ForgetReport",
    "Freshness",
    "FunnelDay",
    "NewDeadLetter",
    "Page",
    "Profile",
    "RetentionCohort",
    "SeriesPoint",
    "SessionPoint",
    "StoredEvent",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """A message that is not an event (or that the broker gave up on), kept for inspection and
    replay with the reason and the original bytes.

    `retry_fingerprint` identifies a rejection across a client's retries of the same request,
    which arrive at new times: the collector sets it (`segment.dead_letter_fingerprint`: 32 hex
    characters made of the call as sent less what changes per retry, `sentAt`, `_metadata`
    and `writeKey`, and the reason). A store keeps at most one dead letter per fingerprint
    (`fingerprint`: this one when set) and records it under it (Firestore: the document id;
    SQLite: the unique `fingerprint` column), so adding the same one again is a no-op."""

    reason: str
    detail: str
    data: bytes
    message_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = "worker"  # worker | broker | collector
    received_at: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    retry_fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """`retry_fingerprint` when set; else stable across redeliveries of the same message
        (same id and first publish time), distinct for a replay (a new publish time), so
        recording one is idempotent."""
        if self.retry_fingerprint is not None:
            return self.retry_fingerprint
        digest = hashlib.blake2b(digest_size=16)
        for part in (self.source, self.message_id, repr(self.received_at), self.reason):
            digest.update(part.encode() + b"\x1f")
        digest.update(hashlib.sha256(self.data).digest())
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class DeadLetter(NewDeadLetter):
    id: str = ""
    recorded_at: float = 0.0
    replayed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        try:
            text: str | None = self.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "id": self.id,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "message_id": self.message_id,
            "attributes": self.attributes,
            "received_at": self.received_at,
            "recorded_at": self.recorded_at,
            "replayed_at": self.replayed_at,
            "attempts": self.attempts,
            "data": text,
            "data_base64": base64.b64encode(self.data).decode("ascii"),
        }


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a store's commit of a batch did. `dead_letters`: the rejected messages it was given
    less those a tombstone covers (one already recorded, same fingerprint, is counted but not
    recorded twice); `forgotten`: events dropped, not duplicates, and `letters_forgotten`:
    rejected messages not recorded, because a `forget` tombstone covers them (`tombstones`)."""

    created: int
    duplicates: int
    dead_letters: int
    created_by_type: dict[str, int] = field(default_factory=dict)
    # Largest (processed_at - received_at) among created events: how far processing lags.
    max_lag_s: float | None = None
    forgotten: int = 0
    letters_forgotten: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    processed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.event.key, **self.event.to_dict(), "processed_at": self.processed_at}


@dataclass(frozen=True, slots=True)
class Profile:
    who: str
    total_events: int
    events_by_type: dict[str, int]
    first_seen: float
    last_activity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.who,
            "total_events": self.total_events,
            "events_by_type": self.events_by_type,
            "first_seen": self.first_seen,
            "last_activity": self.last_activity,
        }


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    granularity: Granularity
    period: str
    total_events: int
    events_by_type: dict[str, int]
    unique_users: int | None  # None for minute buckets: not kept
    bot_events: int | None = None  # None where the store does not count bots apart

    def of_type(self, event_type: str) -> SeriesPoint | None:
        """This point restricted to one event type (`type` of `/v1/series`, `query series
        --type`), or None when the period has no human event of that type. `unique_users` and
        `bot_events` are None: neither is kept per type."""
        count = self.events_by_type.get(event_type, 0)
        if not count:
            return None
        return SeriesPoint(self.granularity, self.period, count, {event_type: count}, None, None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "period": self.period,
            "total_events": self.total_events,
            "events_by_type": self.events_by_type,
            "unique_users": self.unique_users,
            "bot_events": self.bot_events,
        }


@dataclass(frozen=True, slots=True)
class SessionPoint:
    """Sessions that started in one hour or day. `final`: no late event can change them."""

    granularity: Granularity
    period: str
    stats: SessionStats
    final: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "period": self.period,
            **self.stats.to_dict(),
            "final": self.final,
        }


@dataclass(frozen=True, slots=True)
class FunnelDay:
    """Users who entered a funnel that day, by the furthest step they reached."""

    day: str
    users_by_step: list[int]  # users reaching step 1, 2, …

    def to_dict(self) -> dict[str, Any]:
        steps = self.users_by_step
        return {
            "day": self.day,
            "users": steps,
            "conversion": [
                round(steps[i] / steps[i - 1], 4) if steps[i - 1] else None
                for i in range(1, len(steps))
            ],
            "overall": round(steps[-1] / steps[0], 4) if steps and steps[0] else None,
        }


@dataclass(frozen=True, slots=True)
class BreakdownPoint:
    """One dimension's values in one hour or day (docs/breakdowns.md): `events` per admitted
    value (values with events only), `other_events` counted under `(other)`, and distinct
    persons per value, `(other)` included, for a day (`unique_users`; None for an hour).
    `sessions`: sessions started in the period per value their first event has (`entry_page`:
    the first event's page, `exit_page`: the last event's), `(other)` included; None where the
    store keeps no session counts. `entry_page` and `exit_page` have sessions only (`events`
    empty, `other_events` 0, `unique_users` None)."""

    granularity: Granularity
    period: str
    dimension: str
    events: dict[str, int]
    unique_users: dict[str, int] | None
    other_events: int
    sessions: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "period": self.period,
            "dimension": self.dimension,
            "events": self.events,
            "unique_users": self.unique_users,
            "other_events": self.other_events,
            "sessions": self.sessions,
        }


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Freshness:
    """How current the read model is."""

    newest_event_at: float | None  # event time of the newest processed event
    last_commit_at: float | None  # when a worker last committed a batch
    lag_s: float | None  # processing lag of the last commit (processed_at - received_at, max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "newest_event_at": self.newest_event_at,
            "last_commit_at": self.last_commit_at,
            "lag_s": self.lag_s,
        }


@dataclass(slots=True)
class AggregateSnapshot:
    """Every aggregate the store holds, in comparable form (for `verify`)."""

    buckets: dict[tuple[str, str], tuple[int, dict[str, int]]] = field(default_factory=dict)
    unique_users: dict[tuple[str, str], int] = field(default_factory=dict)
    markers: set[tuple[str, str, str]] = field(default_factory=set)
    profiles: dict[str, tuple[int, dict[str, int], float, float]] = field(default_factory=dict)
    # Kept by stores that maintain the behavioral read model (`Store.behavioral`).
    bot_events: dict[tuple[str, str], int] = field(default_factory=dict)
    session_stats: dict[tuple[str, str], SessionStats] = field(default_factory=dict)
    funnel_users: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # Breakdowns (docs/breakdowns.md): (granularity, period, dimension, value) → events, the
    # value `(other)` included; (day, dimension, value) → unique users; the admitted values of
    # each (granularity, period, dimension).
    breakdown_events: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    breakdown_users: dict[tuple[str, str, str], int] = field(default_factory=dict)
    breakdown_admitted: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    # (granularity, period, dimension, value) → sessions started (docs/breakdowns.md, "Sessions
    # per value"), entry and exit pages included; None where the store keeps none.
    breakdown_sessions: dict[tuple[str, str, str, str], int] | None = None
    # The per-value unique-user markers: (day, dimension, counted value, person); None where
    # nothing is broken down (or the store keeps no breakdowns).
    breakdown_markers: set[tuple[str, str, str, str]] | None = None
    # Group memberships (`named_calls`): (group id, member actor) → joined at (epoch seconds).
    group_members: dict[tuple[str, str], float] = field(default_factory=dict)
    # What a person's next commit derives from, which no figure shows until then: their kept
    # sessions, (person, `Session.key`, start, end, events), and furthest funnel steps,
    # (funnel, person, day) → step; None where the store keeps no such state.
    person_sessions: set[tuple[str, str, float, float, int]] | None = None
    funnel_progress: dict[tuple[str, str, str], int] | None = None
    # Each counted session's values, what taking it out of the sessions per value takes:
    # (person, session key) → (start, dimension → raw value, `unpack_values`'); None where the
    # store keeps no sessions per value.
    session_values: dict[tuple[str, str], tuple[float, dict[str, str]]] | None = None
    # Copies of raw events kept to spare queries (`kept_copies`; None where the store keeps
    # none): each person's digest of recent events, person → (from, event key → (time, no
    # client session id, funnel → steps matched)), and each anonymous actor's list of its
    # events without a user id, actor → [(event key, time, type, client session id)] in the
    # order kept.
    recent_events: dict[str, tuple[float, dict[str, DigestEntry]]] | None = None
    anonymous_events: dict[str, list[AnonymousRow]] | None = None


@dataclass(slots=True)
class ForgetReport:
    who: str
    persons: list[str] = field(default_factory=list)
    raw_events: int = 0
    sessions: int = 0
    funnel_entries: int = 0
    links: int = 0
    dead_letters: int = 0
    final_periods: list[str] = field(default_factory=list)  # `granularity:period`, were final

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.who,
            "persons": self.persons,
            "raw_events_deleted": self.raw_events,
            "sessions_deleted": self.sessions,
            "funnel_entries_deleted": self.funnel_entries,
            "links_deleted": self.links,
            "dead_letters_deleted": self.dead_letters,
            "final_periods_changed": self.final_periods,
        }
