"""Breakdowns on the SQLite store (docs/breakdowns.md): the admitted values of each (granularity,
period, dimension), events per counted value, and per-value unique-user markers per day.

A commit adds the fold of its new human events (`apply_breakdowns`): it reads the admitted sets
and the markers the batch touches in one query each, admits new values, adds the markers not
stored yet and adds the events and new markers to the counts, one statement per table. The
counts of a (granularity, period, dimension) are one row, its values' events and unique users
as JSON objects added to in SQL (`sql.added_counts`): a commit writes a row per set it
changes, not per value (on the live benchmark, where a commit touches hundreds of values of
the current hour and day and of the periods late events fall in: 0.16 row writes per event as
a row per value, 0.06 as a row per set). A
person's markers of a day are one row (the (dimension, value) pairs, packed): a batch reads and
rewrites a row per person and day it touches instead of inserting a row per person, day,
dimension and value (about 16 times fewer rows on the live benchmark's traffic, and a third
less commit time spent on them). An identity move takes the moved events' markers from the old
person to the new one (`move_breakdown_markers`), and `forget` takes a person's events and
markers back out (`forget_breakdowns`), exactly as the unique-user markers of the buckets are
moved and removed. The admitted sets never shrink.

The commit hands over the batch's markers grouped per person and day, as its fold before the
write lock groups them (`BreakdownDelta.markers`); inside it they are mapped through admission a
row at a time (`Counted.markers_under`: only the values a full set refused change) and
compared with the stored row as decoded, per dimension.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.breakdowns import (
    OTHER,
    BreakdownDelta,
    BreakdownRules,
    Counted,
    PersonDayMarkers,
    by_person_day,
    count_under,
    fold_breakdowns,
    recount_breakdowns,
)
from behavioral_analytics.dimensions import SESSION_DIMENSIONS
from behavioral_analytics.events import Event
from behavioral_analytics.shared_values import SharedValues
from behavioral_analytics.store import AggregateSnapshot, BreakdownPoint
from behavioral_analytics.stores.sqlite.session_counts import (
    SESSION_COUNTS_SCHEMA,
    forget_session_counts,
    read_admitted,
    read_session_counts,
    rebuild_session_counts,
    snapshot_session_counts,
    store_admitted,
)
from behavioral_analytics.stores.sqlite.sql import added_counts, decode_counts

__all__ = [
    "BREAKDOWN_SCHEMA",
    "BUCKETS_SCHEMA",
    "all_admitted",
    "apply_breakdowns",
    "backfill_breakdowns",
    "delete_breakdowns",
    "forget_breakdowns",
    "move_breakdown_markers",
    "read_admitted",
    "read_breakdown",
    "rebuild_breakdowns",
    "snapshot_breakdowns",
]

BUCKETS_SCHEMA = """
-- A set's counts per counted value (an admitted value or '(other)'), as JSON objects.
CREATE TABLE IF NOT EXISTS breakdown_buckets (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  dimension TEXT NOT NULL,
  events TEXT NOT NULL,  -- value → events
  unique_users TEXT NOT NULL,  -- value → unique users (days only; {} for hours)
  PRIMARY KEY (granularity, period, dimension)
) WITHOUT ROWID;
"""
BREAKDOWN_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS breakdown_admitted (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  dimension TEXT NOT NULL,
  value TEXT NOT NULL,
  rank INTEGER NOT NULL,  -- 0 for the first value admitted, …
  PRIMARY KEY (granularity, period, dimension, value)
) WITHOUT ROWID;
-- A person's markers of a day, packed: the counted values they were seen with, as a JSON
-- object of dimension → sorted values (older rows: a JSON list of [dimension, value]).
CREATE TABLE IF NOT EXISTS breakdown_markers (
  person TEXT NOT NULL,
  day TEXT NOT NULL,
  pairs TEXT NOT NULL,
  PRIMARY KEY (person, day)
) WITHOUT ROWID;
"""
    + BUCKETS_SCHEMA
    + SESSION_COUNTS_SCHEMA
)

_UPSERT_BUCKET = (
    "INSERT INTO breakdown_buckets VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (granularity, period, dimension) DO UPDATE SET "
    f"events = {added_counts('breakdown_buckets', 'events')}, "
    f"unique_users = {added_counts('breakdown_buckets', 'unique_users')}"
)
_DROP_EMPTY = (
    "DELETE FROM breakdown_buckets WHERE granularity = ? AND period = ? AND dimension = ? "
    "AND events = '{}' AND unique_users = '{}'"
)
_READ_MARKERS = """
SELECT m.person, m.day, m.pairs FROM breakdown_markers AS m
JOIN (SELECT json_extract(value, '$[0]') AS p, json_extract(value, '$[1]') AS d
      FROM json_each(?)) AS wanted ON m.person = wanted.p AND m.day = wanted.d
"""
_WRITE_MARKERS = (
    "INSERT INTO breakdown_markers VALUES (?, ?, ?) "
    "ON CONFLICT (person, day) DO UPDATE SET pairs = excluded.pairs"
)
# A day on either side, with an hour to spare for daylight-saving days.
_DAY_SLACK_S = 25 * 3600.0

SetKey = tuple[str, str, str]
_encode_bytes = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _encode(value: object) -> str:
    """JSON text (a SQLite TEXT value, not a BLOB)."""
    return _encode_bytes(value).decode()


_decode_packed = msgspec.json.Decoder(dict[str, list[str]] | list[tuple[str, str]]).decode
_NO_MARKERS = ("{}", "[]")  # a row left with no marker (either format) is deleted


def _decode_grouped(packed: str) -> dict[str, list[str]]:
    """A row's values per dimension, from either packing: `{dimension: [value, …]}`, or the
    `[[dimension, value], …]` of rows written before it (read as they are, rewritten in the
    new packing when a commit changes them)."""
    decoded: dict[str, list[str]] | list[tuple[str, str]] = _decode_packed(packed)
    if not isinstance(decoded, list):
        return decoded
    grouped: dict[str, list[str]] = {}
    for dimension, value in decoded:
        grouped.setdefault(dimension, []).append(value)
    return grouped


def _decode_pairs(packed: str) -> list[tuple[str, str]]:
    """A row's (dimension, value) pairs, from either packing (`_decode_grouped`)."""
    return list(_pairs(_decode_grouped(packed)))


def _encode_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """A row's pairs packed as `{dimension: [value, …]}`, dimensions and values sorted: each
    dimension's name once, not once per value (a third fewer bytes on the live benchmark)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for dimension, value in sorted(set(pairs)):
        grouped[dimension].append(value)
    return _encode(grouped)


def _read_markers(db: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> PersonDayMarkers:
    """The stored markers of each (person, day) among `keys` that has any."""
    return {key: set(_pairs(grouped)) for key, grouped in _read_grouped(db, keys).items()}


def _read_grouped(
    db: sqlite3.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, list[str]]]:
    """The stored markers of each (person, day) among `keys` that has any, as its values per
    dimension (`_decode_grouped`)."""
    wanted = _encode([list(key) for key in keys])
    return {
        (person, day): _decode_grouped(pairs)
        for person, day, pairs in db.execute(_READ_MARKERS, (wanted,))
    }


def _pairs(grouped: Mapping[str, Iterable[str]]) -> Iterable[tuple[str, str]]:
    """A row's values per dimension as (dimension, value) pairs."""
    return ((dimension, value) for dimension, values in grouped.items() for value in values)


def _add_markers(
    db: sqlite3.Connection, grouped: PersonDayMarkers
) -> Counter[tuple[str, str, str]]:
    """Store the (dimension, counted value) markers of `grouped` not stored yet (a row of
    `breakdown_markers` per (person, day)), one row write per (person, day) that gains any;
    how many were new per (day, dimension, value). A stored row is compared as decoded, per
    dimension, and rewritten only when it gains a marker."""
    stored = _read_grouped(db, grouped)
    new: Counter[tuple[str, str, str]] = Counter()
    rows = []
    nothing: dict[str, list[str]] = {}
    for (who, day), pairs in grouped.items():
        have = stored.get((who, day), nothing)
        fresh = [
            (dimension, value) for dimension, value in pairs if value not in have.get(dimension, ())
        ]
        if fresh:
            for dimension, value in fresh:
                new[day, dimension, value] += 1
            rows.append((who, day, _encode_pairs([*_pairs(have), *fresh])))
    db.executemany(_WRITE_MARKERS, rows)
    return new


def _add_counts(
    db: sqlite3.Connection,
    events: Mapping[tuple[Granularity, str, str, str], int],
    users: Mapping[tuple[str, str, str], int],
) -> None:
    """Add `events` per (granularity, period, dimension, value) and unique `users` per (day,
    dimension, value) to the counts, one row write per set changed; a set whose counts all
    come to zero is deleted."""
    changes: dict[SetKey, tuple[dict[str, int], dict[str, int]]] = {}
    for (g, p, d, value), n in events.items():
        if n:
            changes.setdefault((g, p, d), ({}, {}))[0][value] = n
    for (day, d, value), n in users.items():
        if n:
            changes.setdefault(("day", day, d), ({}, {}))[1][value] = n
    db.executemany(
        _UPSERT_BUCKET,
        [(*key, _encode(added), _encode(new)) for key, (added, new) in changes.items()],
    )
    db.executemany(
        _DROP_EMPTY,
        [
            key
            for key, (added, new) in changes.items()
            if any(n < 0 for n in added.values()) or any(n < 0 for n in new.values())
        ],
    )


def _set_keys(counted_keys: Iterable[tuple[Granularity, str, str, str]]) -> set[SetKey]:
    return {(g, p, d) for g, p, d, _ in counted_keys}


def _store_counted(
    db: sqlite3.Connection,
    counted: Counted,
    admitted: Mapping[SetKey, list[str]],
    markers: PersonDayMarkers,
) -> None:
    """Admit `counted.admitted`, create `markers` (its counted markers by person and day) and
    add its events and new markers."""
    store_admitted(db, counted.admitted, admitted)
    _add_counts(db, counted.events, _add_markers(db, markers))


def apply_breakdowns(db: sqlite3.Connection, delta: BreakdownDelta, rules: BreakdownRules) -> None:
    """Add `delta`, the `fold_breakdowns` of a batch's new human events (each `who` its person)
    in batch order, inside the commit's transaction on `db`."""
    if not delta.events:
        return
    admitted = read_admitted(db, _set_keys(delta.events))
    counted = count_under(delta, admitted, rules.max_values, users=False)
    _store_counted(db, counted, admitted, counted.markers_under(delta.markers))


def _counted_under(
    events: Sequence[Event], persons: Mapping[str, str] | None, db: sqlite3.Connection,
    periods: Periods, rules: BreakdownRules,
) -> Counted:  # fmt: skip
    """Stored events' breakdowns under the stored admitted sets (admitting nothing)."""
    delta = fold_breakdowns(events, periods, rules, persons)
    return count_under(delta, read_admitted(db, _set_keys(delta.events)), 0)


def _event(key: str, event_type: str, timestamp: float, properties: str, who: str) -> Event:
    """A stored event as far as its dimensions need it."""
    return Event(key, "", None, None, event_type, timestamp, None, _decode(properties), 0.0, who)


def move_breakdown_markers(
    db: sqlite3.Connection,
    moves: Sequence[tuple[str, str, str, str, float, str]],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    """Move the per-value markers of events whose person changed, given as (key, old person,
    new person, event type, timestamp, properties JSON): the new person gains a marker for each
    (day, dimension, value); the old one loses those no event of theirs still supports."""
    if not moves or not rules.dimensions:
        return
    gained = _counted_under(
        [_event(key, etype, ts, props, new) for key, _, new, etype, ts, props in moves],
        None, db, periods, rules,
    )  # fmt: skip
    changes = _add_markers(db, by_person_day(gained.users))
    lost = _counted_under(
        [_event(key, etype, ts, props, old) for key, old, _, etype, ts, props in moves],
        None, db, periods, rules,
    )  # fmt: skip
    spans: dict[str, list[float]] = {}
    for _, old, _, _, timestamp, _ in moves:
        span = spans.setdefault(old, [timestamp, timestamp])
        span[0], span[1] = min(span[0], timestamp), max(span[1], timestamp)
    still: set[tuple[str, str, str, str]] = set()
    for person, (low, high) in spans.items():
        rows = db.execute(
            "SELECT key, event_type, timestamp, properties FROM events "
            "WHERE person = ? AND bot = 0 AND timestamp BETWEEN ? AND ?",
            (person, low - _DAY_SLACK_S, high + _DAY_SLACK_S),
        ).fetchall()
        still |= _counted_under(
            [_event(key, etype, ts, props, person) for key, etype, ts, props in rows],
            None, db, periods, rules,
        ).users  # fmt: skip
    doomed = by_person_day(lost.users - still)
    stored = _read_markers(db, doomed)
    rewritten, emptied = [], []
    for (who, day), pairs in doomed.items():
        have = stored.get((who, day), set())
        for dimension, value in pairs & have:
            changes[day, dimension, value] -= 1
        if left := have - pairs:
            rewritten.append((who, day, _encode_pairs(left)))
        else:
            emptied.append((who, day))
    db.executemany(_WRITE_MARKERS, rewritten)
    db.executemany("DELETE FROM breakdown_markers WHERE person = ? AND day = ?", emptied)
    _add_counts(db, {}, changes)


def forget_breakdowns(
    db: sqlite3.Connection,
    person: str,
    humans: Sequence[Event],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    """Take `person`'s human events (with their properties), per-value markers and sessions
    out of the breakdowns, inside `forget`'s transaction on `db`."""
    forget_session_counts(db, person, periods, rules)
    counted = _counted_under(humans, None, db, periods, rules)
    gone: Counter[tuple[str, str, str]] = Counter()
    for day, pairs in db.execute(
        "DELETE FROM breakdown_markers WHERE person = ? RETURNING day, pairs", (person,)
    ).fetchall():
        for dimension, value in _decode_pairs(pairs):
            gone[day, dimension, value] -= 1
    _add_counts(db, {key: -n for key, n in counted.events.items()}, gone)


def read_breakdown(
    db: sqlite3.Connection, dimension: str, granularity: Granularity, start: str, end: str
) -> list[BreakdownPoint]:
    """The points of `dimension` with start <= period <= end, oldest first (see the port)."""
    sessions = read_session_counts(db, dimension, granularity, start, end)
    per_event = dimension not in SESSION_DIMENSIONS  # entry and exit pages count sessions only
    events: dict[str, dict[str, int]] = defaultdict(dict)
    users: dict[str, dict[str, int]] = defaultdict(dict)
    other: Counter[str] = Counter()
    for period, packed_events, packed_users in db.execute(
        "SELECT period, events, unique_users FROM breakdown_buckets "
        "WHERE granularity = ? AND dimension = ? AND period >= ? AND period <= ?",
        (granularity, dimension, start, end),
    ):
        for value, count in decode_counts(packed_events).items():
            if value == OTHER:
                other[period] += count
            elif count:
                events[period][value] = count
        for value, uniques in decode_counts(packed_users).items():
            if uniques:
                users[period][value] = uniques
    return [
        BreakdownPoint(
            granularity,
            period,
            dimension,
            events.get(period, {}),
            users.get(period, {}) if granularity == "day" and per_event else None,
            other[period],
            sessions.get(period, {}),
        )
        for period in sorted({*events, *other, *sessions})
        if events.get(period) or other[period] or sessions.get(period)
    ]


def snapshot_breakdowns(db: sqlite3.Connection, snap: AggregateSnapshot) -> None:
    """Add every breakdown to `snap`: events and unique users per counted value (zero rows left
    out), the admitted sets and the markers."""
    for g, p, d, packed_events, packed_users in db.execute("SELECT * FROM breakdown_buckets"):
        for value, count in decode_counts(packed_events).items():
            if count:
                snap.breakdown_events[g, p, d, value] = count
        for value, uniques in decode_counts(packed_users).items():
            if uniques and g == "day":
                snap.breakdown_users[p, d, value] = uniques
    snap.breakdown_admitted = {key: tuple(values) for key, values in all_admitted(db).items()}
    text = SharedValues().text  # each row decodes its own copies of the same values
    markers = {
        (day, text(dimension), text(value), person)
        for person, day, pairs in db.execute("SELECT person, day, pairs FROM breakdown_markers")
        for dimension, value in _decode_pairs(pairs)
    }
    # None, as an empty store's snapshot says, where nothing is broken down at all.
    snap.breakdown_markers = markers if markers or snap.breakdown_events else None
    snap.breakdown_sessions = snapshot_session_counts(db)


def all_admitted(db: sqlite3.Connection) -> dict[SetKey, list[str]]:
    """Every stored admitted set, its values in admission order."""
    admitted: dict[SetKey, list[str]] = defaultdict(list)
    for g, p, d, value in db.execute(
        "SELECT granularity, period, dimension, value FROM breakdown_admitted ORDER BY rank"
    ):
        admitted[g, p, d].append(value)
    return dict(admitted)


def rebuild_breakdowns(
    db: sqlite3.Connection,
    events: Iterable[Event],
    persons: Mapping[str, str],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    """Replace every breakdown by the recount of `events` (the human ones are those `persons`
    maps, event key → person) under the stored admitted sets, inside a write transaction; the
    sessions per value from the stored sessions (rebuilt before)."""
    events = list(events)
    admitted = all_admitted(db)
    counted = recount_breakdowns(events, persons, periods, rules, admitted)
    db.execute("DELETE FROM breakdown_buckets")
    db.execute("DELETE FROM breakdown_markers")
    _store_counted(db, counted, admitted, by_person_day(counted.users))
    rebuild_session_counts(db, events, persons, periods, rules)


def delete_breakdowns(db: sqlite3.Connection, dimensions: Iterable[str]) -> None:
    """Delete every count, marker and admitted set of `dimensions`."""
    names = list(dimensions)
    if not names:
        return
    for table in ("breakdown_buckets", "breakdown_admitted", "breakdown_sessions"):
        db.execute(
            f"DELETE FROM {table} WHERE dimension IN (SELECT value FROM json_each(?))",
            (_encode(names),),
        )
    kept = []
    for person, day, pairs in db.execute("SELECT * FROM breakdown_markers").fetchall():
        left = [pair for pair in _decode_pairs(pairs) if pair[0] not in names]
        kept.append((person, day, _encode_pairs(left)))
    db.executemany(_WRITE_MARKERS, kept)
    db.execute("DELETE FROM breakdown_markers WHERE pairs IN (?, ?)", _NO_MARKERS)


def backfill_breakdowns(
    db: sqlite3.Connection,
    dimensions: Sequence[str],
    events: Iterable[Event],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    """Count the breakdowns by `dimensions` afresh from `events` (every retained raw event), each
    human event for the person the store holds for it, admitting values in time order: for a
    dimension added to the configuration, or every one when the values admitted change. Run
    inside a write transaction."""
    if set(dimensions) >= set(rules.dimensions):  # every set is chosen again: the pages' too
        delete_breakdowns(db, [*dimensions, *SESSION_DIMENSIONS])
    else:
        delete_breakdowns(db, dimensions)
    persons = dict(db.execute("SELECT key, person FROM events WHERE bot = 0").fetchall())
    chosen = BreakdownRules(tuple(dimensions), rules.max_values)
    events = list(events)
    counted = recount_breakdowns(events, persons, periods, chosen, {})
    _store_counted(db, counted, {}, by_person_day(counted.users))
    # Sessions count in every dimension at once: recount them all (their values too).
    rebuild_session_counts(db, events, persons, periods, rules)
