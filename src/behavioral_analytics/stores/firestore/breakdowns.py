"""Breakdowns on the Firestore store (docs/breakdowns.md): what a commit and `forget` write,
and the per-value unique-user markers kept with the person. Where the documents live and how
counts are keyed is `breakdown_layout`'s (a period's breakdowns in its bucket document).

  analytics_aggregates/user_{person}      … breakdown_days: {day: {dimension: {value: true}}}

A commit writes each (granularity, period) its batch touches once: the increments of every
dimension (events, unique-user changes on a day, session deltas from `add_session_counts`) and
the admitted lists that grow go in the write of the period's bucket, which the commit makes
anyway (the committer merges the two: `wire.merged`), up to the field transforms the bucket's
own leave (`transform_room`), the rest in the period's counts document's parts; a set kept in
a document of its own is written there. Admission reads the stored admitted sets in the
commit: a commit that admits a value writes the bucket under the update time it read (or
creates it), so two workers admitting at once conflict and one recounts; counts need no
precondition of their own (those in an admitting write share its precondition: a conflict
drops them with it), because the ranks they are keyed by cannot change under them (an
admitted value stays admitted at its rank, a full set stays full). A period with a values
document (a store written before) admits into that document instead.

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
    bucket_doc_id,
    count_key,
    counts_doc_id,
    list_bytes,
    values_doc_id,
)
from behavioral_analytics.stores.firestore.keys import decode_map_key, encode_map_key
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
    BUCKET_BREAKDOWNS_FIELD,
    MAX_TRANSFORMS_PER_DOC,
)
from behavioral_analytics.stores.firestore.wire import field_path, from_value, write

__all__ = [
    "Admitted",
    "BreakdownBatch",
    "Marker",
    "SessionDeltas",
    "add_session_counts",
    "breakdown_writes",
    "day_set_keys",
    "decode_markers",
    "encode_markers",
    "forget_writes",
    "marker_path",
    "read_admitted",
    "set_keys",
    "transform_room",
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
    document of their own, `stamps` the update time of each values and bucket document read,
    by id (absent: no document), `period_bytes` what the lists in each period's document
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

    def in_bucket(self, granularity: str, period: str) -> bool:
        """Whether the period's breakdowns live in its bucket document: it has no values
        document (which a store written before keeps using)."""
        return values_doc_id(granularity, period) not in self.stamps


def read_admitted(
    get: Callable[[Sequence[str], Sequence[str]], dict[str, Any]],
    name: Callable[[str, str], str],
    keys: Iterable[SetKey],
) -> Admitted:
    """The admitted sets of `keys`, read with `get(names, mask)` (`Gateway.get`): the bucket
    document of each period, its values document (a store written before) and each set's own
    document (a set that outgrew its period's document, or one written before period
    documents), in one batched get."""
    own = {name(BREAKDOWNS, breakdown_doc_id(*key)): key for key in keys}
    periods = {name(BREAKDOWNS, values_doc_id(g, p)): (g, p) for g, p, _ in own.values()}
    periods |= {name(AGGREGATES, bucket_doc_id(g, p)): (g, p) for g, p in periods.values()}
    read = Admitted()
    if not own:
        return read
    bucket_lists = field_path(BUCKET_BREAKDOWNS_FIELD, ADMITTED)
    shared: dict[SetKey, list[str]] = {}
    sizes: dict[str, int] = {}
    for doc_name, doc in get([*own, *periods], [ADMITTED, bucket_lists]).items():
        doc_id = doc_name.rsplit("/", 1)[1]
        read.stamps[doc_id] = doc.update_time
        fields = doc.fields
        if BUCKET_BREAKDOWNS_FIELD in fields:
            fields = fields[BUCKET_BREAKDOWNS_FIELD].map_value.fields
        lists = from_value(fields[ADMITTED]) if ADMITTED in fields else None
        if doc_name in own and lists is not None:
            read.sets[own[doc_name]] = list(lists)
            read.own.add(own[doc_name])
        elif doc_name in periods and lists:
            g, p = periods[doc_name]
            sizes[doc_id] = sum(list_bytes(decode_map_key(d), v) for d, v in lists.items())
            for dimension, values in lists.items():
                key = (g, p, decode_map_key(dimension))
                if len(values) >= len(shared.get(key, ())):  # as `Gathered.add` reads them
                    shared[key] = list(values)
    for g, p in set(periods.values()):
        home = bucket_doc_id(g, p) if read.in_bucket(g, p) else values_doc_id(g, p)
        read.period_bytes[g, p] = sizes.get(home, 0)
    for key, values in shared.items():
        read.sets.setdefault(key, values)
    return read


def transform_room(writes: Iterable[Any], max_transforms: int) -> dict[str, int]:
    """Per document `writes` write (`wire.write` protobufs), how many more field transforms
    its write takes under `max_transforms`: what a bucket's write in the same commit leaves
    for the period's breakdown counts (`breakdown_writes`' `room`)."""
    return {
        w.update.name: max(0, max_transforms - len(w.update_transforms))
        for w in writes
        if w.HasField("update")
    }


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

    def writes(
        self, name: Callable[[str, str], str], updated: datetime, room: Mapping[str, int]
    ) -> list[Any]:
        """One write per period touched (`breakdown_writes`; `room` its bucket's), one per
        set of its own that grows, and one per counts document part the increments that do
        not fit change."""
        return breakdown_writes(
            name,
            self.counted,
            self.admitted,
            self.user_changes,
            updated,
            sessions=self.sessions,
            max_transforms=self.max_transforms,
            room=room,
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
    room: Mapping[str, int] | None = None,
) -> list[Any]:
    """The writes of `counted` (events times `events_sign`), `user_changes` and `sessions`
    (`breakdown_layout`): per (granularity, period), the increments of
    `{events|users|sessions}.{dimension}.{key}` (`count_key`) and the whole admitted list of
    each set admitting values, one write to the period's bucket document (under
    `breakdowns`), made under the update time read (or create()) when it admits. The bucket's
    write takes `room[its name]` increments (what the bucket's own write in the same commit
    leaves: `transform_room`; `max_transforms` when absent; none without `room`), the rest go
    to the period's counts document's parts, `max_transforms` each. A period with a values
    document (a store written before) keeps its lists there, written only when it admits
    (carrying `max_transforms` increments), its other increments in its counts documents."""
    lists: dict[SetKey, list[str]] = {}

    def key_of(set_key: SetKey, value: str) -> str:
        if set_key not in lists:
            lists[set_key] = [*admitted.sets.get(set_key, ()), *counted.admitted.get(set_key, ())]
        return count_key(lists[set_key], value)

    increments: dict[tuple[str, str], list[tuple[tuple[str, str, str], int]]] = defaultdict(list)

    def add(map_name: str, set_key: SetKey, value: str, n: int) -> None:
        if n:
            g, p, d = set_key
            increments[g, p].append(((map_name, encode_map_key(d), key_of(set_key, value)), n))

    for (g, p, d, value), n in counted.events.items():
        add(EVENTS, (g, p, d), value, events_sign * n)
    for (day, dimension, value), n in user_changes.items():
        add(USERS, ("day", day, dimension), value, n)
    for (sg, sp, sd, value), n in (sessions or {}).items():
        add(SESSIONS, (sg, sp, sd), value, n)
    step = max(1, max_transforms)
    writes, period_lists = _admissions(name, counted.admitted, admitted, updated)
    for granularity, period in dict.fromkeys([*period_lists, *increments]):
        changes = increments.get((granularity, period), [])
        grown = period_lists.get((granularity, period), {})
        if admitted.in_bucket(granularity, period):
            document = name(AGGREGATES, bucket_doc_id(granularity, period))
            take = 0 if room is None else room.get(document, step)
        else:
            take = step if grown else 0
        carried, rest = changes[:take], changes[take:]
        if grown or carried:
            writes.append(
                _period_write(name, granularity, period, grown, carried, admitted, updated)
            )
        fields = {
            "kind": COUNTS_KIND,
            "granularity": granularity,
            "period": period,
            "last_updated": updated,
        }
        spilled = [(field_path(*path), "increment", n) for path, n in rest]
        for part, start in enumerate(range(0, len(spilled), step)):
            writes.append(
                write(
                    name(BREAKDOWNS, counts_doc_id(granularity, period, part)),
                    fields,
                    mask=list(fields),
                    transforms=spilled[start : start + step],
                )
            )
    return writes


def _admissions(
    name: Callable[[str, str], str],
    new_values: Mapping[SetKey, Sequence[str]],
    admitted: Admitted,
    updated: datetime,
) -> tuple[list[Any], dict[tuple[str, str], dict[str, list[str] | None]]]:
    """What admitting `new_values` into the sets `admitted` read writes: the writes of the sets
    kept in documents of their own, and per period the lists its document takes (dimension →
    the whole list; None: the set leaves it for a document of its own, as one that would take
    the period's lists past `PERIOD_VALUES_BYTES` does, its largest growing sets first)."""
    grown_lists: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(dict)
    writes = []
    for key, new in new_values.items():
        if new:
            full = [*admitted.sets.get(key, ()), *new]
            if key in admitted.own:
                writes.append(_own_write(name, key, full, admitted, updated))
            else:
                grown_lists[key[0], key[1]][key[2]] = full
    by_period: dict[tuple[str, str], dict[str, list[str] | None]] = {}
    for (granularity, period), grown in grown_lists.items():
        size = admitted.period_bytes.get((granularity, period), 0)
        for dimension, full in grown.items():
            old = admitted.sets.get((granularity, period, dimension))
            size += list_bytes(dimension, full) - (list_bytes(dimension, old) if old else 0)
        taken: dict[str, list[str] | None] = dict(grown)
        for dimension, full in sorted(grown.items(), key=lambda item: -len(item[1])):
            if size <= PERIOD_VALUES_BYTES:
                break
            writes.append(
                _own_write(name, (granularity, period, dimension), full, admitted, updated)
            )
            size -= list_bytes(dimension, full)
            taken[dimension] = None
        by_period[granularity, period] = taken
    return writes, by_period


def _period_write(
    name: Callable[[str, str], str],
    granularity: str,
    period: str,
    grown: Mapping[str, list[str] | None],
    carried: Sequence[tuple[tuple[str, str, str], int]],
    admitted: Admitted,
    updated: datetime,
) -> Any:
    """The write of a period's breakdowns: its bucket document's `breakdowns` (or its values
    document, in a store written before), the lists in `grown` (None: removed) and the
    `carried` increments ((map, dimension, key), n); under the update time read when a list
    grows, so a concurrent admission conflicts."""
    in_bucket = admitted.in_bucket(granularity, period)
    if in_bucket:
        document = bucket_doc_id(granularity, period)
        home = name(AGGREGATES, document)
        kind, prefix = "bucket", [BUCKET_BREAKDOWNS_FIELD]
    else:
        document = values_doc_id(granularity, period)
        home = name(BREAKDOWNS, document)
        kind, prefix = VALUES_KIND, []
    fields: dict[str, Any] = {
        "kind": kind,
        "granularity": granularity,
        "period": period,
        "last_updated": updated,
    }
    mask = [*fields, *(field_path(*prefix, ADMITTED, encode_map_key(d)) for d in grown)]
    staying = {encode_map_key(d): full for d, full in grown.items() if full is not None}
    if staying:
        lists = {ADMITTED: staying}
        fields.update({BUCKET_BREAKDOWNS_FIELD: lists} if in_bucket else lists)
    return write(
        home,
        fields,
        mask=mask,
        transforms=[(field_path(*prefix, *path), "increment", n) for path, n in carried],
        **(_precondition(admitted, document) if grown else {}),
    )


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
