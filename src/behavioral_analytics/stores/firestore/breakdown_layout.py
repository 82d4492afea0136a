"""Where the Firestore store keeps breakdowns (docs/gcp.md "Breakdowns"): per (granularity,
period), in the period's bucket document, the admitted set of every dimension and every
dimension's counts, keyed by rank in the admitted sets.

  analytics_aggregates/hourly_{hour}     {kind: "bucket", granularity, period, … the bucket's
  analytics_aggregates/daily_{day}        counts, breakdowns: {
                                            admitted: {dimension: [value, …] in admission order},
                                            events:   {dimension: {rank: n, "(other)": n}},
                                            users:    {dimension: {rank: n, …}} (days only),
                                            sessions: {dimension: {rank: n, …}}}}
  breakdowns/counts_hour_{hour}[~n]      {kind: "breakdown_counts", granularity, period,
  breakdowns/counts_day_{day}[~n]         events, users, sessions: as the bucket's}
  breakdowns/hourly_{dimension}_{hour}   {kind: "breakdown_values", granularity, period,
  breakdowns/daily_{dimension}_{day}      dimension, admitted: [value, …]}  (a set of its own)
  breakdowns/values_hour_{hour}          {kind: "breakdown_values", granularity, period,
  breakdowns/values_day_{day}             admitted, events, users, sessions: as the bucket's}
                                          (a store written before: see below)

Why in the bucket: a commit writes the bucket of every (granularity, period) its events fall in
anyway, and a late event is often alone in its period. The period's breakdowns ride in that
write (`wire.merged`), whatever the number of dimensions: no write of their own. A commit that
admits values writes the whole grown lists under the bucket's update time it read (or as a
create), so two workers admitting at once conflict and one recounts; so does an admission
meeting another worker's bucket write since its read (counter shards,
BA_FIRESTORE_COUNTER_SHARDS, keep the buckets' own increments off the period's document).
Values are written only when admitted, which stops once each set holds K values or the
period's values have all been seen.

Size: the counts hold at most 3 x (K + 1) entries per dimension, about 15 bytes each (at the
default K = 100, 17 dimensions: under 100 KiB). A bucket keeps a set's list while the lists
stay under `PERIOD_VALUES_BYTES`; the commit that would take them past moves the largest
growing sets to documents of their own (`hourly_{dimension}_{hour}`, the id
`keys.doc_id`-escaped), removing them from the bucket in the same write, so no document nears
Firestore's 1 MiB (an hour's bucket also holds its minutes): a set of its own is at most K
values of 1,024 bytes.

A value is written once, in its set's list; counts are keyed by its rank there (`"0"` for the
first value admitted; `count_key`), which never changes because the list only grows. The
dimension is a map key escaped by `keys.encode_map_key`.

A commit's increments to one document are at most `max_transforms` (Firestore allows 500
field transforms per document in a commit, firebase.google.com/docs/firestore/quotas), the
bucket's own counted in; past that they spill into the period's counts document
`counts_{granularity}_{period}` and its parts `…~1`, `…~2`. Any of them may hold any count: a
read sums them all (`Gathered`), so which document an increment went to never matters. The
period ends every id and the dimension comes before it in a set's own document's, so one
granularity's periods (and one dimension's own sets) are ranges of document ids: reads need
no composite index.

Earlier layouts are read and kept: a period with a values document `values_{granularity}_
{period}` (breakdowns before they moved into the buckets) keeps its lists there, admitting into
it with the period's increments carried in that write, its other increments in its counts
documents, until a rebuild moves them into the bucket (`into_buckets`); a set's own
document from before period documents holds its counts by rank (`events`, `users`), which
`Gathered` adds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from behavioral_analytics.aggregation import Granularity
from behavioral_analytics.breakdowns import BREAKDOWN_GRANULARITIES, OTHER, Counted
from behavioral_analytics.store import AggregateSnapshot, BreakdownPoint
from behavioral_analytics.stores.firestore.keys import decode_map_key, doc_id, encode_map_key
from behavioral_analytics.stores.firestore.schema import BUCKET_BREAKDOWNS_FIELD, BUCKET_PREFIX

__all__ = [
    "COUNT_MAPS",
    "EVENTS",
    "SESSIONS",
    "USERS",
    "Gathered",
    "SetKey",
    "breakdown_doc_id",
    "bucket_breakdowns",
    "bucket_doc_id",
    "count_key",
    "counts_doc_id",
    "counts_prefix",
    "doc_size_bytes",
    "gather",
    "into_buckets",
    "list_bytes",
    "name_size",
    "rebuilt_docs",
    "value_size",
    "values_doc_id",
    "values_prefix",
]

SetKey = tuple[str, str, str]  # (granularity, period, dimension)
ADMITTED, EVENTS, USERS, SESSIONS = "admitted", "events", "users", "sessions"
COUNT_MAPS = (EVENTS, USERS, SESSIONS)
VALUES_KIND, COUNTS_KIND = "breakdown_values", "breakdown_counts"
# A rebuilt counts document starts a new part past this size (bytes, Firestore's rules).
REBUILT_PART_BYTES = 200 * 1024
# A period's values document keeps a set's list while it stays under this size (bytes);
# a set that would take it past moves to a document of its own.
PERIOD_VALUES_BYTES = 192 * 1024


def breakdown_doc_id(granularity: str, period: str, dimension: str) -> str:
    """The values document of a set: `hourly_{dimension}_{hour}` or `daily_{dimension}_{day}`,
    the dimension escaped as a document id (`keys.doc_id`)."""
    return f"{doc_id(BUCKET_PREFIX[granularity], dimension)}_{period}"


def bucket_doc_id(granularity: str, period: str) -> str:
    """The bucket document of (granularity, period) (`hourly_{hour}`, `daily_{day}`, in
    `analytics_aggregates`): its field `breakdowns` holds the period's breakdowns, unless the
    period has a values document (`values_doc_id`: a store written before)."""
    return BUCKET_PREFIX[granularity] + period


def bucket_breakdowns(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A bucket document's breakdowns (its `breakdowns` field) as a period's values document
    reads, for `Gathered.add`; None when it holds none."""
    held = data.get(BUCKET_BREAKDOWNS_FIELD)
    if not held:
        return None
    return {
        "granularity": data.get("granularity", ""),
        "period": data.get("period", ""),
        **held,
        ADMITTED: held.get(ADMITTED) or {},
    }


def values_prefix(granularity: str) -> str:
    """The id prefix of a granularity's period values documents (`values_hour_`, …)."""
    return f"values_{granularity}_"


def values_doc_id(granularity: str, period: str) -> str:
    """The values document of (granularity, period): `values_day_{day}`."""
    return f"{values_prefix(granularity)}{period}"


def list_bytes(dimension: str, values: Sequence[str]) -> int:
    """The size a dimension's admitted list takes in a period's values document (Firestore's
    storage-size rules)."""
    return _fields_size({encode_map_key(dimension): list(values)})


def counts_prefix(granularity: str) -> str:
    """The id prefix of a granularity's counts documents (`counts_hour_`, `counts_day_`);
    no values document id starts so."""
    return f"counts_{granularity}_"


def counts_doc_id(granularity: str, period: str, part: int = 0) -> str:
    """The counts document of (granularity, period): `counts_day_{day}`, its spill parts
    `counts_day_{day}~1`, … (`~` sorts after every character of a period)."""
    return f"{counts_prefix(granularity)}{period}" + (f"~{part}" if part else "")


def count_key(admitted: Sequence[str], value: str) -> str:
    """The key a counted value has in a dimension's count maps: its rank in the admitted list
    (`"0"` for the first value admitted, …), or `(other)`.

    Raises ValueError for a value the list does not hold (a store defect)."""
    if value == OTHER:
        return OTHER
    return str(admitted.index(value))


@dataclass(slots=True)
class Gathered:
    """Breakdown documents as read, summed: the admitted sets, and per (count map, set) the
    counts by rank key, every counts part, the counts a period's values document carries (and
    the previous layout's values documents) added.
    `with_sessions`: the store counts sessions per value (points and snapshots carry them;
    else they say None).
    """

    with_sessions: bool = False
    own: dict[SetKey, list[str]] = field(default_factory=dict)  # sets with a document each
    shared: dict[SetKey, list[str]] = field(default_factory=dict)  # in a period's document
    counts: dict[tuple[str, SetKey], Counter[str]] = field(default_factory=dict)

    def add(self, data: Mapping[str, Any]) -> None:
        """Add one breakdown document (a values or a counts document, as a dict)."""
        granularity, period = data.get("granularity", ""), data.get("period", "")
        if "dimension" in data:  # a set's own values document
            key = (granularity, period, data["dimension"])
            if data.get(ADMITTED):
                self.own[key] = list(data[ADMITTED])
            for name in (EVENTS, USERS):  # the previous layout's counts
                self._add_counts(name, key, data.get(name))
            return
        if isinstance(data.get(ADMITTED), Mapping):  # a period's values (or bucket) document
            for dimension, values in data[ADMITTED].items():
                # A set's list is in one document; in two (a repair cut short, or made
                # while a worker committed), the longer is the later: a list only grows.
                key = (granularity, period, decode_map_key(dimension))
                if len(values) >= len(self.shared.get(key, ())):
                    self.shared[key] = list(values)
        for name in COUNT_MAPS:  # a counts document's, or those a values write carried
            for dimension, counts in (data.get(name) or {}).items():
                self._add_counts(name, (granularity, period, decode_map_key(dimension)), counts)

    def _add_counts(self, name: str, key: SetKey, counts: Mapping[str, int] | None) -> None:
        if counts:
            self.counts.setdefault((name, key), Counter()).update(counts)

    def admitted(self, key: SetKey) -> list[str]:
        """A set's admitted values (its own document's, where it has one)."""
        return self.own.get(key) or self.shared.get(key) or []

    def by_value(self, name: str, key: SetKey) -> dict[str, int]:
        """A set's counts of map `name` by value, zero counts left out."""
        admitted = self.admitted(key)
        return {
            OTHER if rank == OTHER else admitted[int(rank)]: n
            for rank, n in self.counts.get((name, key), Counter()).items()
            if n
        }

    def sets(self) -> set[SetKey]:
        """Every set with an admitted list or counts."""
        return {*self.own, *self.shared, *(key for _, key in self.counts)}

    def point(self, key: SetKey) -> BreakdownPoint | None:
        """The port's point of one set (None: no events and no sessions)."""
        granularity, period, dimension = key
        events = self.by_value(EVENTS, key)
        other = events.pop(OTHER, 0)
        sessions = self.by_value(SESSIONS, key) if self.with_sessions else None
        if not events and not other and not sessions:
            return None
        has_events = bool(events or other)
        users = self.by_value(USERS, key) if granularity == "day" and has_events else None
        day_or_hour: Granularity = "day" if granularity == "day" else "hour"
        return BreakdownPoint(day_or_hour, period, dimension, events, users, other, sessions)

    def fill(self, snap: AggregateSnapshot) -> None:
        """Add every set to `snap` (zero counts left out)."""
        for key in self.sets():
            g, p, d = key
            for value, n in self.by_value(EVENTS, key).items():
                snap.breakdown_events[g, p, d, value] = n
            if g == "day":
                for value, n in self.by_value(USERS, key).items():
                    snap.breakdown_users[p, d, value] = n
            if self.admitted(key):
                snap.breakdown_admitted[key] = tuple(self.admitted(key))
            if self.with_sessions:
                sessions = snap.breakdown_sessions
                if sessions is None:
                    sessions = snap.breakdown_sessions = {}
                for value, n in self.by_value(SESSIONS, key).items():
                    sessions[g, p, d, value] = n


def rebuilt_docs(
    counted: Counted,
    admitted: Mapping[SetKey, Sequence[str]],
    sessions: Mapping[tuple[str, str, str, str], int] | None = None,
    own_documents: bool = False,
) -> dict[str, dict[str, Any]]:
    """Document id → the whole breakdown document a recount makes (`verify --repair`,
    `config apply`): the admitted sets (the stored ones extended by what the recount admits)
    in each period's values document, smallest first, a set that would take it past
    `PERIOD_VALUES_BYTES` (or every set, `own_documents`) in a document of its own; and the
    counts documents of each period, a part per `REBUILT_PART_BYTES`. `sessions`:
    (granularity, period, dimension, counted value) → sessions, when recounted."""
    lists: dict[SetKey, list[str]] = {
        key: list(values)
        for key, values in admitted.items()
        if key[0] in BREAKDOWN_GRANULARITIES and values
    }
    for key, new in counted.admitted.items():
        lists[key] = [*lists.get(key, ()), *new]
    maps: dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]] = {}

    def put(name: str, key: SetKey, value: str, n: int) -> None:
        g, p, d = key
        by_dimension = maps.setdefault((g, p), {}).setdefault(d, {})
        by_dimension.setdefault(name, {})[count_key(lists.get(key, []), value)] = n

    for (g, p, d, value), n in counted.events.items():
        put(EVENTS, (g, p, d), value, n)
    for (day, d, value), n in counted.unique_users().items():
        put(USERS, ("day", day, d), value, n)
    for (sg, sp, sd, value), n in (sessions or {}).items():
        put(SESSIONS, (sg, sp, sd), value, n)
    docs: dict[str, dict[str, Any]] = {}
    shared: dict[tuple[str, str], dict[str, Any]] = {}
    for (vg, vp, vd), values in sorted(lists.items(), key=lambda item: len(item[1])):
        period_doc = shared.setdefault((vg, vp), _values_doc(vg, vp))
        size = _fields_size(period_doc[ADMITTED]) + list_bytes(vd, values)
        if own_documents or size > PERIOD_VALUES_BYTES:
            docs[breakdown_doc_id(vg, vp, vd)] = {**_values_doc(vg, vp, vd), ADMITTED: values}
        else:
            period_doc[ADMITTED][encode_map_key(vd)] = values
    for (vg, vp), period_doc in shared.items():
        if period_doc[ADMITTED]:
            docs[values_doc_id(vg, vp)] = period_doc
    for (cg, cp), by_dimension in maps.items():
        part, doc = 0, _counts_doc(cg, cp)
        for dimension, by_map in by_dimension.items():
            size = sum(_fields_size({encode_map_key(dimension): c}) for c in by_map.values())
            if any(doc[m] for m in COUNT_MAPS) and _fields_size(doc) + size > REBUILT_PART_BYTES:
                docs[counts_doc_id(cg, cp, part)] = doc
                part, doc = part + 1, _counts_doc(cg, cp)
            for name, counts in by_map.items():
                doc[name][encode_map_key(dimension)] = counts
        docs[counts_doc_id(cg, cp, part)] = doc
    return docs


def into_buckets(
    docs: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], dict[str, Any]], set[str]]:
    """What of `rebuilt_docs`' documents the periods' buckets hold: per (granularity, period),
    the value of its bucket's `breakdowns` field (the period's values document's lists and its
    first counts document's maps), and the ids of the documents that makes unneeded. Sets of
    their own and further counts parts stay where they are."""
    held: dict[tuple[str, str], dict[str, Any]] = {}
    folded: set[str] = set()
    for document, data in docs.items():
        granularity, period = data["granularity"], data["period"]
        if document == values_doc_id(granularity, period):
            held.setdefault((granularity, period), {})[ADMITTED] = data[ADMITTED]
        elif document == counts_doc_id(granularity, period):
            maps = {name: data[name] for name in COUNT_MAPS if data.get(name)}
            held.setdefault((granularity, period), {}).update(maps)
        else:
            continue
        folded.add(document)
    return held, folded


def _values_doc(granularity: str, period: str, dimension: str | None = None) -> dict[str, Any]:
    if dimension is not None:
        return {
            "kind": VALUES_KIND,
            "granularity": granularity,
            "period": period,
            "dimension": dimension,
        }
    return {"kind": VALUES_KIND, "granularity": granularity, "period": period, ADMITTED: {}}


def _counts_doc(granularity: str, period: str) -> dict[str, Any]:
    return {
        "kind": COUNTS_KIND,
        "granularity": granularity,
        "period": period,
        **{name: {} for name in COUNT_MAPS},
    }


def doc_size_bytes(name: str, data: Mapping[str, Any]) -> int:
    """A document's storage size by Firestore's rules (cloud.google.com/firestore/docs/
    storage-size): the document name's size (each `/`-separated segment's UTF-8 bytes + 1, + 16)
    plus, per field, the name's UTF-8 bytes + 1 and the value's size (string: UTF-8 bytes + 1;
    integer, double, timestamp: 8; boolean, null: 1; array: the sum of its values; map: as a
    document's fields), plus 32 bytes."""
    return name_size(name) + _fields_size(data) + 32


def name_size(name: str) -> int:
    """A document name's size by Firestore's storage-size rules: each collection and document
    id's UTF-8 bytes + 1, + 16. `name` is the document's path (`collection/id[/collection/id…]`)
    or its full resource name; an empty name (a top-level collection's parent) is 16."""
    segments = [s for s in name.split("/documents/", 1)[-1].split("/") if s]
    return sum(len(s.encode()) + 1 for s in segments) + 16


def _fields_size(data: Mapping[str, Any]) -> int:
    return sum(len(str(k).encode()) + 1 + value_size(v) for k, v in data.items())


def value_size(value: Any) -> int:
    """A field value's size by Firestore's storage-size rules (`doc_size_bytes`'s list).
    Raises TypeError for a type Firestore does not store."""
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
        return sum(value_size(v) for v in value)
    raise TypeError(f"no Firestore size for {type(value).__name__}")


def gather(docs: Iterable[Mapping[str, Any]]) -> Gathered:
    """`Gathered` of `docs`."""
    gathered = Gathered()
    for data in docs:
        gathered.add(data)
    return gathered
