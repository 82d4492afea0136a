"""One breakdown over a range, as the CLI and the API answer it: the stored points of a
(dimension, granularity) summed per value over the range, sorted by events, `(other)` last.

Events add up across periods. Unique users do not: a person active on two days is one person
over both, so a range's unique users per value cannot be summed from the days' counts. They are
given for a one-day range (exact, from the day's per-value markers) and otherwise left `None`
with `unique_users_note` saying why; the per-day figures stay in the points. Hours keep no
unique users per value.

A series narrowed to one value (`filter=DIMENSION:VALUE`) is read from the same points: per
period, the value's events and (days) unique users. It is exact where the value was admitted
or nothing counted under `(other)`; where the value may be among the `(other)` events of a
period (K other values came first), the point says `exact: false` and counts only what is
known (0). Two filters, or a filter with an event type, would need the raw events: not
answered here. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import OTHER
from behavioral_analytics.dimensions import (
    DIMENSIONS,
    SESSION_DIMENSIONS,
    is_dimension,
    quote_label,
)

__all__ = [
    "BreakdownPointLike",
    "BreakdownRow",
    "BreakdownSummary",
    "FilterError",
    "FilteredPoint",
    "filtered_series",
    "known_dimensions",
    "no_breakdown",
    "parse_filter",
    "summarize",
]

MULTI_DAY_NOTE = (
    "unique users are kept per day: a person active on several days of the range is one "
    "person over the range, so the days' counts cannot be summed (see the points)"
)
HOUR_NOTE = "unique users per value are kept per day only"
SESSIONS_ONLY_NOTE = "entry and exit pages count sessions, not unique users"


class BreakdownPointLike(Protocol):
    """What `summarize` reads of a stored breakdown point (the Store port's `BreakdownPoint`):
    events per admitted value, unique users per value (days; None for hours), and the events
    counted under OTHER."""

    @property
    def period(self) -> str: ...
    @property
    def events(self) -> dict[str, int]: ...
    @property
    def unique_users(self) -> dict[str, int] | None: ...
    @property
    def other_events(self) -> int: ...
    @property
    def sessions(self) -> dict[str, int] | None: ...
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    """A value's events over the range, its share of the range's events (of its sessions for
    `entry_page`/`exit_page`; 0..1, 4 decimals), its unique users (None where they cannot be
    given: module docstring) and the sessions that started in the range under it (None where
    the store keeps no sessions per value)."""

    value: str
    events: int
    share: float
    unique_users: int | None
    sessions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "events": self.events,
            "share": self.share,
            "unique_users": self.unique_users,
            "sessions": self.sessions,
        }


@dataclass(frozen=True, slots=True)
class BreakdownSummary:
    """`rows`: the `limit` values with most events (sessions for a session dimension; ties by
    value), then OTHER if any counted under it; `values_not_shown`: how many more values had
    some; `total_sessions`: the sessions started in the range (None: not kept per value)."""

    total_events: int
    rows: list[BreakdownRow]
    values_not_shown: int
    unique_users_note: str | None
    total_sessions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_events": self.total_events,
            "total_sessions": self.total_sessions,
            "values": [row.to_dict() for row in self.rows],
            "values_not_shown": self.values_not_shown,
            "unique_users_note": self.unique_users_note,
        }


def known_dimensions(rules: BehaviorRules | None) -> tuple[str, ...]:
    """The dimensions a store with these (recorded) rules keeps breakdowns of; none without
    rules (a store that keeps no behavioral read model)."""
    return rules.breakdowns.dimensions if rules is not None else ()


def no_breakdown(dimension: str, kept: Sequence[str]) -> str:
    """Why there is no breakdown of `dimension` for a store that keeps `kept` (the configured
    dimensions with the entry and exit pages): a name that is no dimension at all, or one this
    store does not keep (and how to add it). One line."""
    shown = repr(dimension[:100])
    keeps = f"this store keeps {', '.join(kept) or 'none'}"
    if not is_dimension(dimension) and dimension not in SESSION_DIMENSIONS:
        names = ", ".join((*DIMENSIONS, *SESSION_DIMENSIONS))
        return f"no dimension {shown}: the dimensions are {names} and property:<name>; {keeps}"
    return (
        f"no breakdown of {shown}: {keeps} (BA_BREAKDOWN_DIMENSIONS and BA_BREAKDOWN_PROPERTIES, "
        "recorded with the data); to add it, set them for the workers (one records it when it "
        "starts) or run `behavioral-analytics config apply`: it is counted from the retained "
        "raw events"
    )


def summarize(
    points: Sequence[BreakdownPointLike], granularity: str, first: str, last: str, limit: int
) -> BreakdownSummary:
    """The rows of the range `first`..`last` (labels of `granularity`, `hour` or `day`) from
    its points. `limit` ≥ 1. Unique users per value only for a one-day range by day, of a
    dimension that counts events (not `entry_page`, `exit_page`: `SESSIONS_ONLY_NOTE`). Sessions
    add up across periods (each is counted in the period it starts); values are ranked by
    sessions when the dimension counts no events (`entry_page`, `exit_page`)."""
    one_day = granularity == "day" and first == last
    # A day's points of a dimension that counts events carry its unique users ({} for none);
    # those of the entry and exit pages, which count sessions only, carry None.
    counts_users = one_day and any(point.unique_users is not None for point in points)
    events: Counter[str] = Counter()
    sessions: Counter[str] = Counter()
    keeps_sessions = False
    users: dict[str, int] = {}
    for point in points:
        events.update(point.events)
        events[OTHER] += point.other_events
        if point.sessions is not None:
            keeps_sessions = True
            sessions.update(point.sessions)
        if one_day and point.unique_users is not None:
            users.update(point.unique_users)
    total = sum(events.values())
    measure = Counter(events if total or not keeps_sessions else sessions)
    other = measure.pop(OTHER, 0)
    whole = sum(measure.values()) + other
    ranked = sorted(((v, n) for v, n in measure.items() if n), key=lambda item: (-item[1], item[0]))
    shown = ranked[:limit] + ([(OTHER, other)] if other else [])
    rows = [
        BreakdownRow(
            value,
            events.get(value, 0),
            round(count / whole, 4) if whole else 0.0,
            users.get(value, 0) if counts_users else None,
            sessions.get(value, 0) if keeps_sessions else None,
        )
        for value, count in shown
    ]
    # Entry and exit pages (sessions, no events): the notes on unique users are beside the point.
    if (keeps_sessions and not total) or (one_day and points and not counts_users):
        note: str | None = SESSIONS_ONLY_NOTE
    elif one_day:
        note = None
    else:
        note = HOUR_NOTE if granularity == "hour" else MULTI_DAY_NOTE
    return BreakdownSummary(
        total,
        rows,
        max(0, len(ranked) - limit),
        note,
        sum(sessions.values()) if keeps_sessions else None,
    )


class FilterError(ValueError):
    """A filter that names no configured dimension or no value; `str` is one line."""


def parse_filter(text: str, dimensions: Sequence[str]) -> tuple[str, str]:
    """`DIMENSION:VALUE` → (dimension, value); the dimension is the longest configured one the
    text starts with (so `property:plan:pro` is `property:plan` = `pro`). Raises FilterError."""
    for dimension in sorted(dimensions, key=len, reverse=True):
        if text.startswith(dimension + ":") and len(text) > len(dimension) + 1:
            value = text[len(dimension) + 1 :]
            if value == OTHER:
                raise FilterError(
                    f"filter {text[:100]!r}: {OTHER} counts the values past the top ones a "
                    "breakdown keeps, not one value, so no event matches it; filter on a "
                    f"listed value (a client's own {OTHER!r} is {quote_label(OTHER)!r})"
                )
            return dimension, value
    if text.startswith(("entry_page:", "exit_page:")):
        raise FilterError(
            f"filter {text[:100]!r}: entry and exit pages count sessions and narrow nothing; "
            "filter on page (sessions match by their first event, so page:VALUE gives the "
            "sessions that entered on VALUE)"
        )
    if text.removesuffix(":") in dimensions:
        raise FilterError(f"filter {text[:100]!r} names no value: give DIMENSION:VALUE")
    raise FilterError(
        f"filter {text[:100]!r} is not DIMENSION:VALUE with a configured dimension "
        f"({', '.join(dimensions) or 'none'})"
    )


@dataclass(frozen=True, slots=True)
class FilteredPoint:
    """One period of a series narrowed to one value: its events, its unique users (days;
    None for hours), and whether the figures are exact (module docstring)."""

    period: str
    total_events: int
    unique_users: int | None
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "total_events": self.total_events,
            "unique_users": self.unique_users,
            "exact": self.exact,
        }


def filtered_series(points: Sequence[BreakdownPointLike], value: str) -> list[FilteredPoint]:
    """Per period with events in the dimension, the events and unique users of `value`
    (`OTHER`: the events counted under it)."""
    narrowed = []
    for point in points:
        if value == OTHER:
            events, exact = point.other_events, True
        else:
            events = point.events.get(value, 0)
            exact = value in point.events or point.other_events == 0
        users = point.unique_users
        narrowed.append(
            FilteredPoint(
                point.period, events, None if users is None else users.get(value, 0), exact
            )
        )
    return narrowed
