"""Sessions: a person's events cut into visits. Pure: no I/O.

An event with a client `session_id` belongs to that session. Other events are chained while
the gap between consecutive events stays within `gap_s`; a chain is cut into sessions of at
most `max_s` from each session's first event. The result is a function of the set of events,
so it does not depend on the order they arrive in: a store recomputes the sessions around new
events from the raw events it holds, and `verify` recomputes them all the same way.

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
    "gap_sessions",
    "session_stats",
]


@dataclass(frozen=True, slots=True)
class SessionRules:
    gap_s: float = 30 * 60.0
    max_s: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    """`client_id` is the client's session id, or None for a session cut by the rules."""

    start: float
    end: float
    events: int
    client_id: str | None = None

    @property
    def key(self) -> str:
        return f"c:{self.client_id}" if self.client_id is not None else f"g:{self.start!r}"

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
    ordered = sorted(timestamps)
    if not ordered:
        return None
    return Session(ordered[0], ordered[-1], len(ordered), client_id)


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
