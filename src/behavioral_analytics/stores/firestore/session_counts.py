"""Sessions per breakdown value on the Firestore store (docs/breakdowns.md, "Sessions per
value, entry and exit pages"; the rule is `session_breakdowns`').

Each session's values (its start, its first event's key and the raw values it counts under)
are kept in the person's profile beside their sessions (`SESSION_VALUES_FIELD`, JSON bytes,
written with the profile: no extra write), for the sessions the profile keeps. A commit that
replaces a person's sessions (`behavior`) takes the values of the sessions it removes from
there and finds those of the sessions it adds from their first and last events:

- a session that kept its start keeps its stored first event, unless a batch event at that
  instant has a smaller key; one that kept its end, with no batch event there, its stored exit
  page; a session that starts (or ends) at a batch event where none of the person's stored
  sessions of that client reaches takes it from the batch (the common case: a session grows);
- otherwise (a late event inside a stored session, two sessions joined, a cap that moved, a
  person losing events to a link) the person's stored events at that instant are read (one
  query per instant, in parallel, after the profile reads: exact under the profile's update
  time like every other read of the commit).

The difference (`session_deltas`) goes to the commit's `BreakdownBatch` (`add_session_counts`).
A session stored before session counts existed has no values: it never counted, so replacing
it takes nothing out (`verify --repair` counts every session). `forget` takes a person's stored
values out (`forget.py`); `config apply` recounts every session (`recount_sessions`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdowns import BreakdownRules, Counted
from behavioral_analytics.events import Event
from behavioral_analytics.session_breakdowns import (
    SessionValues,
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
from behavioral_analytics.stores.firestore.behavior import decode_sessions
from behavioral_analytics.stores.firestore.breakdown_layout import (
    COUNT_MAPS,
    COUNTS_KIND,
    SESSIONS,
    Gathered,
    count_key,
    counts_doc_id,
    rebuilt_docs,
)
from behavioral_analytics.stores.firestore.keys import encode_map_key
from behavioral_analytics.stores.firestore.schema import SESSIONS_FIELD

__all__ = [
    "SESSION_VALUES_FIELD",
    "PersonSessions",
    "Stored",
    "count_sessions",
    "decode_values",
    "encode_values",
    "recount_sessions",
]

SESSION_VALUES_FIELD = "session_values"  # profile: {session key: [start, first key, values]}

# A session's stored values: (start, first event's key, dimension → raw value).
Stored = tuple[float, str, dict[str, str]]
# (person, instant) → the person's stored human events at that instant.
ReadAt = Callable[[Sequence[tuple[str, float]]], Mapping[tuple[str, float], list[Event]]]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, tuple[float, str, dict[str, str]]]).decode


def encode_values(values: Mapping[str, Stored], sessions: Iterable[Session]) -> bytes:
    """`SESSION_VALUES_FIELD` of a profile: the stored values of `sessions` (those the profile
    keeps) that have any, as JSON bytes, without what `decode_values` restores (a dimension's
    `(none)`, an entry page equal to the `page` value, an exit page equal to the entry page)."""
    packed = {}
    for session in sessions:
        if session.key in values:
            start, first_key, raw = values[session.key]
            packed[session.key] = (start, first_key, pack_values(raw))
    return _encode(packed)


def decode_values(raw: bytes | None, dimensions: Sequence[str]) -> dict[str, Stored]:
    """The values `encode_values` stored, by session key, for the configured `dimensions` (a
    dimension configured since counts afresh: `config apply` rewrites every session's values);
    none for an empty field or none."""
    decoded = {}
    for key, (start, first_key, packed) in (_decode(raw) if raw else {}).items():
        decoded[key] = (start, first_key, unpack_values(packed, dimensions))
    return decoded


@dataclass(slots=True)
class PersonSessions:
    """One person's sessions before (`old`, with their `stored` values) and after a commit
    (`new`), the batch's events that now count for them (new and moved in: `batch`), and the
    stored events moving away (`moved_out`, key → (client id, timestamp): their stored
    endpoints are not trusted)."""

    person: str
    old: Mapping[str, Session]
    new: Mapping[str, Session]
    stored: Mapping[str, Stored]
    batch: Sequence[Event] = ()
    moved_out: Mapping[str, tuple[str | None, float]] = field(default_factory=dict)
    values: dict[str, Stored] = field(default_factory=dict)  # after: what the profile keeps


def _at(events: Iterable[Event], client_id: str | None, instant: float) -> list[Event]:
    return [e for e in events if e.session_id == client_id and e.timestamp == instant]


def _covered(old: Iterable[Session], client_id: str | None, instant: float) -> bool:
    return any(s.client_id == client_id and s.start <= instant <= s.end for s in old)


def _same(person: PersonSessions, key: str, session: Session) -> bool:
    """Whether `session` is stored as it was, events included: its start, end and size are
    unchanged and no event moving away sat in it (one may have left and a batch event taken
    its place at the same instant)."""
    return person.old.get(key) == session and not any(
        client_id == session.client_id and session.start <= at <= session.end
        for client_id, at in person.moved_out.values()
    )


def _first_known(person: PersonSessions, session: Session, rules: BreakdownRules) -> Stored | None:
    """The first values of `session` when the batch and the stored values settle them."""
    if person.moved_out:
        return None
    batch = _at(person.batch, session.client_id, session.start)
    old = person.old.get(session.key)
    kept = person.stored.get(session.key)
    if kept is not None and old is not None and old.start == session.start:
        if not batch or kept[1] < first_event(batch).key:
            return kept[0], kept[1], dict(kept[2])
    elif not batch or _covered(person.old.values(), session.client_id, session.start):
        return None
    first = first_event(batch)
    return first.timestamp, first.key, entry_values(first, rules)


def _exit_known(person: PersonSessions, session: Session) -> str | None:
    """The exit page of `session` (of more than one event) when the batch and the stored
    values settle it."""
    if person.moved_out:
        return None
    batch = _at(person.batch, session.client_id, session.end)
    if batch:
        if _covered(person.old.values(), session.client_id, session.end):
            return None
        return exit_value(last_event(batch))
    old = person.old.get(session.key)
    kept = person.stored.get(session.key)
    if kept is not None and old is not None and old.end == session.end:
        return kept[2].get("exit_page")
    return None


def count_sessions(
    people: Sequence[PersonSessions], read_at: ReadAt, rules: BreakdownRules, periods: Periods
) -> Counter[tuple[str, str, str, str]]:
    """The session deltas of the commit's `people` (each `values` filled with what their
    profile keeps after it): (granularity, period, dimension, raw value) → sessions, for
    `breakdowns.add_session_counts`. Reads (`read_at`) only the instants the batch and the
    stored values do not settle; raises what it raises."""
    dimensions = session_dimensions(rules)
    if not dimensions:
        return Counter()
    plans: list[tuple[PersonSessions, Session, Stored | None, str | None]] = []
    wanted: set[tuple[str, float]] = set()
    for person in people:
        for key, session in person.new.items():
            if _same(person, key, session):  # unchanged (without values: never counted)
                if key in person.stored:
                    person.values[key] = person.stored[key]
                continue
            first = _first_known(person, session, rules)
            exit_page = None if session.events == 1 else _exit_known(person, session)
            if first is None:
                wanted.add((person.person, session.start))
            if session.events > 1 and exit_page is None:
                wanted.add((person.person, session.end))
            plans.append((person, session, first, exit_page))
    found = read_at(sorted(wanted)) if wanted else {}
    removed: list[SessionValues] = []
    added: list[SessionValues] = []
    for person, session, first, exit_page in plans:
        values = _resolve(person, session, first, exit_page, found, rules)
        if values is not None:
            person.values[session.key] = values
            start, first_key, raw = values
            added.append(SessionValues(start, raw, (start, first_key)))
    for person in people:
        for key in person.old:
            after = person.new.get(key)
            if key in person.stored and (after is None or not _same(person, key, after)):
                start, _, raw = person.stored[key]
                removed.append(SessionValues(start, raw))
    return session_deltas(removed, added, periods, dimensions)


def _resolve(
    person: PersonSessions,
    session: Session,
    first: Stored | None,
    exit_page: str | None,
    found: Mapping[tuple[str, float], list[Event]],
    rules: BreakdownRules,
) -> Stored | None:
    """The values of `session` (None: its events are not where it says: nothing counted)."""

    def candidates(instant: float) -> list[Event]:
        batch = _at(person.batch, session.client_id, instant)
        new = {e.key for e in batch}
        stored = _at(found.get((person.person, instant), ()), session.client_id, instant)
        return [e for e in stored if e.key not in person.moved_out and e.key not in new] + batch

    if first is None:
        firsts = candidates(session.start)
        if not firsts:
            return None
        event = first_event(firsts)
        first = event.timestamp, event.key, entry_values(event, rules)
    start, first_key, values = first[0], first[1], dict(first[2])
    if session.events == 1:
        values["exit_page"] = values["entry_page"]
    elif exit_page is not None:
        values["exit_page"] = exit_page
    else:
        lasts = candidates(session.end)
        if not lasts:
            return None
        values["exit_page"] = exit_value(last_event(lasts))
    return start, first_key, values


def recount_sessions(
    profiles: Iterable[Mapping[str, Any]],
    events: Iterable[Event],
    persons: Mapping[str, str],
    periods: Periods,
    rules: BreakdownRules,
    recount: tuple[Gathered, Counted, set[str]],
) -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    """`config apply`'s recount of every session count (`recount_dimensions`): `profiles`
    (their `user_id` and stored sessions), the raw `events` (the human ones are those `persons`
    maps), and `recount`: the breakdown documents as they were, the recount of the dimensions
    counted afresh, and the dimensions whose sets and counts were deleted (those, the entry and
    exit pages). Returns the breakdown documents to merge (the recount's, with their sessions,
    and the other dimensions' sessions in each period's first counts document) and each
    person's `SESSION_VALUES_FIELD`."""
    stored, counted, gone = recount
    sessions = {
        str(data["user_id"]): list(decode_sessions(data[SESSIONS_FIELD]).values())
        for data in profiles
        if "user_id" in data and isinstance(data.get(SESSIONS_FIELD), bytes)  # not a bucket's
    }
    admitted: dict[tuple[str, str, str], Sequence[str]] = {
        key: stored.admitted(key)
        for key in stored.sets()
        if key[2] not in gone and stored.admitted(key)
    }
    admitted.update(counted.admitted)
    by_sessions, values = recount_session_breakdowns(
        sessions, events, persons, periods, rules, admitted
    )
    for key, new in by_sessions.admitted.items():
        counted.admitted[key] = [*counted.admitted.get(key, ()), *new]
        admitted[key] = [*admitted.get(key, ()), *new]
    own = {key: n for key, n in by_sessions.sessions.items() if key[2] in gone}
    docs = rebuilt_docs(counted, {}, own, own_documents=True)
    for (g, p, d, value), n in by_sessions.sessions.items():
        if d not in gone:
            doc = docs.setdefault(
                counts_doc_id(g, p), {"kind": COUNTS_KIND, "granularity": g, "period": p}
            )
            by_value = doc.setdefault(SESSIONS, {}).setdefault(encode_map_key(d), {})
            by_value[count_key(admitted.get((g, p, d), ()), value)] = n
    for doc in docs.values():  # merged: an empty map would replace the stored one
        for name in COUNT_MAPS:
            if name in doc and not doc[name]:
                del doc[name]
    kept: dict[str, dict[str, Stored]] = defaultdict(dict)
    for (person, session_key), v in values.items():
        kept[person][session_key] = (v.start, v.order[1], dict(v.values))
    encoded = {
        person: encode_values(kept.get(person, {}), own_sessions)
        for person, own_sessions in sessions.items()
    }
    return docs, encoded
