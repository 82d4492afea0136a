"""The rules beyond counting — sessions, funnels, identity, bots, privacy — and the recount of
everything they derive from raw events. Pure: no I/O.

A store applies the rules incrementally around each batch's new events; `verify` recounts
them here from every raw event and compares. Both call the same functions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import GRANULARITIES, Deltas, Granularity, Periods, fold
from behavioral_analytics.bots import BOT_PROPERTY, bot_name, is_bot
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.dimensions import DERIVED, Derive, is_derived
from behavioral_analytics.events import DEFAULT_LIMITS, Event
from behavioral_analytics.funnels import (
    DEFAULT_FUNNELS,
    Funnel,
    FunnelPoint,
    parse_funnels,
    progress,
)
from behavioral_analytics.identity import Link, attribute, coverage
from behavioral_analytics.privacy import scrub
from behavioral_analytics.sessions import (
    Session,
    SessionDelta,
    SessionRules,
    SessionStats,
    client_sessions,
    gap_sessions,
)

__all__ = [
    "BehaviorRules",
    "Recount",
    "as_person",
    "behavior_reach_s",
    "covers_by_anonymous_id",
    "funnel_points",
    "recount",
    "sessions_of",
]


_DEFAULT_SESSIONS = SessionRules()
_DEFAULT_FUNNELS = parse_funnels(DEFAULT_FUNNELS)
_DEFAULT_BREAKDOWNS = BreakdownRules()


def behavior_reach_s(
    sessions: SessionRules, funnels: Sequence[Funnel], identity_window_s: float
) -> float:
    """How far before an event (seconds) the behavioral rules read other raw events: the
    longest of a session's cap plus its gap (where the session an event joins can start, but
    for a person active without a pause longer than the gap for more than the cap), the
    longest funnel window and the identity window. A session or funnel figure within this of
    the oldest retained event may miss expired ones."""
    funnel = max((f.window_s for f in funnels), default=0.0)
    return max(sessions.max_s + sessions.gap_s, funnel, identity_window_s)


@dataclass(frozen=True, slots=True)
class BehaviorRules:
    sessions: SessionRules = _DEFAULT_SESSIONS
    funnels: tuple[Funnel, ...] = _DEFAULT_FUNNELS
    identity_window_s: float = 86400.0
    allow_relink: bool = False
    flag_bots: bool = True
    truncate_ips: bool = True
    hashed_fields: tuple[str, ...] = ()
    hash_salt: bytes = b""
    # How late an event may arrive after it happened (the oldest timestamp accepted).
    lateness_s: float = DEFAULT_LIMITS.max_age_s
    breakdowns: BreakdownRules = _DEFAULT_BREAKDOWNS
    # Sets `$derived` (browser, OS, device type, country); None: nothing is derived.
    derive: Derive | None = None

    @property
    def reach_s(self) -> float:
        """`behavior_reach_s` of these rules."""
        return behavior_reach_s(self.sessions, self.funnels, self.identity_window_s)

    def enrich(self, event: Event) -> None:
        """At ingestion, before anything is stored: what is derived from the user agent and IP
        address (for an event published without the collector's `$derived`, before the IP is
        truncated), privacy scrubbing and the bot flag."""
        properties = event.properties
        if self.derive is not None and not is_derived(properties.get(DERIVED)):
            self.derive(properties)
        if self.truncate_ips or self.hashed_fields:
            scrub(
                properties,
                truncate_ips=self.truncate_ips,
                hashed_fields=self.hashed_fields,
                salt=self.hash_salt,
            )
        if self.flag_bots:
            properties.pop(BOT_PROPERTY, None)  # only the worker sets it
            name = bot_name(properties)
            if name is not None:
                properties[BOT_PROPERTY] = name

    def session_final_after_s(self) -> float:
        """How long after a period ends its session figures can no longer change: a session
        starting in it runs for at most the cap plus a gap, its events may arrive as late as
        the lateness bound, and a late `identify` moves anonymous events from as far as the
        identity window before it (docs/behavior.md, "Provisional, then final")."""
        return self.sessions.max_s + self.sessions.gap_s + self.lateness_s + self.identity_window_s

    def session_final(
        self, periods: Periods, granularity: Granularity, period: str, now: float
    ) -> bool:
        """Whether no late event can change the session figures of `period` any more."""
        return periods.end_of(granularity, period) <= now - self.session_final_after_s()

    def final_changed(self, delta: SessionDelta, periods: Periods, now: float) -> list[str]:
        """`granularity:period` of the periods in `delta` (a change to session figures) that
        were already final at `now`: what `forget` reports it changed."""
        return sorted(
            f"{granularity}:{period}"
            for (granularity, period), stats in delta.stats.items()
            # session deltas are keyed by "hour" and "day" only
            if not stats.is_zero() and self.session_final(periods, granularity, period, now)  # type: ignore[arg-type]
        )

    def funnel(self, name: str) -> Funnel | None:
        return next((f for f in self.funnels if f.name == name), None)


def funnel_points(events: Iterable[Event], funnel: Funnel) -> list[FunnelPoint]:
    points = []
    for event in events:
        steps = funnel.matched_steps(event.event_type, event.properties)
        if steps:
            points.append(FunnelPoint(event.timestamp, event.key, steps))
    return points


def sessions_of(events: Iterable[Event], rules: SessionRules) -> list[Session]:
    """Every session of one person's events."""
    loose: list[float] = []
    by_client: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.session_id is None:
            loose.append(event.timestamp)
        else:
            by_client[event.session_id].append(event.timestamp)
    sessions = gap_sessions(loose, rules)
    for client_id, timestamps in by_client.items():
        sessions.extend(client_sessions(client_id, timestamps, rules))
    return sessions


@dataclass(slots=True)
class Recount:
    """Everything the rules derive from a set of raw events, from scratch."""

    deltas: Deltas
    bot_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    persons: dict[str, str] = field(default_factory=dict)  # event key → person
    sessions: dict[str, list[Session]] = field(default_factory=dict)
    session_stats: dict[tuple[str, str], SessionStats] = field(default_factory=dict)
    funnel_progress: dict[tuple[str, str, str], int] = field(default_factory=dict)
    funnel_users: Counter[tuple[str, str, int]] = field(default_factory=Counter)


def covers_by_anonymous_id(
    links: Iterable[Link], window_s: float
) -> dict[str, tuple[tuple[float, str], ...]]:
    grouped: dict[str, list[Link]] = defaultdict(list)
    for link in links:
        grouped[link.anonymous_id].append(link)
    return {aid: coverage(group, window_s) for aid, group in grouped.items()}


def recount(
    events: Iterable[Event],
    links: Sequence[Link],
    rules: BehaviorRules,
    periods: Periods,
) -> Recount:
    covers = covers_by_anonymous_id(links, rules.identity_window_s)
    humans: list[Event] = []
    bot_events: Counter[tuple[str, str]] = Counter()
    persons: dict[str, str] = {}
    for event in events:
        if is_bot(event.properties):
            for key in zip(GRANULARITIES, periods.of(event.timestamp), strict=True):
                bot_events[key] += 1
            continue
        person = attribute(event, covers.get(event.anonymous_id or ""))
        persons[event.key] = person
        humans.append(as_person(event, person))
    result = Recount(fold(humans, periods), bot_events, persons)
    session_delta = SessionDelta(result.session_stats)
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in humans:
        by_person[event.who].append(event)
    for person, own in by_person.items():
        sessions = sessions_of(own, rules.sessions)
        result.sessions[person] = sessions
        session_delta.apply(sessions, periods, 1)
        for funnel in rules.funnels:
            for day, step in progress(funnel_points(own, funnel), funnel, periods).items():
                result.funnel_progress[funnel.name, person, day] = step
                for reached in range(1, step + 1):
                    result.funnel_users[funnel.name, day, reached] += 1
    return result


def as_person(event: Event, person: str) -> Event:
    """The event counted for `person` (identity stitching); its key stays the original's."""
    if person == event.who:
        return event
    return Event(
        key=event.key,
        event_id=event.event_id,
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        event_type=event.event_type,
        timestamp=event.timestamp,
        session_id=event.session_id,
        properties=event.properties,
        received_at=event.received_at,
        who=person,
    )
