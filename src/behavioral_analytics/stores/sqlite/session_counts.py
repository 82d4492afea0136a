"""Sessions per breakdown value on the SQLite store (docs/breakdowns.md, "Sessions per value,
entry and exit pages"; the rule is `session_breakdowns`').

Each session's values are kept in its own `sessions` row, column `vals`: the raw values it
counts under, as a JSON object without the `(none)`s and repeated pages (about 100 bytes on the
live benchmark); the counts are in `breakdown_sessions`, one row per (granularity, period,
dimension) holding the sessions of every counted value as a JSON object, so a commit writes one
row per set it changes, not one per value (on the live benchmark 0.23 row writes per event as
a row per value, 0.07 as a row per set).
The session row is written whenever the session changes, so its values cost no row write of
their own (a table of them beside `sessions` cost about 0.15 row writes and 30 bytes per event,
most of it the person, key and start repeated). When a commit
replaces sessions (`sessions.Sessions`), the stored values of the sessions it removes come with
the rows it reads, and those of the sessions it adds are read from their first and last raw
events, except where a session kept its start (or end) and no new or moved event can sit there:
then the stored first (or last) values stand. Of the events at those instants, those the commit
is adding (on live traffic nearly all: a session's newest event is its last) are found among
the commit's own events, with the values its fold read (`fold_breakdowns`' `entries`); only the
others are read and decoded, and the store is asked only where one can sit: every stored event
lies within a stored session of its person and client id, so within a session the commit
replaces (or anywhere, for a person a link in the commit gave or took events). A session that
only gained a later event asks nothing of the store. The difference goes to the counts through
the admitted sets.
`forget` takes a person's stored values out.

The first event's key orders sessions that start at the same instant (admission follows the
order of start, then that key) and is not stored: when a kept session shares its start with
another session the commit adds, its first event is read again for the key (where the raw
event is gone, its stored values stand, ordered first). A session stored before session counts
existed has no values (NULL): it never counted, so replacing it takes nothing out (`verify
--repair` counts every session). A file written with the earlier `session_values` table has
its values moved into the rows by `schema.migrate`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.session_breakdowns import (
    SessionCounted,
    SessionValues,
    count_sessions_under,
    entry_values,
    exit_value,
    first_event,
    last_event,
    pack_values,
    recount_session_breakdowns,
    session_deltas,
    session_dimensions,
    unpack_values,
)
from behavioral_analytics.sessions import Session
from behavioral_analytics.stores.sqlite.dirty import Dirty
from behavioral_analytics.stores.sqlite.sql import added_counts, decode_counts

__all__ = [
    "SESSION_COUNTS_SCHEMA",
    "Replaced",
    "Stored",
    "apply_session_counts",
    "forget_session_counts",
    "read_admitted",
    "read_session_counts",
    "rebuild_session_counts",
    "snapshot_session_counts",
    "snapshot_session_values",
    "store_admitted",
]

SESSION_COUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS breakdown_sessions (
  granularity TEXT NOT NULL,
  period TEXT NOT NULL,
  dimension TEXT NOT NULL,
  sessions TEXT NOT NULL,  -- JSON: counted value (an admitted one or '(other)') → sessions
  PRIMARY KEY (granularity, period, dimension)
) WITHOUT ROWID;
"""

_READ_ADMITTED = """
SELECT a.granularity, a.period, a.dimension, a.value FROM breakdown_admitted AS a
JOIN (SELECT json_extract(value, '$[0]') AS g, json_extract(value, '$[1]') AS p,
             json_extract(value, '$[2]') AS d FROM json_each(?)) AS wanted
  ON a.granularity = wanted.g AND a.period = wanted.p AND a.dimension = wanted.d
ORDER BY a.rank
"""
# A set's changes added to its stored counts, values whose count comes to zero left out.
_UPSERT_SESSIONS = (
    "INSERT INTO breakdown_sessions VALUES (?, ?, ?, ?) "
    "ON CONFLICT (granularity, period, dimension) DO UPDATE SET "
    f"sessions = {added_counts('breakdown_sessions', 'sessions')}"
)
_DROP_EMPTY = (
    "DELETE FROM breakdown_sessions WHERE granularity = ? AND period = ? AND dimension = ? "
    "AND sessions = '{}'"
)
# Events at a session's start or end, read in a window around the instant and matched exactly;
# only rows stored before the commit (rowid up to the second parameter): the commit's own are
# held in memory, and the rowid is in the index, so they are passed over without a table read.
_READ_AT = """
WITH wanted(person, low, high) AS (SELECT json_extract(value, '$[0]'),
  json_extract(value, '$[1]') - 1e-3, json_extract(value, '$[1]') + 1e-3 FROM json_each(?1))
SELECT DISTINCT e.person, e.key, e.event_type, e.timestamp, e.session_id, e.properties
FROM wanted w JOIN events e ON e.person = w.person AND e.timestamp BETWEEN w.low AND w.high
WHERE e.rowid <= ?2 AND e.bot = 0
"""

SetKey = tuple[str, str, str]
# (person, sessions removed by key, sessions added): one person's replacement in a commit.
Replaced = tuple[str, Mapping[str, Session], Sequence[Session]]
# (person, session key) → the session row's stored `vals` (None: never counted).
Stored = Mapping[tuple[str, str], str | None]
# Whether a new or moved event of (person, client id or None) may sit at an instant.
Fresh = Callable[[str, str | None, float], bool]
# Key → (person, event): a commit's new human events, with their person after its links.
Held = Mapping[str, tuple[str, Event]]
# (person, client id or None, timestamp) → the events there.
_At = dict[tuple[str, str | None, float], list[Event]]

_encode_bytes = msgspec.json.Encoder().encode
_decode_values = msgspec.json.Decoder(dict[str, str]).decode


def _pack(values: Mapping[str, str]) -> str:
    """A session's values as stored in its row (`pack_values`)."""
    return _encode(pack_values(values))


def _unpack(text: str, rules: BreakdownRules) -> dict[str, str]:
    """The values `_pack` stored, for every dimension of `rules` (a dimension added since is
    counted afresh by `rebuild_session_counts`, which rewrites every session's values)."""
    return unpack_values(_decode_values(text), rules.dimensions)


_decode = msgspec.json.Decoder().decode


def _encode(value: object) -> str:
    return _encode_bytes(value).decode()


def read_admitted(
    db: sqlite3.Connection, keys: Iterable[tuple[str, str, str]]
) -> dict[SetKey, list[str]]:
    """The stored admitted values (in admission order) of each (granularity, period,
    dimension) among `keys` that has any."""
    admitted: dict[SetKey, list[str]] = defaultdict(list)
    wanted = _encode([list(key) for key in keys])
    for granularity, period, dimension, value in db.execute(_READ_ADMITTED, (wanted,)):
        admitted[granularity, period, dimension].append(value)
    return dict(admitted)


def store_admitted(
    db: sqlite3.Connection,
    new: Mapping[SetKey, Sequence[str]],
    admitted: Mapping[SetKey, Sequence[str]],
) -> None:
    """Add the `new` admitted values after each set's stored `admitted` ones."""
    if new:
        db.executemany(
            "INSERT INTO breakdown_admitted VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (g, p, d, value, len(admitted.get((g, p, d), ())) + rank)
                for (g, p, d), values in new.items()
                for rank, value in enumerate(values)
            ],
        )


def _store_counted(
    db: sqlite3.Connection, counted: SessionCounted, admitted: Mapping[SetKey, Sequence[str]]
) -> None:
    store_admitted(db, counted.admitted, admitted)
    changes: dict[SetKey, dict[str, int]] = defaultdict(dict)
    for (g, p, d, value), n in counted.sessions.items():
        if n:
            changes[g, p, d][value] = n
    db.executemany(_UPSERT_SESSIONS, [(*key, _encode(n)) for key, n in changes.items()])
    db.executemany(
        _DROP_EMPTY, [key for key, n in changes.items() if any(v < 0 for v in n.values())]
    )


def _apply_delta(
    db: sqlite3.Connection,
    removed: Iterable[SessionValues],
    added: Iterable[SessionValues],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    delta = session_deltas(removed, added, periods, session_dimensions(rules))
    if not delta:
        return
    admitted = read_admitted(db, {(g, p, d) for g, p, d, _ in delta})
    _store_counted(db, count_sessions_under(delta, admitted, rules.max_values), admitted)


def _event(person: str, key: str, etype: str, ts: float, sid: str | None, props: str) -> Event:
    """A stored event as far as its dimensions and its session need it."""
    return Event(key, "", None, None, etype, ts, sid, _decode(props), 0.0, person)


def apply_session_counts(
    db: sqlite3.Connection,
    replaced: Sequence[Replaced],
    stored: Stored,
    fresh: Fresh,
    periods: Periods,
    rules: BreakdownRules,
    dirty: Dirty,
) -> dict[tuple[str, str], str]:
    """Move the session counts of a commit's session replacements (one `Replaced` per person
    whose sessions changed, `stored` the `vals` of the sessions they remove), inside the
    commit's transaction on `db`; `fresh` says where a new or moved event may sit (there the
    stored first or last event may have changed). The commit's new human events
    (`dirty.held`) are found at their instants in memory and not read back (on live traffic
    99.5 % of the events at the instants wanted), with their values in
    `rules.entry_dimensions` by key in `dirty.entries` (from `fold_breakdowns`; one missing is
    read from the event); events stored before the commit (rowid up to
    `dirty.stored_through`) are read where one can sit: within a removed session of the same
    person and client id (each stored event lies in its session), or anywhere for a person a
    link gave or took events (`dirty.moved`). Returns the `vals` to store with each added
    session by (person, key); one left out (no values: breakdowns off, or its events are not
    where it says) is stored with NULL and counts nowhere."""
    if not replaced or not session_dimensions(rules):
        return {}
    unpacked: dict[tuple[str, str], dict[str, str]] = {}

    def stored_values(person: str, key: str) -> dict[str, str] | None:
        """The stored values of a session removed (None: never counted), decoded once."""
        found = unpacked.get((person, key))
        if found is None and (text := stored.get((person, key))) is not None:
            found = unpacked[person, key] = _unpack(text, rules)
        return found

    olds: dict[tuple[str, str | None], list[Session]] = defaultdict(list)
    for person, removed, _ in replaced:
        for before in removed.values():
            olds[person, before.client_id].append(before)
    instants: set[tuple[str, float]] = set()
    probes: set[tuple[str, float]] = set()  # those where an event stored before can sit

    def want(person: str, client_id: str | None, instant: float) -> None:
        instants.add((person, instant))
        if person in dirty.moved or any(
            s.start <= instant <= s.end for s in olds.get((person, client_id), ())
        ):
            probes.add((person, instant))

    plans = []
    starts = Counter(session.start for _, _, added in replaced for session in added)
    for person, removed, added in replaced:
        for session in added:
            old = removed.get(session.key)
            kept = None if old is None else stored_values(person, session.key)
            same_first = same_last = False
            if old is not None and kept is not None:
                same_first = old.start == session.start and not fresh(
                    person, session.client_id, session.start
                )
                same_last = old.end == session.end and not fresh(
                    person, session.client_id, session.end
                )
            if not same_first or starts[session.start] > 1:  # the first key orders a tie
                want(person, session.client_id, session.start)
            if not same_last:
                want(person, session.client_id, session.end)
            plans.append((person, session, kept, same_first, same_last))
    held, entries = dirty.held, dirty.entries
    at = _events_at(db, instants, probes, held, dirty.stored_through)
    names = rules.entry_dimensions

    def entry_of(first: Event) -> dict[str, str]:
        known = entries.get(first.key) if first.key in held else None
        return entry_values(first, rules) if known is None else dict(zip(names, known, strict=True))

    def exit_of(last: Event) -> str:
        known = entries.get(last.key) if last.key in held else None
        return exit_value(last) if known is None else known[-1]  # the page, as `exit_page`

    new_values: list[SessionValues] = []
    rows: dict[tuple[str, str], str] = {}
    for person, session, kept, same_first, same_last in plans:
        firsts = at.get((person, session.client_id, session.start))
        if kept is not None and same_first:
            values = dict(kept)
            first_key = first_event(firsts).key if firsts else ""
        else:
            if not firsts:
                continue  # its events are not where the session says: nothing to count
            first = first_event(firsts)
            first_key, values = first.key, entry_of(first)
        if session.events == 1:  # its first event is its last (a kept one may have lost others)
            values["exit_page"] = values["entry_page"]
        elif kept is not None and same_last:
            values["exit_page"] = kept["exit_page"]
        else:
            lasts = at.get((person, session.client_id, session.end))
            if not lasts:
                continue
            values["exit_page"] = exit_of(last_event(lasts))
        new_values.append(SessionValues(session.start, values, (session.start, first_key)))
        rows[person, session.key] = _pack(values)
    old_values = [
        SessionValues(session.start, gone)
        for person, removed, _ in replaced
        for key, session in removed.items()
        if (gone := stored_values(person, key)) is not None
    ]
    _apply_delta(db, old_values, new_values, periods, rules)
    return rows


def _events_at(
    db: sqlite3.Connection,
    instants: set[tuple[str, float]],
    probes: set[tuple[str, float]],
    held: Held,
    stored_through: int,
) -> _At:
    """The human events of each (person, instant) among `instants`, by (person, client id,
    timestamp): those `held` (the commit's) from memory, and at `probes` those stored before
    the commit (rowid up to `stored_through`), read from `db`."""
    if not instants:
        return {}
    at: _At = defaultdict(list)
    for person, event in held.values():
        if (person, event.timestamp) in instants:
            at[person, event.session_id, event.timestamp].append(event)
    if not probes:
        return at
    for person, key, etype, ts, sid, props in db.execute(
        _READ_AT, (_encode(sorted(probes)), stored_through)
    ):
        at[person, sid, ts].append(_event(person, key, etype, ts, sid, props))
    return at


def forget_session_counts(
    db: sqlite3.Connection, person: str, periods: Periods, rules: BreakdownRules
) -> None:
    """Take `person`'s sessions out of the session counts, inside `forget`'s transaction
    (which deletes their rows after)."""
    gone = [
        SessionValues(start, _unpack(vals, rules))
        for start, vals in db.execute(
            "SELECT start, vals FROM sessions WHERE person = ? AND vals IS NOT NULL", (person,)
        )
    ]
    _apply_delta(db, gone, (), periods, rules)


def read_session_counts(
    db: sqlite3.Connection, dimension: str, granularity: str, start: str, end: str
) -> dict[str, dict[str, int]]:
    """period → sessions per counted value (`(other)` included) of `dimension`, start <= period
    <= end."""
    counts: dict[str, dict[str, int]] = {}
    for period, packed in db.execute(
        "SELECT period, sessions FROM breakdown_sessions "
        "WHERE granularity = ? AND dimension = ? AND period >= ? AND period <= ?",
        (granularity, dimension, start, end),
    ):
        if values := {value: n for value, n in decode_counts(packed).items() if n}:
            counts[period] = values
    return counts


def snapshot_session_counts(
    db: sqlite3.Connection,
) -> dict[tuple[str, str, str, str], int] | None:
    """Every non-zero session count by (granularity, period, dimension, value); None for a
    store with no sessions at all (what a snapshot of an empty store says)."""
    counts = {
        (g, p, d, value): n
        for g, p, d, packed in db.execute("SELECT * FROM breakdown_sessions")
        for value, n in decode_counts(packed).items()
        if n
    }
    if not counts and db.execute("SELECT 1 FROM sessions LIMIT 1").fetchone() is None:
        return None
    return counts


def snapshot_session_values(
    db: sqlite3.Connection, dimensions: Sequence[str]
) -> dict[tuple[str, str], tuple[float, dict[str, str]]]:
    """Each counted session's values by (person, session key), with its start, for the
    configured `dimensions` (`unpack_values`; `AggregateSnapshot.session_values`)."""
    return {
        (person, key): (start, unpack_values(_decode_values(vals), dimensions))
        for person, key, start, vals in db.execute(
            "SELECT person, key, start, vals FROM sessions WHERE vals IS NOT NULL"
        )
    }


def rebuild_session_counts(
    db: sqlite3.Connection,
    events: Iterable[Event],
    persons: Mapping[str, str],
    periods: Periods,
    rules: BreakdownRules,
) -> None:
    """Replace every session count and session's values by their recount from `events` (the
    human ones are those `persons` maps) over the stored `sessions` (already recounted), under
    the stored admitted sets (after the events' recount), inside a write transaction."""
    sessions: dict[str, list[Session]] = defaultdict(list)
    for person, key, start, end, count, client_id in db.execute(
        "SELECT person, key, start, end, events, client_id FROM sessions"
    ):
        first = client_id is None or key == f"c:{client_id}"
        sessions[person].append(Session(start, end, count, client_id, first))
    admitted = dict(_all_admitted(db))
    counted, values = recount_session_breakdowns(
        sessions, events, persons, periods, rules, admitted
    )
    db.execute("DELETE FROM breakdown_sessions")
    db.execute("UPDATE sessions SET vals = NULL WHERE vals IS NOT NULL")
    db.executemany(
        "UPDATE sessions SET vals = ? WHERE person = ? AND key = ?",
        [(_pack(v.values), person, key) for (person, key), v in values.items()],
    )
    _store_counted(db, counted, admitted)


def _all_admitted(db: sqlite3.Connection) -> dict[SetKey, list[str]]:
    admitted: dict[SetKey, list[str]] = defaultdict(list)
    for g, p, d, value in db.execute(
        "SELECT granularity, period, dimension, value FROM breakdown_admitted ORDER BY rank"
    ):
        admitted[g, p, d].append(value)
    return admitted
