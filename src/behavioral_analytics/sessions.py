"""Sessions: a person's events cut into visits. Pure: no I/O.

An event with a client `session_id` belongs to that session whatever the gaps, but the cap
holds for it too: a client session's events are cut into sessions of at most `max_s` from
each one's first event (the first keeps the key `c:<id>`; a later one is keyed by its start
as well). Other events are chained while the gap between consecutive events stays within
`gap_s`; a chain is cut into sessions of at most `max_s` from each session's first event. The
result is a function of the set of events, so it does not depend on the order they arrive in:
a store recomputes the sessions around new events from the raw events it holds, and `verify`
recomputes them all the same way.

A session counts for the hour and day it starts in: sessions started, their total duration,
bounces (one-event sessions) and their events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import Periods

__all__ = [
    "Session",
    "SessionDelta",
    "SessionRules",
    "SessionStats",
    "client_session",
    "client_sessions",
    "gap_sessions",
    "merge_client_sessions",
    "session_stats",
]


@dataclass(frozen=True, slots=True)
class SessionRules:
    gap_s: float = 30 * 60.0
    max_s: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    """`client_id` is the client's session id, or None for a session cut by the rules;
    `first`: whether it is the first session of its client id (the cap cuts a long one)."""

    start: float
    end: float
    events: int
    client_id: str | None = None
    first: bool = True

    @property
    def key(self) -> str:
        if self.client_id is None:
            return f"g:{self.start!r}"
        if self.first:
            return f"c:{self.client_id}"
        # U+001F cannot occur in a client id (events.py refuses control characters).
        return f"c:{self.client_id}\x1f{self.start!r}"

    @property
    def duration_ms(self) -> int:
        # Whole milliseconds: sums of them stay exact whatever order they are added in.
        return round((self.end - self.start) * 1000)


def gap_sessions(timestamps: Iterable[float], rules: SessionRules) -> list[Session]:
    """Sessions of events without a client session id, from their timestamps."""
    ordered = sorted(timestamps)
    sessions: list[Session] = []
    if not ordered:
        return sessions
    start = last = ordered[0]
    count = 1
    for timestamp in ordered[1:]:
        if timestamp - last > rules.gap_s or timestamp - start >= rules.max_s:
            sessions.append(Session(start, last, count))
            start, count = timestamp, 0
        last = timestamp
        count += 1
    sessions.append(Session(start, last, count))
    return sessions


def client_session(client_id: str, timestamps: Iterable[float]) -> Session | None:
    """One session of every timestamp (no cap): the shape before the cap, for callers that
    know their events span less than it."""
    ordered = sorted(timestamps)
    if not ordered:
        return None
    return Session(ordered[0], ordered[-1], len(ordered), client_id)


def client_sessions(
    client_id: str, timestamps: Iterable[float], rules: SessionRules, *, first: bool = True
) -> list[Session]:
    """The sessions of one client session id's events (epoch seconds): gaps do not cut them,
    the cap does — a session ends before the first event `max_s` or more after its start.
    `first`: whether the earliest of them is the client id's first session."""
    ordered = sorted(timestamps)
    sessions: list[Session] = []
    if not ordered:
        return sessions
    start = last = ordered[0]
    count = 1
    for timestamp in ordered[1:]:
        if timestamp - start >= rules.max_s:
            sessions.append(Session(start, last, count, client_id, first and not sessions))
            start, count = timestamp, 0
        last = timestamp
        count += 1
    sessions.append(Session(start, last, count, client_id, first and not sessions))
    return sessions


def merge_client_sessions(
    stored: Iterable[Session], timestamps: Iterable[float], rules: SessionRules
) -> list[Session] | None:
    """The sessions of one client id once events at `timestamps` join its `stored` sessions
    (all of them, one client id), without the stored events: exact when every new event falls
    within the cap of the stored session it follows or after the cap of the last one; None
    otherwise (before the first, or between a session's cap and the next: the caller recounts
    from the raw events, with `client_sessions`)."""
    pieces = sorted(stored, key=lambda s: s.start)
    stamps = sorted(timestamps)
    if not pieces:
        return None
    client_id = pieces[0].client_id
    assert client_id is not None
    merged = list(pieces)
    tail: list[float] = []
    for timestamp in stamps:
        if timestamp < pieces[0].start:
            return None
        index = max(i for i, p in enumerate(pieces) if p.start <= timestamp)
        piece = pieces[index]
        if timestamp - piece.start < rules.max_s:
            current = merged[index]
            merged[index] = Session(
                current.start,
                max(current.end, timestamp),
                current.events + 1,
                client_id,
                current.first,
            )
        elif index == len(pieces) - 1:
            tail.append(timestamp)
        else:
            return None
    return merged + client_sessions(client_id, tail, rules, first=False)


@dataclass(slots=True)
class SessionStats:
    sessions: int = 0
    duration_ms: int = 0
    bounces: int = 0
    events: int = 0

    def add(self, session: Session, sign: int = 1) -> None:
        self.sessions += sign
        self.duration_ms += sign * session.duration_ms
        self.bounces += sign * (session.events == 1)
        self.events += sign * session.events

    def is_zero(self) -> bool:
        return not (self.sessions or self.duration_ms or self.bounces or self.events)

    def to_dict(self) -> dict[str, float | int | None]:
        started = self.sessions
        return {
            "sessions": started,
            "avg_duration_s": round(self.duration_ms / started / 1000, 3) if started else None,
            "bounce_rate": round(self.bounces / started, 4) if started else None,
            "events_per_session": round(self.events / started, 3) if started else None,
        }


@dataclass(slots=True)
class SessionDelta:
    """What replacing `removed` sessions by `added` ones changes, per (granularity, period)."""

    stats: dict[tuple[str, str], SessionStats] = field(default_factory=dict)

    def apply(self, sessions: Iterable[Session], periods: Periods, sign: int) -> None:
        for session in sessions:
            _, hour, day = periods.of(session.start)
            for key in (("hour", hour), ("day", day)):
                stats = self.stats.get(key)
                if stats is None:
                    stats = self.stats[key] = SessionStats()
                stats.add(session, sign)


def session_stats(
    removed: Iterable[Session], added: Iterable[Session], periods: Periods
) -> dict[tuple[str, str], SessionStats]:
    delta = SessionDelta()
    delta.apply(removed, periods, -1)
    delta.apply(added, periods, 1)
    return {key: stats for key, stats in delta.stats.items() if not stats.is_zero()}
