"""Filtered answers from raw events: what the aggregates cannot give. Pure: no I/O.

A filter is `DIMENSION:VALUE` on a breakdown dimension (`dimensions.dimension_values` gives an
event's value); several filters all hold at once. The events given are the human events of a
range as they count (`who` is the person, identity links applied: the Store port's
`scan_events`), and every answer follows the rules the aggregates follow:

- a series (minute, hour or day) folds the matching events with `aggregation.fold`: events per
  period and type, and distinct persons per hour and day;
- sessions are cut from each person's events (all of them, matching or not) by
  `behavior.sessions_of`, and a session **matches when its first event matches** every filter
  (the session-scoped rule: a session's page, source, device, country are its first event's;
  ties at the first instant go to the smallest event key); it counts in the hour and day it
  starts in, with its duration, bounce and events as the unfiltered figures count them;
- a funnel runs over each person's matching events only (`funnels.progress`);
- retention keeps the people of a cohort with a matching event on its day
  (`matching_days`, `retention.narrowed`);
- a breakdown of one dimension narrowed by filters on others counts every value exactly: no
  admission, no `(other)`, and distinct persons per value over the whole range (which the
  stored per-day figures cannot give), with the matching sessions per value of their first
  event (`entry_page`: its page; `exit_page`: the page of the session's last event; these two
  count sessions only).

Sessions and funnels look past the asked range: a session starting in it may run for the
session cap after its end, and where one starts depends on the events before it
(`session_window`: a cap and a gap, on both sides); a funnel entered on its last day has its
window after (`funnel_window`). Callers scan those wider windows. The sessions are then the
stores' own unless one person's events chain without a gap across the whole widened edge (a
run longer than the cap), where the cut could differ.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from behavioral_analytics.aggregation import UNIQUE_GRANULARITIES, Granularity, Periods, fold
from behavioral_analytics.behavior import funnel_points, sessions_of
from behavioral_analytics.breakdown_report import BreakdownRow, FilterError, parse_filter
from behavioral_analytics.dimensions import DIMENSIONS, SESSION_DIMENSIONS, dimension_values
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import Funnel, progress
from behavioral_analytics.sessions import Session, SessionRules, SessionStats

__all__ = [
    "DEFAULT_SCAN_MAX_EVENTS",
    "MAX_FILTERS",
    "MAX_FILTER_CHARS",
    "Filter",
    "RawBreakdown",
    "RawFunnelDay",
    "RawSeriesPoint",
    "RawSessionPoint",
    "ScanError",
    "before_horizon",
    "breakdown",
    "filter_dimensions",
    "funnel_days",
    "funnel_window",
    "horizon_s",
    "matches",
    "matching_days",
    "parse_filters",
    "raw_window_s",
    "series",
    "session_series",
    "session_window",
    "too_large",
]

# The most raw events one filtered answer reads (BA_RAW_SCAN_MAX_EVENTS).
DEFAULT_SCAN_MAX_EVENTS = 200_000
# Filters one answer takes, and the longest: a dimension's name (`property:` and a property's,
# however long) and a value (values are cut at `dimensions.MAX_VALUE_CHARS` when counted).
MAX_FILTERS = 10
MAX_FILTER_CHARS = 1024
RAW_NOTE = "counted from the raw events: every value exactly, no admission and no (other)"


class ScanError(ValueError):
    """A raw scan that is refused. `code` is `scan_too_large` or `before_horizon` (the API's
    error codes); `str(error)` is one line for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def too_large(bound: int, found: int, exact: bool) -> ScanError:
    """The refusal of a scan of `found` events (`exact`: counted; else at least that many)
    over the `bound`."""
    held = f"{found:,} events" if exact else f"more than {found - 1:,} events"
    return ScanError(
        "scan_too_large",
        f"this filtered answer reads raw events and the range holds {held}, over the bound of "
        f"{bound:,} (BA_RAW_SCAN_MAX_EVENTS): ask for a shorter range (a series or a count "
        "of sessions with one filter on a kept dimension is answered from the aggregates)",
    )


def before_horizon(start_s: float, horizon_s: float, retention_s: float) -> ScanError:
    """The refusal of a scan from `start_s`, before `horizon_s` (epoch seconds), the oldest
    instant whose raw events are surely kept `retention_s` seconds."""
    starts, horizon = (
        datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") for t in (start_s, horizon_s)
    )
    return ScanError(
        "before_horizon",
        f"the range starts at {starts}, before {horizon}, the raw-event retention horizon "
        f"({retention_s / 86400:g} days back): filtered answers from raw events are given "
        "within it only (ask for a range that starts later)",
    )


# The longest period of each granularity (a 25-hour day when clocks go back), and a minute of
# slack for the store's clock.
_LONGEST_S = {"minute": 60.0, "hour": 3600.0, "day": 25 * 3600.0}
_SLACK_S = 60.0


def horizon_s(now: float, raw_retention_s: float) -> float:
    """The oldest instant (epoch seconds) a caller widening a scan reaches back to: the
    raw-retention horizon at `now`, a minute inside it (the store's clock may run ahead)."""
    return now - raw_retention_s + _SLACK_S


def raw_window_s(
    default_window_s: float, granularity: Granularity, raw_retention_s: float
) -> float:
    """The default range of a filtered answer when `from` is not given: `default_window_s`
    shortened so its first period lies within the raw-event retention (a raw scan is refused
    before it)."""
    within = raw_retention_s - _LONGEST_S[granularity] - _SLACK_S
    return max(0.0, min(default_window_s, within))


@dataclass(frozen=True, slots=True)
class Filter:
    """One breakdown value an answer is narrowed to."""

    dimension: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"dimension": self.dimension, "value": self.value}


def filter_dimensions(kept: Sequence[str]) -> tuple[str, ...]:
    """The dimensions a filter may name: the fixed ones and the `kept` (configured) ones, less
    the session-scoped `entry_page` and `exit_page` (a session's first event's `page` is its
    entry page: filter sessions on `page`)."""
    named = dict.fromkeys([*DIMENSIONS, *kept])
    return tuple(d for d in named if d not in SESSION_DIMENSIONS)


def parse_filters(texts: Sequence[str], dimensions: Sequence[str]) -> tuple[Filter, ...]:
    """`DIMENSION:VALUE` texts → filters, in order, repeats dropped (rule of each:
    `breakdown_report.parse_filter`), at most `MAX_FILTERS` of at most `MAX_FILTER_CHARS`
    characters each (the API's and the command line's alike). Raises FilterError."""
    if len(texts) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} filters, not {len(texts)}")
    longest = max(texts, key=len, default="")
    if len(longest) > MAX_FILTER_CHARS:
        raise FilterError(
            f"a filter is at most {MAX_FILTER_CHARS} characters, not {len(longest)} "
            f"({longest[:40]!r}…)"
        )
    found = (Filter(*parse_filter(text, dimensions)) for text in texts)
    return tuple(dict.fromkeys(found))


def matches(event: Event, filters: Sequence[Filter]) -> bool:
    """Whether `event`'s value of every filter's dimension is the filter's value."""
    if not filters:
        return True
    values = dimension_values(event, [f.dimension for f in filters])
    return all(values[f.dimension] == f.value for f in filters)


def matching_days(
    events: Iterable[Event], filters: Sequence[Filter], periods: Periods
) -> set[tuple[str, str]]:
    """(person, day label) of each event matching every filter: the days on which a person did
    something that matches (retention narrowed by filters: `retention.narrowed`)."""
    return {(e.who, periods.of(e.timestamp)[2]) for e in events if matches(e, filters)}


def session_window(rules: SessionRules) -> float:
    """Seconds before a range's start and after its end that its sessions depend on: a session
    starting in it may have events until a cap after its end; the gap before its start is
    seen."""
    return rules.max_s + rules.gap_s


def funnel_window(funnel: Funnel) -> float:
    """Seconds after a range's last entry that its funnel may still progress."""
    return funnel.window_s


@dataclass(frozen=True, slots=True)
class RawSeriesPoint:
    """One period of a filtered series; `unique_users` None for minutes (not kept)."""

    granularity: Granularity
    period: str
    total_events: int
    events_by_type: dict[str, int]
    unique_users: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "period": self.period,
            "total_events": self.total_events,
            "events_by_type": self.events_by_type,
            "unique_users": self.unique_users,
            "exact": True,
        }


def series(
    events: Iterable[Event],
    filters: Sequence[Filter],
    periods: Periods,
    granularity: Granularity,
    first: str,
    last: str,
) -> list[RawSeriesPoint]:
    """Periods `first`..`last` (labels of `granularity`) with matching events, oldest first."""
    deltas = fold((e for e in events if matches(e, filters)), periods)
    users = deltas.unique_users()
    points = []
    for (kind, period), bucket in sorted(deltas.buckets.items()):
        if kind != granularity or not first <= period <= last or not bucket.total:
            continue
        unique = users[kind, period] if granularity in UNIQUE_GRANULARITIES else None
        by_type = dict(sorted(bucket.by_type.items()))
        points.append(RawSeriesPoint(granularity, period, bucket.total, by_type, unique))
    return points


@dataclass(frozen=True, slots=True)
class RawSessionPoint:
    """The matching sessions that started in one hour or day."""

    granularity: Granularity
    period: str
    stats: SessionStats

    def to_dict(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "period": self.period, **self.stats.to_dict()}


def _first_event(session: Session, own: Sequence[Event]) -> Event:
    candidates = [
        e for e in own if e.timestamp == session.start and e.session_id == session.client_id
    ]
    return min(candidates, key=lambda e: e.key)


def session_series(
    events: Iterable[Event],
    filters: Sequence[Filter],
    rules: SessionRules,
    periods: Periods,
    granularity: Granularity,
    first: str,
    last: str,
) -> list[RawSessionPoint]:
    """Matching sessions (module docstring) by the hour or day they started in, for periods
    `first`..`last`, oldest first; only periods where one started."""
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_person[event.who].append(event)
    found: dict[str, SessionStats] = {}
    index = 1 if granularity == "hour" else 2
    for own in by_person.values():
        for session in sessions_of(own, rules):
            period = periods.of(session.start)[index]
            if not first <= period <= last or not matches(_first_event(session, own), filters):
                continue
            found.setdefault(period, SessionStats()).add(session)
    return [RawSessionPoint(granularity, p, s) for p, s in sorted(found.items())]


@dataclass(frozen=True, slots=True)
class RawFunnelDay:
    """Persons who entered a funnel on `day`, by the furthest step reached (1, 2, …)."""

    day: str
    users_by_step: list[int]


def funnel_days(
    events: Iterable[Event],
    filters: Sequence[Filter],
    funnel: Funnel,
    periods: Periods,
    first_day: str,
    last_day: str,
) -> list[RawFunnelDay]:
    """Per entry day `first_day`..`last_day` with entries, the funnel over the matching events
    (a person counts once per day at the furthest step reached), oldest first."""
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if matches(event, filters):
            by_person[event.who].append(event)
    reached: Counter[tuple[str, int]] = Counter()
    for own in by_person.values():
        for day, step in progress(funnel_points(own, funnel), funnel, periods).items():
            if first_day <= day <= last_day:
                for n in range(1, step + 1):
                    reached[day, n] += 1
    days = sorted({day for day, _ in reached})
    steps = range(1, len(funnel.steps) + 1)
    return [RawFunnelDay(day, [reached[day, n] for n in steps]) for day in days]


@dataclass(frozen=True, slots=True)
class RawBreakdown:
    """A narrowed breakdown: totals, the `limit` first rows, how many values were not shown."""

    total_events: int
    total_sessions: int
    rows: list[BreakdownRow]  # unique_users None for entry_page and exit_page
    values_not_shown: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_events": self.total_events,
            "total_sessions": self.total_sessions,
            "values": [row.to_dict() for row in self.rows],
            "values_not_shown": self.values_not_shown,
            "unique_users_note": RAW_NOTE,
        }


def _session_values(
    events: Iterable[Event],
    filters: Sequence[Filter],
    dimension: str,
    rules: SessionRules,
    periods: Periods,
    index: int,
    first: str,
    last: str,
) -> Counter[str]:
    """Matching sessions started in `first`..`last` per value of `dimension` (module
    docstring; `exit_page`: the page of the session's last event, ties to the largest key)."""
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_person[event.who].append(event)
    reader = "page" if dimension in SESSION_DIMENSIONS else dimension
    counts: Counter[str] = Counter()
    for own in by_person.values():
        for session in sessions_of(own, rules):
            if not first <= periods.of(session.start)[index] <= last:
                continue
            opening = _first_event(session, own)
            if not matches(opening, filters):
                continue
            shown = opening
            if dimension == "exit_page":
                shown = max(
                    (
                        e
                        for e in own
                        if e.session_id == session.client_id and e.timestamp == session.end
                    ),
                    key=lambda e: e.key,
                )
            counts[dimension_values(shown, [reader])[reader]] += 1
    return counts


def breakdown(
    events: Sequence[Event],
    filters: Sequence[Filter],
    dimension: str,
    rules: SessionRules,
    periods: Periods,
    granularity: Granularity,
    first: str,
    last: str,
    limit: int,
) -> RawBreakdown:
    """`dimension`'s values among the matching events of periods `first`..`last` and the
    matching sessions started in them: the `limit` values with most events (`entry_page`,
    `exit_page`: most sessions; ties by value), each exact (module docstring), with its
    distinct persons over the whole range. `limit` ≥ 1."""
    index = {"minute": 0, "hour": 1, "day": 2}[granularity]
    sessions = _session_values(events, filters, dimension, rules, periods, index, first, last)
    by_session = dimension in SESSION_DIMENSIONS
    counts: Counter[str] = Counter()
    people: dict[str, set[str]] = defaultdict(set)
    if not by_session:
        for event in events:
            in_range = first <= periods.of(event.timestamp)[index] <= last
            if not in_range or not matches(event, filters):
                continue
            value = dimension_values(event, [dimension])[dimension]
            counts[value] += 1
            people[value].add(event.who)
    ranked_by = sessions if by_session else counts
    total = sum(ranked_by.values())
    ranked = sorted(ranked_by.items(), key=lambda item: (-item[1], item[0]))
    rows = [
        BreakdownRow(
            value,
            counts[value],
            round(n / total, 4) if total else 0.0,
            None if by_session else len(people[value]),
            sessions[value],
        )
        for value, n in ranked[:limit]
    ]
    shown = max(0, len(ranked) - limit)
    return RawBreakdown(sum(counts.values()), sum(sessions.values()), rows, shown)
