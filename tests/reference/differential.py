"""Drive a store and the reference through the same stream; list every figure they disagree on.

The store is read only through its public reads (`series`, `session_series`, `funnel`,
`profile`, `links`, `snapshot().profiles`); periods are compared by label.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast
from zoneinfo import ZoneInfo

from behavioral_analytics.aggregation import Granularity
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import parse_funnels
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.store import Store
from tests.reference.model import Reference, label
from tests.reference.streams import FUNNEL_JSON, Stream

USERS = ["u1", "u2", "u3"]

ACTORS = [*USERS, "anonymous:a1", "anonymous:a2"]


class Clock:
    """The store's clock, set by the driver."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def behavior_rules(stream: Stream) -> BehaviorRules:
    rules = stream.rules
    return BehaviorRules(
        sessions=SessionRules(gap_s=rules.gap_s, max_s=rules.cap_s),
        funnels=parse_funnels(FUNNEL_JSON),
        identity_window_s=rules.identity_window_s,
        allow_relink=rules.allow_relink,
        lateness_s=rules.lateness_s,
    )


def drive(stream: Stream, make: Callable[[BehaviorRules, Clock], Store]) -> list[str]:
    """Play the stream's plan on a new store and on the reference; the disagreements."""
    rules = behavior_rules(stream)
    clock = Clock(stream.end)
    store = make(rules, clock)
    try:
        store.init()
        reference = Reference(stream.rules)
        enriched: dict[int, Event] = {}
        counts: list[str] = []  # (created, duplicates, forgotten) of each commit
        for op, arg in stream.plan:
            if op == "commit":
                batch = []
                for i in arg:
                    if i not in enriched:
                        enriched[i] = copy.deepcopy(stream.events[i])
                        rules.enrich(enriched[i])
                    batch.append(copy.deepcopy(enriched[i]))
                result = store.commit(batch)
                got = (result.created, result.duplicates, result.forgotten)
                want = reference.commit(stream.events[i] for i in arg)
                if len(set(arg)) < len(arg):  # QUESTIONS.md 16: a copy of a dropped event
                    got = (got[0], got[1] + got[2], 0)
                    want = (want[0], want[1] + want[2], 0)
                if got != want:
                    counts.append(f"commit {arg}: reference {want} store {got}")
            elif op == "forget":
                store.forget(arg)
                reference.forget(arg, clock.now)
            else:
                clock.now = arg
        clock.now = stream.read_at
        return counts + compare(stream, store, reference)
    finally:
        store.close()


def compare(stream: Stream, store: Store, ref: Reference) -> list[str]:
    zone = ZoneInfo(stream.rules.timezone)
    problems: list[str] = []

    def span(granularity: str) -> tuple[str, str]:
        return (
            label(stream.start - 86400, granularity, zone)[0],
            label(stream.later + 86400, granularity, zone)[0],
        )

    want: list[tuple[str, int, Any]]
    got: list[tuple[str, Any]]
    for granularity in ("minute", "hour", "day"):
        want = [
            (
                p.label,
                p.fold,
                (p.total_events, p.events_by_type, p.unique_users, p.bot_events),
            )
            for p in ref.series(granularity)
        ]
        got = [
            (
                p.period,
                (
                    p.total_events,
                    _nonzero(p.events_by_type),
                    p.unique_users,
                    p.bot_events,
                ),
            )
            for p in store.series(granularity, *span(granularity))
        ]
        problems += _periods(f"series {granularity}", want, got)
    now = stream.read_at
    for granularity in ("hour", "day"):
        want = [
            (f.label, f.fold, (f.sessions, f.duration_ms, f.bounces, f.events, f.final))
            for f in ref.session_series(granularity, now)
        ]
        got = [
            (
                p.period,
                (p.stats.sessions, p.stats.duration_ms, p.stats.bounces, p.stats.events, p.final),
            )
            for p in store.session_series(cast(Granularity, granularity), *span(granularity))
            if p.stats.sessions
        ]
        problems += _periods(f"sessions {granularity}", want, got)
    for funnel in stream.rules.funnels:
        want_days = ref.funnel(funnel.name)
        got_days = {
            d.day: d.users_by_step
            for d in store.funnel(funnel.name, *span("day"))
            if any(d.users_by_step)
        }
        if want_days != got_days:
            problems.append(f"funnel {funnel.name}: reference {want_days} store {got_days}")
    profiles = ref.profiles()
    for who in sorted(set(ACTORS) | set(profiles)):
        want_profile = profiles.get(who)
        stored = store.profile(who)
        got_profile = (
            None
            if stored is None
            else (
                stored.total_events,
                _nonzero(stored.events_by_type),
                stored.first_seen,
                stored.last_activity,
            )
        )
        if not _same(want_profile, got_profile):
            problems.append(f"profile {who}: reference {want_profile} store {got_profile}")
    snapshot = {
        who: (p[0], _nonzero(p[1]), p[2], p[3])
        for who, p in store.snapshot().profiles.items()
        if p[0]
    }
    if set(snapshot) != set(profiles):
        problems.append(f"profiles kept: reference {sorted(profiles)} store {sorted(snapshot)}")
    links = ref.links()
    for user in USERS:
        want_links = sorted(
            (k.anonymous_id, k.linked_at, k.status) for k in links if k.user_id == user
        )
        got_links = sorted(
            (k.anonymous_id, k.linked_at, k.status) for k in store.links(user) if k.user_id == user
        )
        if want_links != got_links:
            problems.append(f"links {user}: reference {want_links} store {got_links}")
    return problems


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a[:2] == b[:2] and abs(a[2] - b[2]) < 1e-6 and abs(a[3] - b[3]) < 1e-6)


def _periods(what: str, want: list[tuple[str, int, Any]], got: list[tuple[str, Any]]) -> list[str]:
    """Periods in time order with the reference's labels (docs/behavior.md "Periods when
    clocks change": the repeated hour is `HHb`) and figures."""
    problems: list[str] = []
    labels = [g[0] for g in got]
    if labels != sorted(labels) or len(set(labels)) != len(labels):
        problems.append(f"{what}: labels not distinct and in time order: {labels}")
    want_by_label = {w[0]: w[2] for w in want}
    got_by_label = dict(got)
    for period in sorted(set(want_by_label) | set(got_by_label)):
        if want_by_label.get(period) != got_by_label.get(period):
            problems.append(
                f"{what} {period}: reference {want_by_label.get(period)} "
                f"store {got_by_label.get(period)}"
            )
    return problems
