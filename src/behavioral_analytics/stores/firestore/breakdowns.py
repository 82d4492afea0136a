"""Breakdowns on the Firestore store (docs/breakdowns.md): one document per (granularity,
period, dimension), per-value unique-user markers kept with the person.

Layout:

  breakdowns/hourly_{dimension}_{hour}    {kind: "breakdown", granularity, period, dimension,
  breakdowns/daily_{dimension}_{day}       admitted: [value, …] in admission order,
                                           events: {rank: n, "(other)": n},
                                           users: {rank: n, "(other)": n} (daily only)}
  analytics_aggregates/user_{person}      … breakdown_days: {day: {dimension: {value: true}}}

The dimension comes before the period in the id (`keys.doc_id`-escaped), so one dimension's
periods are a range of document ids: a read needs no composite index. In a breakdown document
a value is written once, in `admitted`; the counts are keyed by its rank there (`"0"` for the
first value admitted; `count_key`), which never changes (the list only grows), so a document
at K values of the longest length stays near K x 1 KiB. In a person's markers the dimension
and value are map keys escaped by `keys.encode_map_key` (a key starting with `~` or shaped
like `__…__` gets a `~` prefix; every other string, dots, backticks and slashes included, is
kept as is and written as a quoted field path segment). A value is at most
`dimensions.MAX_VALUE_CHARS` (256) characters, 1,024 UTF-8 bytes, under Firestore's 1,500-byte
field-name limit, so none is ever hashed.

A commit writes each breakdown document it touches once (its events, unique-user increments
and, when it admits values, the admitted list), however many events of the batch fall in it:
a document gets at most one transform per counted value (events, and users on a day), K + 1 of
each, which `Committer` keeps under Firestore's 500 transforms per document. Admission reads
the stored admitted sets in the commit: a commit that admits a value writes the document under
the update time it read (or creates it), so two workers admitting at once conflict and one
recounts; a commit that admits nothing writes without a precondition, because what it read
cannot change under it (an admitted value stays admitted, a full set stays full).

A person's markers of a day are the (dimension, counted value) pairs they were seen with that
day; a person's document is written by the commit anyway, so a new marker costs no write.
Markers of days no accepted event can reach any more are deleted when the person gains a day,
as the unique-user markers are. `forget` takes the person's events and markers back out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.breakdowns import (
    BREAKDOWN_GRANULARITIES,
    OTHER,
    BreakdownRules,
    Counted,
    count_under,
    fold_breakdowns,
)
from behavioral_analytics.events import Event
from behavioral_analytics.store import AggregateSnapshot, BreakdownPoint
from behavioral_analytics.stores.firestore.keys import decode_map_key, doc_id, encode_map_key
from behavioral_analytics.stores.firestore.schema import (
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
    BUCKET_PREFIX,
)
from behavioral_analytics.stores.firestore.wire import field_path, from_value, write

__all__ = [
    "Admitted",
    "BreakdownBatch",
    "Marker",
    "SetKey",
    "breakdown_doc_id",
    "breakdown_writes",
    "count_key",
    "day_set_keys",
    "decode_markers",
    "doc_size_bytes",
    "encode_markers",
    "forget_writes",
    "marker_path",
    "point_of",
    "read_admitted",
    "rebuilt_docs",
    "set_keys",
    "snapshot_breakdown",
]

SetKey = tuple[str, str, str]  # (granularity, period, dimension)
Marker = tuple[str, str, str]  # (day, dimension, counted value)
_ADMITTED, _EVENTS, _USERS = "admitted", "events", "users"


def breakdown_doc_id(granularity: str, period: str, dimension: str) -> str:
    """`hourly_{dimension}_{hour}` or `daily_{dimension}_{day}`, the dimension escaped as a
    document id (`keys.doc_id`)."""
    return f"{doc_id(BUCKET_PREFIX[granularity], dimension)}_{period}"


def marker_path(day: str, dimension: str, value: str) -> str:
    """The field path of one marker in a person's document."""
    return field_path(BREAKDOWN_MARKER_FIELD, day, encode_map_key(dimension), encode_map_key(value))


def encode_markers(markers: Iterable[Marker]) -> dict[str, Any]:
    """Markers as the value of `breakdown_days`: {day: {dimension: {value: true}}}."""
    out: dict[str, Any] = {}
    for day, dimension, value in markers:
        out.setdefault(day, {}).setdefault(encode_map_key(dimension), {})[encode_map_key(value)] = (
            True
        )
    return out


def decode_markers(field_value: Any) -> frozenset[Marker]:
    """The markers of a `breakdown_days` value (a Firestore `Value` protobuf or a dict)."""
    data = from_value(field_value) if hasattr(field_value, "WhichOneof") else field_value
    return frozenset(
        (day, decode_map_key(dimension), decode_map_key(value))
        for day, dimensions in (data or {}).items()
        for dimension, values in (dimensions or {}).items()
        for value in values or {}
    )


def set_keys(keys: Iterable[tuple[Granularity, str, str, str]]) -> set[SetKey]:
    """The (granularity, period, dimension) of each (…, value) key."""
    return {(g, p, d) for g, p, d, _ in keys}


def day_set_keys(events: Iterable[Event], periods: Periods, rules: BreakdownRules) -> set[SetKey]:
    """The daily (period, dimension) sets `events` fall in."""
    days = {periods.of(e.timestamp)[2] for e in events}
    return {("day", day, dimension) for day in days for dimension in rules.dimensions}


@dataclass(slots=True)
class Admitted:
    """Stored admitted sets as a commit read them, and the update time of each document
    (absent: no document)."""

    sets: dict[SetKey, list[str]] = field(default_factory=dict)
    update_times: dict[SetKey, Any] = field(default_factory=dict)


def read_admitted(
    get: Callable[[Sequence[str], Sequence[str]], dict[str, Any]],
    name: Callable[[str, str], str],
    keys: Iterable[SetKey],
) -> Admitted:
    """The admitted sets of `keys`, read with `get(names, mask)` (`Gateway.get`)."""
    names = {name(BREAKDOWNS, breakdown_doc_id(*key)): key for key in keys}
    read = Admitted()
    if not names:
        return read
    for doc_name, doc in get(list(names), [_ADMITTED]).items():
        key = names[doc_name]
        read.update_times[key] = doc.update_time
        if _ADMITTED in doc.fields:
            read.sets[key] = [v.string_value for v in doc.fields[_ADMITTED].array_value.values]
    return read


class BreakdownBatch:
    """A commit's breakdowns: its new human events counted under the admitted sets read, the
    markers each person gains, and the markers moved events (identity links) carry."""

    def __init__(
        self,
        humans: Sequence[Event],
        moved: Sequence[Event],
        rules: BreakdownRules,
        periods: Periods,
        read: Callable[[Iterable[SetKey]], Admitted],
    ) -> None:
        self.rules = rules
        self.periods = periods
        delta = fold_breakdowns(humans, periods, rules)
        wanted = set_keys(delta.events) | day_set_keys(moved, periods, rules)
        self.admitted = read(wanted) if rules.dimensions else Admitted()
        self.counted: Counted = count_under(delta, self.admitted.sets, rules.max_values)
        self.markers: dict[str, set[Marker]] = defaultdict(set)
        for day, dimension, value, who in self.counted.users:
            self.markers[who].add((day, dimension, value))
        self.user_changes: Counter[Marker] = Counter()

    def stored_markers(self, events: Iterable[Event]) -> set[Marker]:
        """The markers stored events (each `who` its person) hold, under the sets read;
        only on the days the batch read (those of its new and moved events)."""
        read_days = {p for g, p, _ in self.admitted.update_times if g == "day"}
        read_days |= {p for g, p, _ in set_keys(self.counted.events) if g == "day"}
        kept = [e for e in events if self.periods.of(e.timestamp)[2] in read_days]
        delta = fold_breakdowns(kept, self.periods, self.rules)
        counted = count_under(delta, self.admitted.sets, 0)
        return {(day, dimension, value) for day, dimension, value, _ in counted.users}

    def writes(self, name: Callable[[str, str], str], updated: datetime) -> list[Any]:
        """One write per breakdown document the batch changes."""
        return breakdown_writes(name, self.counted, self.admitted, self.user_changes, updated)


def count_key(admitted: Sequence[str], value: str) -> str:
    """The key a counted value has in a breakdown document's `events` and `users` maps: its
    rank in the admitted list (`"0"` for the first value admitted, …), or `(other)`.

    Raises ValueError for a value the list does not hold (a store defect)."""
    if value == OTHER:
        return OTHER
    return str(admitted.index(value))


def _value_of(admitted: Sequence[str], key: str) -> str:
    return OTHER if key == OTHER else admitted[int(key)]


def breakdown_writes(
    name: Callable[[str, str], str],
    counted: Counted,
    admitted: Admitted,
    user_changes: Mapping[Marker, int],
    updated: datetime,
    events_sign: int = 1,
) -> list[Any]:
    """One write per (granularity, period, dimension) with events, unique-user changes or
    newly admitted values: increments of `events.{key}` (times `events_sign`) and
    `users.{key}` (`count_key`); the whole admitted list, under the update time read (or
    create()), when it grows."""
    lists = {
        key: [*admitted.sets.get(key, ()), *counted.admitted.get(key, ())]
        for key in {*set_keys(counted.events), *counted.admitted}
        | {("day", day, dimension) for day, dimension, _ in user_changes}
    }
    transforms: dict[SetKey, list[tuple[str, str, float]]] = defaultdict(list)
    for (g, p, d, value), n in counted.events.items():
        if n:
            path = field_path(_EVENTS, count_key(lists[g, p, d], value))
            transforms[g, p, d].append((path, "increment", events_sign * n))
    for (day, dimension, value), n in user_changes.items():
        if n:
            path = field_path(_USERS, count_key(lists["day", day, dimension], value))
            transforms["day", day, dimension].append((path, "increment", n))
    writes = []
    for key in dict.fromkeys([*transforms, *counted.admitted]):
        granularity, period, dimension = key
        fields: dict[str, Any] = {
            "kind": "breakdown",
            "granularity": granularity,
            "period": period,
            "dimension": dimension,
            "last_updated": updated,
        }
        preconditions: dict[str, Any] = {}
        if counted.admitted.get(key):
            fields[_ADMITTED] = lists[key]
            stamp = admitted.update_times.get(key)
            preconditions = {"exists": False} if stamp is None else {"update_time": stamp}
        writes.append(
            write(
                name(BREAKDOWNS, breakdown_doc_id(granularity, period, dimension)),
                fields,
                mask=list(fields),
                transforms=transforms.get(key, ()),
                **preconditions,
            )
        )
    return writes


def _counts(data: Mapping[str, Any], field_name: str) -> dict[str, int]:
    """A document's `events` or `users` map by value, zero counts left out."""
    admitted = data.get(_ADMITTED) or []
    return {_value_of(admitted, k): n for k, n in (data.get(field_name) or {}).items() if n}


def point_of(
    granularity: Granularity, period: str, dimension: str, data: Mapping[str, Any]
) -> BreakdownPoint | None:
    """The port's point of one period's breakdown document (None: no events)."""
    events = _counts(data, _EVENTS)
    other = events.pop(OTHER, 0)
    if not events and not other:
        return None
    users = _counts(data, _USERS) if granularity == "day" else None
    return BreakdownPoint(granularity, period, dimension, events, users, other)


def snapshot_breakdown(data: dict[str, Any], snap: AggregateSnapshot) -> None:
    """Add one breakdown document to `snap` (zero counts left out)."""
    g, p, d = data["granularity"], data["period"], data["dimension"]
    for value, n in _counts(data, _EVENTS).items():
        snap.breakdown_events[g, p, d, value] = n
    if g == "day":
        for value, n in _counts(data, _USERS).items():
            snap.breakdown_users[p, d, value] = n
    if data.get(_ADMITTED):
        snap.breakdown_admitted[g, p, d] = tuple(data[_ADMITTED])


def rebuilt_docs(
    counted: Counted, admitted: Mapping[SetKey, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """Document id → the whole breakdown document a recount makes (`verify --repair`,
    `config apply`), the stored admitted sets extended by what the recount admits."""
    docs: dict[str, dict[str, Any]] = {}

    def doc(key: SetKey) -> dict[str, Any]:
        granularity, period, dimension = key
        found = docs.get(breakdown_doc_id(*key))
        if found is None:
            found = docs[breakdown_doc_id(*key)] = {
                "kind": "breakdown",
                "granularity": granularity,
                "period": period,
                "dimension": dimension,
                _ADMITTED: [*admitted.get(key, ()), *counted.admitted.get(key, ())],
                _EVENTS: {},
            }
            if granularity == "day":
                found[_USERS] = {}
        return found

    for (g, p, d, value), n in counted.events.items():
        found = doc((g, p, d))
        found[_EVENTS][count_key(found[_ADMITTED], value)] = n
    for (day, dimension, value), n in counted.unique_users().items():
        found = doc(("day", day, dimension))
        found[_USERS][count_key(found[_ADMITTED], value)] = n
    for key, values in admitted.items():
        if key[0] in BREAKDOWN_GRANULARITIES and values:
            doc(key)
    return docs


def doc_size_bytes(name: str, data: Mapping[str, Any]) -> int:
    """A document's storage size by Firestore's rules (cloud.google.com/firestore/docs/
    storage-size): the document name's size (each `/`-separated segment's UTF-8 bytes + 1, + 16)
    plus, per field, the name's UTF-8 bytes + 1 and the value's size (string: UTF-8 bytes + 1;
    integer, double, timestamp: 8; boolean, null: 1; array: the sum of its values; map: as a
    document's fields), plus 32 bytes."""
    segments = name.split("/documents/", 1)[-1].split("/")
    return sum(len(s.encode()) + 1 for s in segments) + 16 + _fields_size(data) + 32


def _fields_size(data: Mapping[str, Any]) -> int:
    return sum(len(str(k).encode()) + 1 + _value_size(v) for k, v in data.items())


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return _fields_size(value)
    if isinstance(value, list | tuple):
        return sum(_value_size(v) for v in value)
    raise TypeError(f"no Firestore size for {type(value).__name__}")


def forget_writes(
    get: Callable[[Sequence[str], Sequence[str]], dict[str, Any]],
    name: Callable[[str, str], str],
    rules: BreakdownRules,
    periods: Periods,
    removed: Sequence[Event],
    updated: datetime,
    before: frozenset[Marker] | None = None,
    remaining: Sequence[Event] = (),
) -> tuple[list[Any], list[Marker]]:
    """`forget`'s breakdown writes: the human events `removed` (each `who` its person) taken
    back out under the stored admitted sets; with `before` (the person's markers: the last
    step), the unique-user changes from them to the markers the person's `remaining` events
    hold, which it returns (sorted) for the person's document."""
    gone = fold_breakdowns(removed, periods, rules)
    kept = fold_breakdowns(remaining, periods, rules)
    keys = set_keys(gone.events) | set_keys(kept.events)
    keys |= {("day", day, dimension) for day, dimension, _ in before or ()}
    admitted = read_admitted(get, name, keys)
    counted = count_under(gone, admitted.sets, 0)
    changes: Counter[Marker] = Counter()
    after: set[Marker] = set()
    if before is not None:
        after = {(d, dim, v) for d, dim, v, _ in count_under(kept, admitted.sets, 0).users}
        changes.update(after - before)
        changes.subtract(before - after)
    writes = breakdown_writes(name, counted, admitted, changes, updated, events_sign=-1)
    return writes, sorted(after)
