"""Sessions and funnels on the Firestore store: the per-person recomputation, pure.

The SQLite store recomputes the derivation around a batch's new events inside its write
transaction (`SQLiteBehavior`). Firestore has no such transaction over queries, so
the Firestore store keeps each person's stored derivation — sessions and funnel progress — in
the person's profile document (sessions and the digest below as JSON bytes, one value each),
reads it (with the profile's update time), then reads the person's raw events in the range the
recomputation needs, and writes the new derivation back under the precondition "update time =
the one read". Every commit that creates a human raw event of a person writes that person's
profile, so a commit succeeds only if no other commit added events of the person since the
profile was read: the raw events it read are exactly the person's committed events in that
range. A conflict re-reads and recomputes.

To spare most of those queries, the profile also keeps a **digest of the person's recent
events**: every human event of theirs at or after `recent.from` that sessions or funnels need
(events without a client session id, and events matching a funnel step), as (time, loose?,
matched steps). The commit that creates an event adds it, under the same precondition, so the
digest is exact; it keeps about a session cap plus a gap (or a funnel window, if longer)
before the person's newest event, and at most `DIGEST_MAX` entries. A recomputation whose
range starts at or after `recent.from` reads the digest; one that reaches further back (a
late event, a long chain of sessions, a profile from before the digest) queries the raw
events from the range's start on and renews the digest from there.

Client sessions (cut by the cap like the others) that gain events merge them into their stored
sessions without the stored events where `sessions.merge_client_sessions` can; where it cannot
(an event before the first session, or beyond a session's cap short of the next), the caller
queries the person's client-session times from the stored sessions' start (`client_recounts`)
and passes them in.

Events that move between persons (an identity link changes who an anonymous visitor's events
count for) take the other road, `recount_range`: it reads every human event of the person
from the start of what the change can reach (`exact_low`) and recounts sessions and funnel
days there from scratch, since removing an event can split a session or undo a step.

This module holds what happens between the reads and the writes, by the same rules (and the
same closure and monotone tricks) as `SQLiteBehavior`; `verify` recomputes with
`behavior.recount`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import FunnelPoint, progress
from behavioral_analytics.sessions import (
    Session,
    SessionDelta,
    client_sessions,
    gap_sessions,
    merge_client_sessions,
)
from behavioral_analytics.stores.firestore.keys import decode_map_key, encode_map_key

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

__all__ = [
    "DIGEST_MAX",
    "PersonChange",
    "PersonState",
    "RawEvent",
    "client_recounts",
    "decode_progress",
    "decode_recent",
    "decode_sessions",
    "encode_progress",
    "encode_recent",
    "encode_sessions",
    "exact_low",
    "raw_event",
    "read_range",
    "recent_span",
    "recompute",
    "recount_range",
    "renew_recent",
]


DIGEST_MAX = 2000  # entries (about 100 bytes each) in a profile's digest of recent events


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A stored human event of a person, as the recomputation needs it: whether it has no
    client session id (`loose`), and the steps it matches per funnel (only those it matches)."""

    key: str
    timestamp: float
    loose: bool
    steps: dict[str, frozenset[int]]

    @property
    def relevant(self) -> bool:
        return self.loose or bool(self.steps)


def raw_event(
    key: str,
    timestamp: float,
    session_id: str | None,
    event_type: str,
    properties: Any,
    rules: BehaviorRules,
) -> RawEvent:
    """A stored or new event as the recomputation needs it, by `rules`' funnels."""
    steps = {}
    for funnel in rules.funnels:
        matched = funnel.matched_steps(event_type, properties)
        if matched:
            steps[funnel.name] = matched
    return RawEvent(key, timestamp, session_id is None, steps)


@dataclass(slots=True)
class PersonState:
    """A person's stored derivation, as read from their profile, and the digest of their
    recent events (`recent_from` None: no digest)."""

    sessions: dict[str, Session] = field(default_factory=dict)  # Session.key → session
    progress: dict[str, dict[str, int]] = field(default_factory=dict)  # funnel → day → step
    recent_from: float | None = 0.0  # a new person: every event of theirs is in `recent`
    recent: dict[str, RawEvent] = field(default_factory=dict)
    # Session key → (start, first event's key, raw values): `session_counts`.
    session_values: dict[str, tuple[float, str, dict[str, str]]] = field(default_factory=dict)


@dataclass(slots=True)
class PersonChange:
    """A person's derivation after a change (`state`), and what the change adds to or takes
    from the session figures and funnel users of the buckets."""

    state: PersonState
    sessions: SessionDelta = field(default_factory=SessionDelta)
    funnel_users: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def replacer(self, periods: Periods) -> Callable[[dict[str, Session], list[Session]], None]:
        """A function replacing stored sessions by recomputed ones, recording the difference."""
        sessions = self.state.sessions

        def replace(removed: dict[str, Session], added: list[Session]) -> None:
            if len(removed) == len(added) and all(removed.get(s.key) == s for s in added):
                return
            for key in removed:
                sessions.pop(key, None)
            for session in added:
                sessions[session.key] = session
            self.sessions.apply(removed.values(), periods, -1)
            self.sessions.apply(added, periods, 1)

        return replace

    def set_step(self, name: str, day: str, step: int) -> None:
        """A funnel entry day's furthest step, and the users per step it adds or takes away."""
        days = self.state.progress.setdefault(name, {})
        before = days.get(day, 0)
        if step == before:
            return
        if step:
            days[day] = step
        else:
            del days[day]
        sign = 1 if step > before else -1
        for reached in range(min(before, step) + 1, max(before, step) + 1):
            self.funnel_users[name, day, reached] += sign


def _start(state: PersonState) -> PersonChange:
    return PersonChange(
        PersonState(dict(state.sessions), {k: dict(v) for k, v in state.progress.items()})
    )


# -- stored form (profile fields) ----------------------------------------------------------


def encode_sessions(sessions: Iterable[Session], horizon: float) -> bytes:
    """`sessions` field of a profile: JSON bytes of [start, end, events, client id or null]
    per session, with a fifth item 0 for a client id's session that is not its first (one
    value: cheap to read and write whole); sessions ending before `horizon` are dropped (no
    event that can still arrive reaches them)."""
    return _encode(
        [
            [s.start, s.end, s.events, s.client_id] + ([] if s.first else [0])
            for s in sessions
            if s.end >= horizon
        ]
    )


def decode_sessions(raw: bytes | None) -> dict[str, Session]:
    """The sessions `encode_sessions` stored, by `Session.key`."""
    sessions: dict[str, Session] = {}
    for start, end, events, client_id, *first in _decode(raw) if raw else ():
        session = Session(float(start), float(end), int(events), client_id, not first)
        sessions[session.key] = session
    return sessions


def encode_progress(progress_: dict[str, dict[str, int]], horizon_day: str) -> dict[str, Any]:
    """`funnel_progress` field of a profile: {funnel: {day: furthest step}}, days before
    `horizon_day` dropped."""
    return {
        encode_map_key(name): {day: step for day, step in days.items() if day >= horizon_day}
        for name, days in progress_.items()
    }


def decode_progress(raw: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """The funnel progress `encode_progress` stored."""
    return {
        decode_map_key(name): {day: int(step) for day, step in (days or {}).items()}
        for name, days in (raw or {}).items()
    }


def encode_recent(recent_from: float | None, recent: dict[str, RawEvent]) -> bytes:
    """`recent` field of a profile, JSON bytes: {from, events: [[key, time, loose,
    {funnel: [steps]}]]}; `from` null: no digest."""
    if recent_from is None:
        return _encode({"from": None, "events": []})
    events = [
        [e.key, e.timestamp, e.loose, {name: sorted(steps) for name, steps in e.steps.items()}]
        for e in recent.values()
    ]
    return _encode({"from": recent_from, "events": events})


def decode_recent(raw: bytes | None) -> tuple[float | None, dict[str, RawEvent]]:
    """The digest `encode_recent` stored: (from, events by key); (None, {}): no digest."""
    data = _decode(raw) if raw else None
    if not data or data.get("from") is None:
        return None, {}
    events = {}
    for key, timestamp, loose, steps in data["events"]:
        events[key] = RawEvent(
            key,
            float(timestamp),
            bool(loose),
            {name: frozenset(indexes) for name, indexes in steps.items()},
        )
    return float(data["from"]), events


def recent_span(rules: BehaviorRules) -> float:
    """How far before a person's newest event the digest reaches: a session cap plus a gap
    (a stored session touched by an in-order event starts no earlier) or the longest funnel
    window, with a minute to spare."""
    window = max((f.window_s for f in rules.funnels), default=0.0)
    return max(rules.sessions.max_s + rules.sessions.gap_s, window) + 60.0


def renew_recent(
    state: PersonState, known_from: float, known: Sequence[RawEvent], rules: BehaviorRules
) -> None:
    """Set the digest to the relevant events in `known` (every one the person has at or after
    `known_from`), trimmed to the recent span before the newest and to `DIGEST_MAX`."""
    relevant = sorted((e for e in known if e.relevant), key=lambda e: e.timestamp)
    if not relevant:
        state.recent_from, state.recent = known_from, {}
        return
    low = max(known_from, relevant[-1].timestamp - recent_span(rules))
    if len(relevant) > DIGEST_MAX:
        low = max(low, relevant[-DIGEST_MAX].timestamp)
    state.recent_from = low
    state.recent = {e.key: e for e in relevant if e.timestamp >= low}


# -- what to read --------------------------------------------------------------------------


def _session_closure(
    state: PersonState, new: Sequence[Event], rules: BehaviorRules
) -> tuple[list[float], dict[str, Session]] | None:
    """The span of the new (or changed) events without a client session id, grown over the
    stored gap sessions within a gap of it until it stops (as
    `SQLiteBehavior._update_sessions`), and the stored sessions it takes in."""
    loose = [e.timestamp for e in new if e.session_id is None]
    if not loose:
        return None
    span = [min(loose), max(loose)]
    gap = rules.sessions.gap_s
    removed: dict[str, Session] = {}
    candidates = [s for s in state.sessions.values() if s.client_id is None]
    grown = True
    while grown:
        grown = False
        for session in candidates:
            if session.key in removed:
                continue
            if session.start <= span[1] + gap and session.end >= span[0] - gap:
                removed[session.key] = session
                if session.start < span[0] or session.end > span[1]:
                    span = [min(span[0], session.start), max(span[1], session.end)]
                    grown = True
    return span, removed


def _funnel_spans(new: Sequence[Event], rules: BehaviorRules) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    for funnel in rules.funnels:
        stamps = [e.timestamp for e in new if e.event_type in funnel.types]
        if stamps:
            spans[funnel.name] = (min(stamps), max(stamps))
    return spans


def _by_client(events: Sequence[Event]) -> dict[str, list[float]]:
    by_client: dict[str, list[float]] = {}
    for event in events:
        if event.session_id is not None:
            by_client.setdefault(event.session_id, []).append(event.timestamp)
    return by_client


def _client_pieces(state: PersonState, client_id: str) -> dict[str, Session]:
    """The stored sessions of one client session id, by key."""
    return {k: s for k, s in state.sessions.items() if s.client_id == client_id}


def client_recounts(
    state: PersonState, new: Sequence[Event], rules: BehaviorRules
) -> dict[str, float]:
    """Client session id → from when on `recompute` needs its stored times (`client_times`),
    for the client sessions of `new` that cannot merge into their stored sessions."""
    needed = {}
    for client_id, stamps in _by_client(new).items():
        before = _client_pieces(state, client_id)
        if before and merge_client_sessions(before.values(), stamps, rules.sessions) is None:
            needed[client_id] = min(min(s.start for s in before.values()), min(stamps))
    return needed


def read_range(
    state: PersonState, new: Sequence[Event], rules: BehaviorRules
) -> tuple[float, float] | None:
    """The span of the person's stored raw events the recomputation needs (None: none)."""
    lows: list[float] = []
    highs: list[float] = []
    closure = _session_closure(state, new, rules)
    if closure is not None:
        lows.append(closure[0][0])
        highs.append(closure[0][1])
    by_name = {f.name: f for f in rules.funnels}
    for name, (low, high) in _funnel_spans(new, rules).items():
        window = by_name[name].window_s
        lows.append(low - window)
        highs.append(high + window)
    if not lows:
        return None
    return min(lows), max(highs)


# -- the recomputation ---------------------------------------------------------------------


def _days_between(periods: Periods, low: float, high: float) -> list[str]:
    days = {periods.of(high)[2]}
    at = low
    while at < high:
        days.add(periods.of(at)[2])
        at += 3600.0
    return sorted(days)


def recompute(
    state: PersonState,
    stored: Sequence[RawEvent],
    known_from: float | None,
    new: Sequence[Event],
    rules: BehaviorRules,
    periods: Periods,
    client_times: Mapping[str, Sequence[float]] | None = None,
) -> PersonChange:
    """The person's derivation with `new` (human events not stored yet) added, given their
    stored derivation and their stored relevant events from `known_from` on (`stored`, which
    covers `read_range`), and the difference to apply to the aggregates. The new state's
    digest holds `stored` and `new` (None `known_from`: no digest)."""
    new_keys = {e.key for e in new}
    old = [e for e in stored if e.key not in new_keys]
    added_raw = [
        raw_event(e.key, e.timestamp, e.session_id, e.event_type, e.properties, rules) for e in new
    ]
    change = _start(state)
    replace = change.replacer(periods)

    closure = _session_closure(state, new, rules)
    if closure is not None:
        (low, high), removed = closure
        stamps = [e.timestamp for e in old if e.loose and low <= e.timestamp <= high]
        stamps += [e.timestamp for e in new if e.session_id is None]
        replace(removed, gap_sessions(stamps, rules.sessions))
    for client_id, stamps in _by_client(new).items():
        before = _client_pieces(state, client_id)
        if not before:
            replace({}, client_sessions(client_id, stamps, rules.sessions))
            continue
        merged = merge_client_sessions(before.values(), stamps, rules.sessions)
        if merged is None:
            known_times = (client_times or {}).get(client_id)
            if known_times is None:
                raise ValueError(f"client session {client_id!r} needs its stored times")
            merged = client_sessions(
                client_id,
                [*known_times, *stamps],
                rules.sessions,
                first=min(before.values(), key=lambda s: s.start).first,
            )
        replace(before, merged)

    by_name = {f.name: f for f in rules.funnels}
    for name, (low, high) in _funnel_spans(new, rules).items():
        funnel = by_name[name]
        window = funnel.window_s
        first, last = low - window, high + window
        points = [
            FunnelPoint(e.timestamp, e.key, steps)
            for e in (*old, *added_raw)
            if first <= e.timestamp <= last and (steps := e.steps.get(name))
        ]
        reached = progress(points, funnel, periods, (low - window, high))
        days = change.state.progress.get(name, {})
        for day in _days_between(periods, low - window, high):
            # Gaining events never undoes a step.
            change.set_step(name, day, max(days.get(day, 0), reached.get(day, 0)))
    if known_from is None:
        change.state.recent_from, change.state.recent = None, {}
    else:
        renew_recent(change.state, known_from, [*old, *added_raw], rules)
    return change


# -- events moving between persons ---------------------------------------------------------


def exact_low(
    state: PersonState, changed: Sequence[Event], rules: BehaviorRules, periods: Periods
) -> float:
    """From when on `recount_range` needs the person's events, for `changed` (events gained
    or lost): the sessions they touch, their client sessions, the funnel days whose entries
    can reach them, and their days (whether an hour or day keeps a unique-user marker)."""
    lows = [periods.start_of("day", periods.of(min(e.timestamp for e in changed))[2])]
    closure = _session_closure(state, changed, rules)
    if closure is not None:
        lows.append(closure[0][0])
    for client_id in {e.session_id for e in changed if e.session_id is not None}:
        lows.extend(s.start for s in _client_pieces(state, client_id).values())
    for funnel in rules.funnels:
        stamps = [e.timestamp for e in changed if e.event_type in funnel.types]
        if stamps:
            lows.append(periods.start_of("day", periods.of(min(stamps) - funnel.window_s)[2]))
    return min(lows)


def recount_range(
    state: PersonState,
    after: Sequence[Event],
    low: float,
    changed: Sequence[Event],
    rules: BehaviorRules,
    periods: Periods,
) -> PersonChange:
    """The person's derivation once `changed` events are gained or lost, recounted from
    `after`: every human event of the person at or after `low` (`exact_low`) with the change
    applied. Sessions and funnel days the change reaches are recomputed from scratch."""
    change = _start(state)
    replace = change.replacer(periods)
    closure = _session_closure(state, changed, rules)
    if closure is not None:
        (first, last), removed = closure
        stamps = [
            e.timestamp for e in after if e.session_id is None and first <= e.timestamp <= last
        ]
        replace(removed, gap_sessions(stamps, rules.sessions))
    for client_id in sorted({e.session_id for e in changed if e.session_id is not None}):
        before = _client_pieces(state, client_id)
        is_first = min(before.values(), key=lambda s: s.start).first if before else True
        stamps = [e.timestamp for e in after if e.session_id == client_id]
        replace(before, client_sessions(client_id, stamps, rules.sessions, first=is_first))
    for funnel in rules.funnels:
        stamps = [e.timestamp for e in changed if funnel.matched_steps(e.event_type, e.properties)]
        if not stamps:
            continue
        days = _days_between(periods, min(stamps) - funnel.window_s, max(stamps))
        first = periods.start_of("day", days[0])
        last = periods.end_of("day", days[-1])
        points = [
            FunnelPoint(e.timestamp, e.key, steps)
            for e in after
            if first <= e.timestamp <= last + funnel.window_s
            and (steps := funnel.matched_steps(e.event_type, e.properties))
        ]
        reached = progress(points, funnel, periods, (first, last))
        for day in days:
            change.set_step(funnel.name, day, reached.get(day, 0))
    known = [
        raw_event(e.key, e.timestamp, e.session_id, e.event_type, e.properties, rules)
        for e in after
    ]
    renew_recent(change.state, low, known, rules)
    return change
