"""Breakdowns: events and unique users per value of a dimension, per hour and day. Pure: no I/O.

The counting rules (docs/breakdowns.md, "How breakdowns are counted"):

- Only human events count (a crawler's event is in no breakdown), for the person they count
  for once identity links are applied, exactly as unique users are.
- Each event adds one to (granularity, period, dimension, value) for every configured
  dimension, at hour and day granularity, its value given by `dimensions.dimension_values`.
- Per (granularity, period, dimension) at most `max_values` (K) values are *admitted*: the
  first K distinct values committed, in batch order. The admitted set is stored and never
  shrinks; a value outside it, once it holds K values, counts under `OTHER`. So a value's
  mapping never changes once made: admitted stays admitted, and a value counted under OTHER
  was refused by a full set, which stays full.
- No event's value is `OTHER`: a client's text equal to a label is quoted
  (`dimensions.quote_label`); `admit` still never admits `OTHER` itself.
- Unique users per value are kept per day only: one marker per (day, dimension, counted value,
  person), a person counting once per value they were seen with that day.

A store folds its batch's new human events (`fold_breakdowns`), reads the admitted sets the
fold touches, and maps the raw values with `count_under`, which also says which values to
admit; `verify` and `verify --repair` do the same over every retained raw event in time order
with the stored admitted sets, so a recount maps every value as the commits did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.dimensions import DIMENSIONS, OTHER, is_dimension, value_tuple
from behavioral_analytics.events import Event

__all__ = [
    "BREAKDOWN_GRANULARITIES",
    "DEFAULT_MAX_VALUES",
    "OTHER",
    "BreakdownDelta",
    "BreakdownRules",
    "Counted",
    "PersonDayMarkers",
    "admit",
    "by_person_day",
    "count_under",
    "fold_breakdowns",
    "recount_breakdowns",
]

DEFAULT_MAX_VALUES = 100
BREAKDOWN_GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")

# (granularity, period, dimension): one admitted set.
SetKey = tuple[str, str, str]
# (person, day) → {(dimension, value)}: one person's markers of a day.
PersonDayMarkers = dict[tuple[str, str], set[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class BreakdownRules:
    """Which dimensions are broken down (names `dimensions.is_dimension` accepts) and how many
    values (K) each (granularity, period, dimension) admits before counting under OTHER.

    Raises ValueError for an unknown or repeated dimension, or `max_values` < 1.
    """

    dimensions: tuple[str, ...] = DIMENSIONS
    max_values: int = DEFAULT_MAX_VALUES

    def __post_init__(self) -> None:
        unknown = [name for name in self.dimensions if not is_dimension(name)]
        if unknown:
            raise ValueError(f"unknown breakdown dimension {unknown[0]!r}")
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError("a breakdown dimension is named twice")
        if self.max_values < 1:
            raise ValueError(f"breakdown values must be at least 1, not {self.max_values}")

    @property
    def entry_dimensions(self) -> tuple[str, ...]:
        """What a session's first event gives it: every configured dimension, then
        `entry_page` (docs/breakdowns.md, "Sessions per value, entry and exit pages")."""
        return (*self.dimensions, "entry_page")


@dataclass(slots=True)
class BreakdownDelta:
    """What a set of events adds, by raw value. `events`: (granularity, period, dimension,
    value) → events, the values of each (granularity, period, dimension) in the order their
    first event came (what admission follows); `markers`: per (person, day), the (dimension,
    value) pairs the person was seen with that day (the unique-user facts, grouped as a store
    that keeps a person's markers of a day together reads and writes them)."""

    events: Counter[tuple[Granularity, str, str, str]] = field(default_factory=Counter)
    markers: PersonDayMarkers = field(default_factory=dict)

    @property
    def users(self) -> set[tuple[str, str, str, str]]:
        """The markers as flat (day, dimension, value, person) facts."""
        return {
            (day, dimension, value, who)
            for (who, day), pairs in self.markers.items()
            for dimension, value in pairs
        }


def by_person_day(users: Iterable[tuple[str, str, str, str]]) -> PersonDayMarkers:
    """(day, dimension, value, person) markers grouped per (person, day), as a store that keeps
    a person's markers of a day together reads and writes them."""
    grouped: PersonDayMarkers = {}
    for day, dimension, value, who in users:
        pairs = grouped.get((who, day))
        if pairs is None:
            grouped[who, day] = {(dimension, value)}
        else:
            pairs.add((dimension, value))
    return grouped


@dataclass(slots=True)
class Counted:
    """A delta with its values mapped to what they count under (themselves or OTHER).

    `events`: (granularity, period, dimension, counted value) → events; `users`: (day,
    dimension, counted value, person) markers (empty when `count_under` was told not to map
    them: then `unique_users` counts nothing); `admitted`: per (granularity, period,
    dimension), the values this delta admits, in admission order; `others`: (day, dimension)
    → the raw values that day's set counts under OTHER (what `markers_under` maps)."""

    events: Counter[tuple[Granularity, str, str, str]] = field(default_factory=Counter)
    users: set[tuple[str, str, str, str]] = field(default_factory=set)
    admitted: dict[SetKey, list[str]] = field(default_factory=dict)
    others: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def markers_under(self, grouped: PersonDayMarkers) -> PersonDayMarkers:
        """The raw markers `grouped` (`BreakdownDelta.markers` of the delta counted)
        with their values mapped to what they count under, as `users` has them. The result
        shares `grouped` and its sets where nothing was refused: neither is to be changed."""
        if not self.others:
            return grouped
        refused: dict[str, set[tuple[str, str]]] = {}
        for (day, dimension), values in self.others.items():
            refused.setdefault(day, set()).update((dimension, value) for value in values)
        mapped: PersonDayMarkers = {}
        for (who, day), pairs in grouped.items():
            hit = pairs & refused[day] if day in refused else None
            if hit:
                pairs = (pairs - hit) | {(dimension, OTHER) for dimension, _ in hit}
            mapped[who, day] = pairs
        return mapped

    def unique_users(self) -> Counter[tuple[str, str, str]]:
        """Distinct persons per (day, dimension, counted value), counting every marker as new
        (a recount from scratch)."""
        return Counter((day, dimension, value) for day, dimension, value, _ in self.users)


def fold_breakdowns(
    events: Iterable[Event],
    periods: Periods,
    rules: BreakdownRules,
    persons: Mapping[str, str] | None = None,
    entries: dict[str, tuple[str, ...]] | None = None,
) -> BreakdownDelta:
    """The breakdown delta of `events`: human events, in the order they are committed (or, for
    a recount, in time order), each counted for `persons[event.key]` when given, else for its
    `who` (already the person). `entries`, when given, gets each event's values in
    `rules.entry_dimensions` by key (`value_tuple`: what a session it starts counts under; its
    last value, the page, is also the `exit_page` of a session it ends), read with the rest."""
    delta = BreakdownDelta()
    dimensions = rules.dimensions
    if not dimensions:
        return delta
    names = dimensions if entries is None else rules.entry_dimensions
    # One pass notes each event's hour, day and values, and each person's distinct combinations
    # of values per day; the counts are then made a dimension at a time over those columns
    # (`Counter` counts in C), each (period, value) in its first event's place.
    hours: list[str] = []
    days: list[str] = []
    rows: list[tuple[str, ...]] = []
    seen: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for event in events:
        _, hour, day = periods.of(event.timestamp)
        who = event.who if persons is None else persons.get(event.key, event.who)
        values = value_tuple(event, names)
        if entries is not None:
            entries[event.key] = values
            values = values[:-1]
        hours.append(hour)
        days.append(day)
        rows.append(values)
        combinations = seen.get((who, day))
        if combinations is None:
            seen[who, day] = {values}
        else:
            combinations.add(values)
    if not rows:
        return delta
    counts = delta.events
    for dimension, column in zip(dimensions, zip(*rows, strict=True), strict=True):
        for (hour, value), n in Counter(zip(hours, column, strict=True)).items():
            counts["hour", hour, dimension, value] = n
        for (day, value), n in Counter(zip(days, column, strict=True)).items():
            counts["day", day, dimension, value] = n
    markers = delta.markers
    for key, combinations in seen.items():
        markers[key] = {
            pair for values in combinations for pair in zip(dimensions, values, strict=True)
        }
    return delta


def recount_breakdowns(
    events: Iterable[Event],
    persons: Mapping[str, str],
    periods: Periods,
    rules: BreakdownRules,
    admitted: Mapping[SetKey, Sequence[str]],
) -> Counted:
    """Every breakdown from scratch (`verify`, `verify --repair`): the events among `events`
    whose key `persons` maps to a person (the human ones, as `behavior.recount` gives them),
    in time order (then key), mapped through the stored `admitted` sets; a value a set does not
    hold is admitted while it has room, as a commit would have."""
    humans = sorted(
        (event for event in events if event.key in persons),
        key=lambda event: (event.timestamp, event.key),
    )
    return count_under(fold_breakdowns(humans, periods, rules, persons), admitted, rules.max_values)


def admit(
    admitted: Sequence[str], values_in_order: Iterable[str], max_values: int
) -> tuple[list[str], dict[str, str]]:
    """(newly admitted values, value → the value it counts under: itself or OTHER) for one
    (granularity, period, dimension) whose stored admitted set is `admitted`, given the values
    of new events in order: each value not yet admitted is admitted while the set holds fewer
    than `max_values`; `OTHER` itself is never admitted."""
    known = set(admitted)
    room = max_values - len(known)
    new: list[str] = []
    mapping: dict[str, str] = {}
    for value in values_in_order:
        if value in mapping:
            continue
        if value in known:
            mapping[value] = value
        elif room > 0 and value != OTHER:
            new.append(value)
            known.add(value)
            room -= 1
            mapping[value] = value
        else:
            mapping[value] = OTHER
    return new, mapping


def count_under(
    delta: BreakdownDelta,
    admitted: Mapping[SetKey, Sequence[str]],
    max_values: int,
    *,
    users: bool = True,
) -> Counted:
    """`delta` mapped through admission: `admitted` holds the stored admitted set of every
    (granularity, period, dimension) the delta touches (absent: none admitted yet). With
    `max_values` 0 nothing is admitted: every value outside its set counts under OTHER (what
    taking stored events back out needs). With `users` False the markers are not mapped one
    by one: `Counted.others` says which values count under OTHER, and `markers_under` maps a
    person's markers of a day at once."""
    order: dict[SetKey, list[str]] = {}
    for granularity, period, dimension, value in delta.events:
        order.setdefault((granularity, period, dimension), []).append(value)
    counted = Counted()
    mappings: dict[SetKey, dict[str, str]] = {}
    for key, values in order.items():
        new, mappings[key] = admit(admitted.get(key, ()), values, max_values)
        if new:
            counted.admitted[key] = new
    for (granularity, period, dimension, value), n in delta.events.items():
        under = mappings[granularity, period, dimension][value]
        counted.events[granularity, period, dimension, under] += n
    if not users:
        for (g, day, dimension), mapping in mappings.items():
            if g != "day":
                continue
            other = {value for value, under in mapping.items() if under != value}
            if other:
                counted.others[day, dimension] = other
        return counted
    for (who, day), pairs in delta.markers.items():
        for dimension, value in pairs:
            under = mappings["day", day, dimension][value]
            counted.users.add((day, dimension, under, who))
    return counted
