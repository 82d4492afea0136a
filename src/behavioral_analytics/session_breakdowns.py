"""Sessions per value of a dimension, and the entry and exit pages. Pure: no I/O.

The rule (docs/breakdowns.md, "Sessions per value, entry and exit pages"), GA4's session scope:

- A session counts once, in the hour and the day it starts in (as the session figures do),
  under the value its **first** event has in each configured dimension; `entry_page` is the
  page of its first event and `exit_page` the page of its last event. A session's first event
  is its earliest (then the smallest key), its last its latest (then the largest key).
- In a configured dimension a session counts under what its first event counts under in the
  same (granularity, period, dimension) admitted set: the value if admitted, else `OTHER`. The
  first event is in the period the session starts in, so its value already met that set.
- `entry_page` and `exit_page` have admitted sets of their own per (granularity, period),
  filled by sessions: the first K distinct values of the sessions a commit adds or changes, in
  the order of their start (then their first event's key).

What a store keeps per session to move the counts exactly: `SessionValues`, the session's
start and the raw values it counts under (its first event's value in every configured
dimension and `entry_page`, its last event's page as `exit_page`). When sessions are
recomputed around new events (a late event that becomes a session's first or last, two
sessions joined by an event in their gap, a cap that moves, events moved to another person
by a link), the store replaces the old sessions' values by the new ones: `session_deltas`
gives the difference per raw value and `count_sessions_under` maps it through admission.
`forget` takes a person's stored values out the same way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdowns import BreakdownRules, admit
from behavioral_analytics.dimensions import NONE, SESSION_DIMENSIONS, dimension_values
from behavioral_analytics.events import Event
from behavioral_analytics.sessions import Session

__all__ = [
    "SessionCounted",
    "SessionValues",
    "count_sessions_under",
    "entry_values",
    "exit_value",
    "first_event",
    "last_event",
    "pack_values",
    "recount_session_breakdowns",
    "session_deltas",
    "session_dimensions",
    "session_endpoints",
    "session_values",
    "unpack_values",
]

# (granularity, period, dimension, value) → sessions.
SessionCounts = Counter[tuple[str, str, str, str]]
SetKey = tuple[str, str, str]


def session_dimensions(rules: BreakdownRules) -> tuple[str, ...]:
    """Every dimension sessions are counted in: the configured ones, then `SESSION_DIMENSIONS`
    (kept whenever any dimension is configured; none when breakdowns are off)."""
    return (*rules.dimensions, *SESSION_DIMENSIONS) if rules.dimensions else ()


@dataclass(frozen=True, slots=True)
class SessionValues:
    """What one session counts under: `start` (epoch seconds, the session's first event),
    `values`: dimension → raw value (every configured dimension and `entry_page` from the first
    event, `exit_page` from the last), `order`: (start, first event's key), the order in which
    sessions admit values."""

    start: float
    values: Mapping[str, str]
    order: tuple[float, str] = (0.0, "")


def first_event(events: Iterable[Event]) -> Event:
    """A session's first event among the events at its start: the smallest key."""
    return min(events, key=lambda event: event.key)


def last_event(events: Iterable[Event]) -> Event:
    """A session's last event among the events at its end: the largest key."""
    return max(events, key=lambda event: event.key)


def entry_values(first: Event, rules: BreakdownRules) -> dict[str, str]:
    """What a session whose first event is `first` counts under in every configured dimension
    and in `entry_page`."""
    return dimension_values(first, rules.entry_dimensions)


def exit_value(last: Event) -> str:
    """The `exit_page` of a session whose last event is `last`."""
    return dimension_values(last, ("exit_page",))["exit_page"]


def session_values(first: Event, last: Event, rules: BreakdownRules) -> SessionValues:
    """The values of a session whose first event is `first` and last `last`."""
    values = entry_values(first, rules)
    values["exit_page"] = values["entry_page"] if last is first else exit_value(last)
    return SessionValues(first.timestamp, values, (first.timestamp, first.key))


def session_deltas(
    removed: Iterable[SessionValues], added: Iterable[SessionValues], periods: Periods,
    dimensions: Sequence[str],
) -> SessionCounts:  # fmt: skip
    """Sessions per (granularity, period, dimension, raw value) that replacing `removed` by
    `added` changes, in `dimensions` only (a stored value of a dimension no longer configured
    is ignored). The keys of `added` come first, in their sessions' `order` (what admission
    follows); zero entries are dropped."""
    # A session replaced by one with the same start (one that only gained a later event, the
    # common case) changes only the dimensions whose value changed.
    left: dict[float, list[Mapping[str, str]]] = defaultdict(list)
    for session in removed:
        left[session.start].append(session.values)
    plus: SessionCounts = Counter()
    minus: SessionCounts = Counter()
    for session in sorted(added, key=lambda s: s.order):
        _, hour, day = periods.of(session.start)
        olds = left.get(session.start)
        old = olds.pop() if olds else None
        for dimension in dimensions:
            value = session.values.get(dimension)
            before = None if old is None else old.get(dimension)
            if value == before:
                continue
            if value is not None:
                plus["hour", hour, dimension, value] += 1
                plus["day", day, dimension, value] += 1
            if before is not None:
                minus["hour", hour, dimension, before] += 1
                minus["day", day, dimension, before] += 1
    for start, olds in left.items():
        if olds:
            _, hour, day = periods.of(start)
            for old in olds:
                for dimension in dimensions:
                    before = old.get(dimension)
                    if before is not None:  # None: kept before it was configured, never counted
                        minus["hour", hour, dimension, before] += 1
                        minus["day", day, dimension, before] += 1
    plus.subtract(minus)
    return Counter({key: n for key, n in plus.items() if n})


@dataclass(slots=True)
class SessionCounted:
    """Session deltas mapped to what they count under. `sessions`: (granularity, period,
    dimension, counted value) → sessions; `admitted`: per (granularity, period, dimension),
    the values these sessions admit, in admission order (entry and exit pages only)."""

    sessions: SessionCounts = field(default_factory=Counter)
    admitted: dict[SetKey, list[str]] = field(default_factory=dict)


def count_sessions_under(
    delta: SessionCounts, admitted: Mapping[SetKey, Sequence[str]], max_values: int
) -> SessionCounted:
    """`delta` (from `session_deltas`) mapped through the stored `admitted` sets of every
    (granularity, period, dimension) it touches (absent: none admitted). A value taken out
    counts under what it counted under when it went in: itself if admitted, else `OTHER` (a set
    that refused it was full and stays full). A value put in is admitted, in the delta's order,
    while its set holds fewer than `max_values` — only in `SESSION_DIMENSIONS`: a configured
    dimension's sets are filled by events (`breakdowns.count_under`)."""
    order: dict[SetKey, list[str]] = defaultdict(list)
    for granularity, period, dimension, value in delta:
        order[granularity, period, dimension].append(value)
    counted = SessionCounted()
    mappings: dict[SetKey, dict[str, str]] = {}
    for key, values in order.items():
        room = max_values if key[2] in SESSION_DIMENSIONS else 0
        ins = [v for v in values if delta[(*key, v)] > 0]
        new, mapping = admit(admitted.get(key, ()), ins, room)
        _, outs = admit(admitted.get(key, ()), values, 0)
        mappings[key] = {**outs, **mapping}
        if new:
            counted.admitted[key] = new
    for (granularity, period, dimension, value), n in delta.items():
        under = mappings[granularity, period, dimension][value]
        counted.sessions[granularity, period, dimension, under] += n
    counted.sessions = Counter({key: n for key, n in counted.sessions.items() if n})
    return counted


def session_endpoints(
    sessions: Iterable[Session], events: Iterable[Event]
) -> dict[str, tuple[Event, Event]]:
    """Session key → (first event, last event) of one person's `sessions`, given (at least)
    the events at their starts and ends: a session's first is the earliest of its events (then
    the smallest key), its last the latest (then the largest key); its events are those of its
    client id (None: without one). A session none of `events` starts is left out."""
    at: dict[tuple[str | None, float], list[Event]] = defaultdict(list)
    for event in events:
        at[event.session_id, event.timestamp].append(event)
    out: dict[str, tuple[Event, Event]] = {}
    for session in sessions:
        starts = at.get((session.client_id, session.start))
        ends = at.get((session.client_id, session.end))
        if starts and ends:
            out[session.key] = (first_event(starts), last_event(ends))
    return out


def recount_session_breakdowns(
    sessions: Mapping[str, Sequence[Session]],
    events: Iterable[Event],
    persons: Mapping[str, str],
    periods: Periods,
    rules: BreakdownRules,
    admitted: Mapping[SetKey, Sequence[str]],
) -> tuple[SessionCounted, dict[tuple[str, str], SessionValues]]:
    """Sessions per value from scratch (`verify`, `verify --repair`): `sessions` per person
    (as `behavior.recount` cuts them), `events` the raw events (the human ones are those
    `persons` maps, event key → person), `admitted` the admitted sets after the events'
    recount. Returns the counts (values a set lacks admitted while it has room, sessions in
    start order) and each session's values by (person, session key)."""
    dimensions = session_dimensions(rules)
    by_person: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        person = persons.get(event.key)
        if person is not None:
            by_person[person].append(event)
    values: dict[tuple[str, str], SessionValues] = {}
    if not dimensions:
        return SessionCounted(), values
    for person, own in sessions.items():
        for key, (first, last) in session_endpoints(own, by_person.get(person, ())).items():
            values[person, key] = session_values(first, last, rules)
    delta = session_deltas((), values.values(), periods, dimensions)
    return count_sessions_under(delta, admitted, rules.max_values), values


def pack_values(values: Mapping[str, str]) -> dict[str, str]:
    """A session's values as the stores keep them, without what `unpack_values` restores: a
    configured dimension's `(none)`, an entry page equal to the `page` value, an exit page
    equal to the entry page (most sessions keep a handful of values)."""
    entry = values.get("entry_page", NONE)
    packed = {}
    for dimension, value in values.items():
        if dimension == "exit_page":
            keep = value != entry
        elif dimension == "entry_page":
            keep = value != values.get("page", NONE)
        else:
            keep = value != NONE
        if keep:
            packed[dimension] = value
    return packed


def unpack_values(packed: Mapping[str, str], dimensions: Sequence[str]) -> dict[str, str]:
    """The values `pack_values` kept, for every one of `dimensions` (the configured ones) and
    the entry and exit pages. A dimension configured since reads `(none)` until `config apply`
    rewrites every session's values."""
    values = {dimension: packed.get(dimension, NONE) for dimension in dimensions}
    values["entry_page"] = entry = packed.get("entry_page", values.get("page", NONE))
    values["exit_page"] = packed.get("exit_page", entry)
    return values
