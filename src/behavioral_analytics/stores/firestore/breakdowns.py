"""Breakdowns on the Firestore store (docs/breakdowns.md): what a commit and `forget` write,
and the per-value unique-user markers kept with the person. Where the documents live and how
counts are keyed is `breakdown_layout`'s (one counts document per (granularity, period), one
values document per admitted set).

  analytics_aggregates/user_{person}      … breakdown_days: {day: {dimension: {value: true}}}

A commit writes each (granularity, period) its batch touches once: the increments of every
dimension (events, unique-user changes on a day, session deltas from `add_session_counts`) go
in the period's values document's write when the commit admits values there (the values
document is written anyway), else in its counts document, spilling into further counts parts
past `max_transforms` increments; a set kept in a document of its own is written there.
Admission reads the stored admitted sets in the commit: a commit that admits a value writes the
values document under the update time it read (or creates it), so two workers admitting at
once conflict and one recounts; counts need no precondition of their own (those carried by a
values write share its precondition: a conflict drops them with it), because the ranks they
are keyed by cannot change under them (an admitted value stays admitted at its rank, a full set
stays full).

In a person's markers the dimension and value are map keys escaped by `keys.encode_map_key`
(a key starting with `~` or shaped like `__…__` gets a `~` prefix; every other string, dots,
backticks and slashes included, is kept as is and written as a quoted field path segment). A
value is at most `dimensions.MAX_VALUE_CHARS` (256) characters, 1,024 UTF-8 bytes, under
Firestore's 1,500-byte field-name limit, so none is ever hashed.

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
    OTHER,
    BreakdownRules,
    Counted,
    count_under,
    fold_breakdowns,
)
from behavioral_analytics.events import Event
from behavioral_analytics.session_breakdowns import count_sessions_under
from behavioral_analytics.stores.firestore.breakdown_layout import (
    ADMITTED,
    COUNTS_KIND,
    EVENTS,
    PERIOD_VALUES_BYTES,
    SESSIONS,
    USERS,
    VALUES_KIND,
    SetKey,
    breakdown_doc_id,
    count_key,
    counts_doc_id,
    list_bytes,
    values_doc_id,
)
from behavioral_analytics.stores.firestore.keys import decode_map_key, encode_map_key
from behavioral_analytics.stores.firestore.schema import (
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
    MAX_TRANSFORMS_PER_DOC,
)
from behavioral_analytics.stores.firestore.wire import field_path, from_value, write

__all__ = [
    "Admitted",
    "BreakdownBatch",
    "Marker",
    "SessionDeltas",
    "add_session_counts",
    "admission_writes",
    "breakdown_writes",
    "day_set_keys",
    "decode_markers",
    "encode_markers",
    "forget_writes",
    "marker_path",
    "read_admitted",
    "set_keys",
]

Marker = tuple[str, str, str]  # (day, dimension, counted value)
# (granularity, period, dimension, value) → sessions added (negative: taken away)
SessionDeltas = Counter[tuple[str, str, str, str]]


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
    """Stored admitted sets as a commit read them: `sets` per set, `own` the sets kept in a
    document of their own, `stamps` the update time of each values document read, by id
    (absent: no document), `period_bytes` what the lists in each period's values document
    take (`breakdown_layout.list_bytes`)."""

    sets: dict[SetKey, list[str]] = field(default_factory=dict)
    own: set[SetKey] = field(default_factory=set)
    stamps: dict[str, Any] = field(default_factory=dict)
    period_bytes: dict[tuple[str, str], int] = field(default_factory=dict)

    def update(self, other: Admitted) -> None:
        """Add what a later read found about sets this one does not hold, keeping what this
        one read: a document read twice keeps its first update time, so a commit writing it
        conflicts if it changed in between."""
        for key, values in other.sets.items():
            if key not in self.sets:
                self.sets[key] = values
                if key in other.own:
                    self.own.add(key)
        for document, stamp in other.stamps.items():
            self.stamps.setdefault(document, stamp)
        for period, size in other.period_bytes.items():
            self.period_bytes.setdefault(period, size)


def read_admitted(
    get: Callable[[Sequence[str], Sequence[str]], dict[str, Any]],
    name: Callable[[str, str], str],
    keys: Iterable[SetKey],
) -> Admitted:
    """The admitted sets of `keys`, read with `get(names, mask)` (`Gateway.get`): the values
    document of each period and each set's own document (a set that outgrew its period's
    document, or one written before period documents), in one batched get."""
    own = {name(BREAKDOWNS, breakdown_doc_id(*key)): key for key in keys}
    periods = {name(BREAKDOWNS, values_doc_id(g, p)): (g, p) for g, p, _ in own.values()}
    read = Admitted()
    if not own:
        return read
    shared: dict[SetKey, list[str]] = {}
    for doc_name, doc in get([*own, *periods], [ADMITTED]).items():
        doc_id = doc_name.rsplit("/", 1)[1]
        read.stamps[doc_id] = doc.update_time
        lists = from_value(doc.fields[ADMITTED]) if ADMITTED in doc.fields else None
        if doc_name in own and lists is not None:
            read.sets[own[doc_name]] = list(lists)
            read.own.add(own[doc_name])
        elif doc_name in periods and lists:
            g, p = periods[doc_name]
            read.period_bytes[g, p] = sum(
                list_bytes(decode_map_key(d), values) for d, values in lists.items()
            )
            for dimension, values in lists.items():
                shared[g, p, decode_map_key(dimension)] = list(values)
    for key, values in shared.items():
        read.sets.setdefault(key, values)
    return read


class BreakdownBatch:
    """A commit's breakdowns: its new human events counted under the admitted sets read, the
    markers each person gains, the markers moved events (identity links) carry, and the
    session deltas the commit adds (`add_session_counts`).

    `read(keys)` reads stored admitted sets (`read_admitted`); `max_transforms` bounds the
    increments one counts document gets in one write (Firestore: 500 per document)."""

    def __init__(
        self,
        humans: Sequence[Event],
        moved: Sequence[Event],
        rules: BreakdownRules,
        periods: Periods,
        read: Callable[[Iterable[SetKey]], Admitted],
        max_transforms: int = MAX_TRANSFORMS_PER_DOC,
    ) -> None:
        self.rules = rules
        self.periods = periods
        self.max_transforms = max_transforms
        self._read = read
        delta = fold_breakdowns(humans, periods, rules)
        wanted = set_keys(delta.events) | day_set_keys(moved, periods, rules)
        self.admitted = read(wanted) if rules.dimensions else Admitted()
        self._read_keys: set[SetKey] = set(wanted) if rules.dimensions else set()
        self.counted: Counted = count_under(delta, self.admitted.sets, rules.max_values)
        self.markers: dict[str, set[Marker]] = defaultdict(set)
        for day, dimension, value, who in self.counted.users:
            self.markers[who].add((day, dimension, value))
        self.user_changes: Counter[Marker] = Counter()
        self.sessions: SessionDeltas = Counter()
        # The days whose markers the commit reads (`stored_markers`); sets read later for
        # session counts (`admitted_list`) add none.
        self._read_days = {p for g, p, _ in wanted if g == "day"}

    def stored_markers(self, events: Iterable[Event]) -> set[Marker]:
        """The markers stored events (each `who` its person) hold, under the sets read;
        only on the days the batch read (those of its new and moved events)."""
        kept = [e for e in events if self.periods.of(e.timestamp)[2] in self._read_days]
        delta = fold_breakdowns(kept, self.periods, self.rules)
        counted = count_under(delta, self.admitted.sets, 0)
        return {(day, dimension, value) for day, dimension, value, _ in counted.users}

    def read_sets(self, keys: Iterable[SetKey]) -> None:
        """Read the stored admitted sets among `keys` the batch has not read yet (one get)."""
        missing = set(keys) - self._read_keys
        if missing:
            self.admitted.update(self._read(missing))
            self._read_keys |= missing

    def admitted_list(self, key: SetKey) -> list[str]:
        """The admitted set of `key` as this commit leaves it (stored, then admitted here),
        read from the store first when the batch has not read it yet."""
        self.read_sets([key])
        return [*self.admitted.sets.get(key, ()), *self.counted.admitted.get(key, ())]

    def writes(self, name: Callable[[str, str], str], updated: datetime) -> list[Any]:
        """One write per values document it admits into (carrying its period's counts) and
        one per counts document part the rest of the increments change."""
        return breakdown_writes(
            name,
            self.counted,
            self.admitted,
            self.user_changes,
            updated,
            sessions=self.sessions,
            max_transforms=self.max_transforms,
        )


def add_session_counts(
    batch: BreakdownBatch, deltas: Mapping[tuple[str, str, str, str], int]
) -> None:
    """Fold sessions-per-value deltas into `batch`, written with its counts documents in the
    same commit (`sessions.{dimension}.{rank}` increments: no extra write per period).

    `deltas`: (granularity, period, dimension, value) → sessions added (negative: taken away),
    granularity "hour" or "day". A value is its set's admitted value, `(other)`, or a value the
    set does not hold yet: that one is admitted here while the set holds fewer than K values
    (positive deltas only: a count taken away was made under the set as it was, which a value
    outside it could only reach as `(other)`), else counted under `(other)`. Sets the batch has
    not read are read now (`BreakdownBatch.admitted_list`). Raises what the read raises.
    """
    limit = batch.rules.max_values
    batch.read_sets((g, p, d) for (g, p, d, _), n in deltas.items() if n)
    for (granularity, period, dimension, value), n in deltas.items():
        if not n:
            continue
        key = (granularity, period, dimension)
        admitted = batch.admitted_list(key)
        under = value
        if value != OTHER and value not in admitted:
            if n > 0 and len(admitted) < limit:
                batch.counted.admitted.setdefault(key, []).append(value)
            else:
                under = OTHER
        batch.sessions[granularity, period, dimension, under] += n


def breakdown_writes(
    name: Callable[[str, str], str],
    counted: Counted,
    admitted: Admitted,
    user_changes: Mapping[Marker, int],
    updated: datetime,
    events_sign: int = 1,
    sessions: Mapping[tuple[str, str, str, str], int] | None = None,
    max_transforms: int = MAX_TRANSFORMS_PER_DOC,
) -> list[Any]:
    """The writes of `counted` (events times `events_sign`), `user_changes` and `sessions`
    (`breakdown_layout`): per (granularity, period), the increments of
    `{events|users|sessions}.{dimension}.{key}` (`count_key`), at most `max_transforms` a
    document; per set admitting values, its values document with the whole admitted list,
    under the update time read (or create()). A period whose values document is written
    carries its first `max_transforms` increments in that write; the rest (every increment of
    a period admitting nothing) go to its counts document's parts."""
    lists: dict[SetKey, list[str]] = {}

    def key_of(set_key: SetKey, value: str) -> str:
        if set_key not in lists:
            lists[set_key] = [*admitted.sets.get(set_key, ()), *counted.admitted.get(set_key, ())]
        return count_key(lists[set_key], value)

    transforms: dict[tuple[str, str], list[tuple[str, str, float]]] = defaultdict(list)

    def add(map_name: str, set_key: SetKey, value: str, n: int) -> None:
        if n:
            g, p, d = set_key
            path = field_path(map_name, encode_map_key(d), key_of(set_key, value))
            transforms[g, p].append((path, "increment", n))

    for (g, p, d, value), n in counted.events.items():
        add(EVENTS, (g, p, d), value, events_sign * n)
    for (day, dimension, value), n in user_changes.items():
        add(USERS, ("day", day, dimension), value, n)
    for (sg, sp, sd, value), n in (sessions or {}).items():
        add(SESSIONS, (sg, sp, sd), value, n)
    step = max(1, max_transforms)
    carried = {
        period: transforms[period][:step] for period in _admitting_periods(counted, admitted)
    }
    writes = admission_writes(name, counted.admitted, admitted, updated, carried)
    for (granularity, period), increments in transforms.items():
        increments = increments[len(carried.get((granularity, period), ())) :]
        fields = {
            "kind": COUNTS_KIND,
            "granularity": granularity,
            "period": period,
            "last_updated": updated,
        }
        for part, start in enumerate(range(0, len(increments), step)):
            writes.append(
                write(
                    name(BREAKDOWNS, counts_doc_id(granularity, period, part)),
                    fields,
                    mask=list(fields),
                    transforms=increments[start : start + step],
                )
            )
    return writes


def _admitting_periods(counted: Counted, admitted: Admitted) -> set[tuple[str, str]]:
    """The (granularity, period) whose values document `admission_writes` writes."""
    return {
        (key[0], key[1]) for key, new in counted.admitted.items() if new and key not in admitted.own
    }


def admission_writes(
    name: Callable[[str, str], str],
    new_values: Mapping[SetKey, Sequence[str]],
    admitted: Admitted,
    updated: datetime,
    carried: Mapping[tuple[str, str], Sequence[tuple[str, str, float]]] | None = None,
) -> list[Any]:
    """The values documents' writes for `new_values` admitted into the sets `admitted` read:
    per period, its values document's lists of the sets that grow (one write); a set kept in
    its own document there, and a set that would take the period's document past
    `PERIOD_VALUES_BYTES` moved to one (its list leaves the period's document in the same
    write). Each write is made under the update time read (or as a create), so a concurrent
    admission into the same document conflicts. `carried`: per period, count increments
    (field path, "increment", n) made in its values document's write (at most 500: Firestore's
    field transforms per document in a commit)."""
    by_period: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(dict)
    writes = []
    for key, new in new_values.items():
        if new:
            full = [*admitted.sets.get(key, ()), *new]
            if key in admitted.own:
                writes.append(_own_write(name, key, full, admitted, updated))
            else:
                by_period[key[0], key[1]][key[2]] = full
    for (granularity, period), lists in by_period.items():
        size = admitted.period_bytes.get((granularity, period), 0)
        for dimension, full in lists.items():
            old = admitted.sets.get((granularity, period, dimension))
            size += list_bytes(dimension, full) - (list_bytes(dimension, old) if old else 0)
        staying = dict(lists)
        for dimension, full in sorted(lists.items(), key=lambda item: -len(item[1])):
            if size <= PERIOD_VALUES_BYTES:
                break
            key = (granularity, period, dimension)
            writes.append(_own_write(name, key, full, admitted, updated))
            size -= list_bytes(dimension, full)
            del staying[dimension]
        fields: dict[str, Any] = {
            "kind": VALUES_KIND,
            "granularity": granularity,
            "period": period,
            "last_updated": updated,
        }
        mask = [*fields, *(field_path(ADMITTED, encode_map_key(d)) for d in lists)]
        fields[ADMITTED] = {encode_map_key(d): values for d, values in staying.items()}
        writes.append(
            write(
                name(BREAKDOWNS, values_doc_id(granularity, period)),
                fields,
                mask=mask,
                transforms=(carried or {}).get((granularity, period), ()),
                **_precondition(admitted, values_doc_id(granularity, period)),
            )
        )
    return writes


def _own_write(
    name: Callable[[str, str], str],
    key: SetKey,
    values: list[str],
    admitted: Admitted,
    updated: datetime,
) -> Any:
    granularity, period, dimension = key
    fields: dict[str, Any] = {
        "kind": VALUES_KIND,
        "granularity": granularity,
        "period": period,
        "dimension": dimension,
        ADMITTED: values,
        "last_updated": updated,
    }
    own_id = breakdown_doc_id(*key)
    return write(
        name(BREAKDOWNS, own_id), fields, mask=list(fields), **_precondition(admitted, own_id)
    )


def _precondition(admitted: Admitted, document: str) -> dict[str, Any]:
    stamp = admitted.stamps.get(document)
    return {"exists": False} if stamp is None else {"update_time": stamp}


def forget_writes(
    get: Callable[[Sequence[str], Sequence[str]], dict[str, Any]],
    name: Callable[[str, str], str],
    rules: BreakdownRules,
    periods: Periods,
    removed: Sequence[Event],
    updated: datetime,
    before: frozenset[Marker] | None = None,
    remaining: Sequence[Event] = (),
    sessions: Mapping[tuple[str, str, str, str], int] | None = None,
) -> tuple[list[Any], list[Marker]]:
    """`forget`'s breakdown writes: the human events `removed` (each `who` its person) taken
    back out under the stored admitted sets; with `before` (the person's markers: the last
    step), the unique-user changes from them to the markers the person's `remaining` events
    hold, which it returns (sorted) for the person's document; `sessions`: session deltas by
    raw value (`session_breakdowns.session_deltas`), mapped through the same sets."""
    gone = fold_breakdowns(removed, periods, rules)
    kept = fold_breakdowns(remaining, periods, rules)
    keys = set_keys(gone.events) | set_keys(kept.events)
    keys |= {("day", day, dimension) for day, dimension, _ in before or ()}
    keys |= {(g, p, d) for g, p, d, _ in sessions or {}}
    admitted = read_admitted(get, name, keys)
    counted = count_under(gone, admitted.sets, 0)
    by_sessions = count_sessions_under(Counter(sessions or {}), admitted.sets, rules.max_values)
    counted.admitted.update(by_sessions.admitted)
    changes: Counter[Marker] = Counter()
    after: set[Marker] = set()
    if before is not None:
        after = {(d, dim, v) for d, dim, v, _ in count_under(kept, admitted.sets, 0).users}
        changes.update(after - before)
        changes.subtract(before - after)
    writes = breakdown_writes(
        name, counted, admitted, changes, updated, events_sign=-1, sessions=by_sessions.sessions
    )
    return writes, sorted(after)
