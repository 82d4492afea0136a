"""`verify`: recount every aggregate from the retained raw events and compare.

Raw events expire (SQLite purge, Firestore TTL) `raw_retention_s` after they are processed,
and an event is processed at the earliest `max_future_skew_s` before its time (a client's
clock ahead: `Limits`), so a bucket that starts after `now - raw_retention_s +
max_future_skew_s` (the horizon, `horizon_of`) still has every one of its events; likewise a
profile first seen after then. Older buckets and profiles are reported as not checked rather
than as drift. Session and funnel figures read further back: a session's first events may lie
up to its cap plus its gap before a later one, a funnel's first step a window before its last
(`BehaviorRules.reach_s`), and those may have expired while the later ones are kept. Their
periods are checked from the horizon plus `reach_s` on; those of periods between the horizon
and then are counted apart (`near_retention_start`: where nothing older than the retention is
stored, nothing has expired, and a rebuild recounts them whole). A session across the
retention's start is not drift. Not covered: a person active with gaps under the session gap
for longer than twice the session cap across the retention's start, or a client session id
used that long across it, whose later sessions a recount cuts elsewhere (the cap counts from
each session's start).

A person's kept sessions, furthest funnel step per day and each session's values, what their
next commit derives from, are compared too (`person_sessions`, `funnel_progress`,
`session_values`: `STATE_KINDS`), where their figures are: a session lost from them shows in
no figure until that person is seen again, and is then counted a second time. A client session
id's later piece whose first piece expired is the same session, whichever piece a recount
calls the first. On Firestore, the copies of raw events its commits read instead of querying
(a person's digest of recent events, an anonymous visitor's list of events) are compared with
the raw events too (`kept_copies`).

Dead letters that parse as valid events today are counted nowhere: `verify` lists them
(`replay_verdicts`).

Group memberships (`named_calls`) are recounted from the retained group calls (raw events
whose `call` is "group"): a membership joined after `now - raw_retention_s` still has every
call that could have made it, so it is checked; an older one is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from behavioral_analytics.aggregation import GRANULARITIES, Granularity, Periods, fold
from behavioral_analytics.behavior import BehaviorRules, Recount, recount
from behavioral_analytics.breakdowns import recount_breakdowns
from behavioral_analytics.events import DEFAULT_LIMITS, Event, Limits
from behavioral_analytics.identity import Link, relinked
from behavioral_analytics.kept_copies import Copies
from behavioral_analytics.named_calls import group_call
from behavioral_analytics.recount_reads import Progress, no_progress, retained_events
from behavioral_analytics.replay_verdicts import replayable_dead_letters
from behavioral_analytics.session_breakdowns import SessionValues, recount_session_breakdowns
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import AggregateSnapshot, Auditable, DeadLetterBox, StoreError
from behavioral_analytics.verify_report import STATE_KINDS, Drift, VerifyReport

__all__ = [
    "STATE_KINDS",
    "Drift",
    "VerifyReport",
    "compare",
    "final_periods_changed",
    "horizon_of",
    "older_refusal",
    "verify",
]


def _joining(
    events: Iterator[Event], members: dict[tuple[str, str], tuple[float, str]]
) -> Iterator[Event]:
    """`events`, each group call's membership kept in `members`: (group id, member) → the
    earliest call's (event time, event key), as the stores keep it."""
    for event in events:
        call = group_call(event)
        if call is not None:
            key, joined = (call.group_id, call.member), (call.at, call.event_key)
            if key not in members or joined < members[key]:
                members[key] = joined
        yield event


def _counting(events: Iterator[Event], report: VerifyReport) -> Iterator[Event]:
    for event in events:
        report.raw_events += 1
        yield event


@dataclass(frozen=True, slots=True)
class _Checked:
    """Which periods `compare` checks: event figures of periods after `oldest` (the minute,
    hour and day labels holding the horizon), session and funnel figures of periods after
    `settled_from` (those of the horizon plus the rules' reach); None: every period."""

    oldest: tuple[str, str, str] | None
    settled_from: tuple[str, str, str] | None

    @classmethod
    def of(cls, periods: Periods, horizon: float | None, rules: BehaviorRules | None) -> _Checked:
        if horizon is None:
            return cls(None, None)
        reach_s = rules.reach_s if rules is not None else 0.0
        return cls(periods.of(horizon), periods.of(horizon + reach_s))

    def events(self, granularity: str, period: str) -> bool:
        """Whether an event figure (bucket, marker, breakdown) of the period is checked."""
        return self.oldest is None or period > self.oldest[GRANULARITIES.index(granularity)]

    def behavior(self, granularity: str, period: str) -> bool:
        """Whether a session or funnel figure of the period is checked."""
        return (
            self.settled_from is None
            or period > self.settled_from[GRANULARITIES.index(granularity)]
        )

    def settled(self, granularity: str, period: str) -> bool:
        """Whether the period's session and funnel figures are compared (what a person's kept
        sessions and funnel progress are placed by)."""
        return self.events(granularity, period) and self.behavior(granularity, period)

    def skips_behavior(self, granularity: str, period: str, report: VerifyReport) -> bool:
        """Whether a session or funnel figure of the period goes unchecked, counted in
        `report` as older than the retention or as near its start."""
        if not self.events(granularity, period):
            report.not_checked += 1
        elif not self.behavior(granularity, period):
            report.near_retention_start += 1
        else:
            return False
        return True


def _link_drift(stored: Sequence[Link], expected: Sequence[Link]) -> list[Drift]:
    """A drift per link whose stored status is not the one the rule gives it."""
    want = {(link.anonymous_id, link.event_key): link.status for link in expected}
    return [
        Drift("link", f"{link.anonymous_id}:{link.event_key}", link.status, status)
        for link in sorted(stored, key=lambda k: (k.anonymous_id, k.linked_at, k.event_key))
        if (status := want[link.anonymous_id, link.event_key]) != link.status
    ]


def compare(
    stored: AggregateSnapshot,
    events: Iterator[Event],
    periods: Periods,
    horizon: float | None = None,
    rules: BehaviorRules | None = None,
    links: Sequence[Link] = (),
    breakdowns: bool = False,
    settle: bool = True,
) -> VerifyReport:
    """Pure: the drift between `stored` and the fold of `events`, for buckets starting after
    `horizon` and profiles first seen after it (everything when `horizon` is None). With
    `rules`, the behavioral read model too: identity (through `links`), bots, sessions,
    funnels, recomputed by the same rules as the store applies them; with `breakdowns` as
    well, the breakdowns, recounted under the stored admitted sets. With `settle` (`verify`),
    session and funnel figures less than `rules.reach_s` after the horizon are left unchecked
    (`near_retention_start`); without it (`config apply`, which must find every retained figure
    its change moves), they are compared like the others."""
    members: dict[tuple[str, str], tuple[float, str]] = {}
    events = _joining(events, members)
    report = VerifyReport()
    counted = copies = None
    retained: list[Event] = []
    if rules is None:
        expected = fold(_counting(events, report), periods)
    else:
        if breakdowns:
            retained = list(_counting(events, report))
            events = iter(retained)
        else:
            events = _counting(events, report)
        if stored.recent_events is not None or stored.anonymous_events is not None:
            events = (copies := Copies(rules)).gathering(events)
        # The links' statuses as the recorded rule decides them (a rule changed by `config
        # apply` changes them: who each anonymous event counts for follows).
        resolved = relinked(links, rules.allow_relink)
        report.drift += _link_drift(links, resolved)
        counted = recount(events, resolved, rules, periods)
        expected = counted.deltas
    checked = _Checked.of(periods, horizon, rules if settle else None)
    in_range = checked.events

    expected_buckets: dict[tuple[str, str], tuple[int, dict[str, int]]] = {
        key: (b.total, {t: c for t, c in b.by_type.items() if c})
        for key, b in expected.buckets.items()
    }
    expected_uniques: dict[tuple[str, str], int] = {
        (granularity, period): n for (granularity, period), n in expected.unique_users().items()
    }
    for key in sorted(set(expected_buckets) | set(stored.buckets)):
        if not in_range(*key):
            report.not_checked += 1
            continue
        report.buckets_checked += 1
        have = stored.buckets.get(key, (0, {}))
        have = (have[0], {t: c for t, c in have[1].items() if c})
        want = expected_buckets.get(key, (0, {}))
        if have != want:
            report.drift.append(Drift("bucket", ":".join(key), have, want))
        if key[0] in ("hour", "day"):
            have_u, want_u = stored.unique_users.get(key, 0), expected_uniques.get(key, 0)
            if have_u != want_u:
                report.drift.append(Drift("unique_users", ":".join(key), have_u, want_u))
    report.drift += _marker_drift(
        "unique_markers", expected.markers, stored.markers, lambda m: in_range(m[0], m[1])
    )
    for who in sorted(set(expected.profiles) | set(stored.profiles)):
        want_p = expected.profiles.get(who)
        have_p = stored.profiles.get(who)
        first_seen = min(
            want_p.first_seen if want_p else float("inf"), have_p[2] if have_p else float("inf")
        )
        if horizon is not None and first_seen <= horizon:
            report.not_checked += 1
            continue
        report.profiles_checked += 1
        want_figures = (
            (want_p.total, dict(want_p.by_type), want_p.first_seen, want_p.last_activity)
            if want_p
            else None
        )
        if have_p != want_figures:
            report.drift.append(Drift("profile", who, have_p, want_figures))
    _compare_members(stored, {key: at for key, (at, _) in members.items()}, horizon, report)
    if counted is not None:
        _compare_behavior(stored, counted, checked, report)
        _compare_state(stored, counted, rules, periods, checked, report)
        if breakdowns and rules is not None:
            _compare_breakdowns(stored, retained, counted, rules, periods, checked, report)
        if copies is not None:
            kept = (stored.recent_events, stored.anonymous_events, counted.persons, horizon)
            report.drift += [Drift(*found) for found in copies.drift(*kept)]
    return report


def _marker_drift(
    what: str,
    expected: AbstractSet[tuple[str, ...]],
    stored: AbstractSet[tuple[str, ...]],
    in_range: Callable[[tuple[str, ...]], bool],
) -> list[Drift]:
    """Markers (their person last) the store lacks or holds beyond `expected`, counted per what
    precedes the person: `{"extra": n}` stored, `{"missing": n}` expected."""
    counts: dict[tuple[str, ...], list[int]] = {}
    for marker in expected ^ stored:
        if in_range(marker):
            pair = counts.setdefault(marker[:-1], [0, 0])
            pair[0 if marker in stored else 1] += 1
    return [
        Drift(what, ":".join(key), {"extra": extra}, {"missing": missing})
        for key, (extra, missing) in sorted(counts.items())
    ]


def _compare_breakdowns(
    stored: AggregateSnapshot,
    events: Sequence[Event],
    counted: Recount,
    rules: BehaviorRules,
    periods: Periods,
    checked: _Checked,
    report: VerifyReport,
) -> None:
    """Breakdown figures of the periods `checked`."""
    in_range = checked.events
    want = recount_breakdowns(
        events, counted.persons, periods, rules.breakdowns, stored.breakdown_admitted
    )
    for key in sorted(want.admitted):
        if in_range(key[0], key[1]):
            have_a = list(stored.breakdown_admitted.get(key, ()))
            report.drift.append(
                Drift("breakdown_admitted", ":".join(key), have_a, have_a + want.admitted[key])
            )
    want_events: dict[tuple[str, str, str, str], int] = {
        key: n for key, n in want.events.items() if n
    }
    for event_key in sorted(set(want_events) | set(stored.breakdown_events)):
        if in_range(event_key[0], event_key[1]):
            have, wanted = stored.breakdown_events.get(event_key, 0), want_events.get(event_key, 0)
            if have != wanted:
                report.drift.append(Drift("breakdown", ":".join(event_key), have, wanted))
    want_users = want.unique_users()
    for user_key in sorted(set(want_users) | set(stored.breakdown_users)):
        if in_range("day", user_key[0]):
            have_u, want_u = stored.breakdown_users.get(user_key, 0), want_users.get(user_key, 0)
            if have_u != want_u:
                report.drift.append(Drift("breakdown_users", ":".join(user_key), have_u, want_u))
    if stored.breakdown_markers is not None:
        # A marker lost or left over shows in no count until that person is seen again.
        report.drift += _marker_drift(
            "breakdown_markers",
            want.users,
            stored.breakdown_markers,
            lambda m: in_range("day", m[0]),
        )
    if stored.breakdown_sessions is None:
        return  # the store keeps no sessions per value
    admitted = {key: list(values) for key, values in stored.breakdown_admitted.items()}
    for key, values in want.admitted.items():
        admitted.setdefault(key, []).extend(values)
    sessions, session_values = recount_session_breakdowns(
        counted.sessions, events, counted.persons, periods, rules.breakdowns, admitted
    )
    if stored.session_values is not None:
        _compare_session_values(stored.session_values, session_values, periods, checked, report)
    for key in sorted(sessions.admitted):
        if checked.behavior(key[0], key[1]):
            have_a = admitted.get(key, [])
            report.drift.append(
                Drift("breakdown_admitted", ":".join(key), have_a, have_a + sessions.admitted[key])
            )
    for session_key in sorted(set(sessions.sessions) | set(stored.breakdown_sessions)):
        if not checked.skips_behavior(session_key[0], session_key[1], report):
            have_s = stored.breakdown_sessions.get(session_key, 0)
            want_s = sessions.sessions.get(session_key, 0)
            if have_s != want_s:
                report.drift.append(
                    Drift("breakdown_sessions", ":".join(session_key), have_s, want_s)
                )


def _compare_session_values(
    stored: Mapping[tuple[str, str], tuple[float, dict[str, str]]],
    recounted: Mapping[tuple[str, str], SessionValues],
    periods: Periods,
    checked: _Checked,
    report: VerifyReport,
) -> None:
    """Each counted session's values (what taking it out of the sessions per value takes)
    with the start they are kept under, placed by the hour it starts, where `checked` compares
    the session figures."""
    have_v = {(person, _base(key), start): raw for (person, key), (start, raw) in stored.items()}
    want_v = {(p, _base(key), v.start): dict(v.values) for (p, key), v in recounted.items()}
    for person, key, start in sorted(have_v.keys() | want_v.keys()):
        have, want = have_v.get((person, key, start)), want_v.get((person, key, start))
        if have != want and checked.settled("hour", periods.of(start)[1]):
            report.drift.append(Drift("session_values", f"{person}:{key}@{start!r}", have, want))


def _base(key: str) -> str:
    """A `Session.key` without what marks a client session id's later piece: once the first
    piece's raw events expire, a recount makes the next piece the first (its key `c:ID`, kept
    as `c:ID\x1fSTART`), the same session."""
    return key.split("\x1f", 1)[0]


def _compare_members(
    stored: AggregateSnapshot,
    expected: dict[tuple[str, str], float],
    horizon: float | None,
    report: VerifyReport,
) -> None:
    for key in sorted(set(expected) | set(stored.group_members)):
        have, want = stored.group_members.get(key), expected.get(key)
        joined = min(t for t in (have, want) if t is not None)
        if horizon is not None and joined <= horizon:
            report.not_checked += 1
        elif have != want:
            report.drift.append(Drift("group_member", ":".join(key), have, want))


def _compare_behavior(
    stored: AggregateSnapshot,
    counted: Recount,
    checked: _Checked,
    report: VerifyReport,
) -> None:
    """Bot, session and funnel figures of the periods `checked`."""
    for key in sorted(set(counted.bot_events) | set(stored.bot_events)):
        if checked.events(*key):
            have, want = stored.bot_events.get(key, 0), counted.bot_events.get(key, 0)
            if have != want:
                report.drift.append(Drift("bot_events", ":".join(key), have, want))
    zero = SessionStats()
    for key in sorted(set(counted.session_stats) | set(stored.session_stats)):
        if not checked.skips_behavior(*key, report):
            have_s = stored.session_stats.get(key, zero)
            want_s = counted.session_stats.get(key, zero)
            if have_s != want_s:
                report.drift.append(
                    Drift("sessions", ":".join(key), asdict(have_s), asdict(want_s))
                )
    want_f = {key: n for key, n in counted.funnel_users.items() if n}
    for funnel_key in sorted(set(want_f) | set(stored.funnel_users)):
        funnel, day, step = funnel_key
        if not checked.skips_behavior("day", day, report):
            have, want = stored.funnel_users.get(funnel_key, 0), want_f.get(funnel_key, 0)
            if have != want:
                report.drift.append(Drift("funnel", f"{funnel}:{day}:step{step}", have, want))


def _compare_state(
    stored: AggregateSnapshot,
    counted: Recount,
    rules: BehaviorRules | None,
    periods: Periods,
    checked: _Checked,
    report: VerifyReport,
) -> None:
    """Each person's kept sessions (placed by the hour each starts) and furthest funnel steps
    (by day), where `checked` compares the session and funnel figures. Lost or wrong, they
    show in no figure until the person is seen again; then a session or a funnel user is
    counted twice or not at all."""
    if stored.person_sessions is not None:
        have_s = {
            (person, _base(key), start, end, events)
            for person, key, start, end, events in stored.person_sessions
        }
        want_s = {
            (person, _base(s.key), s.start, s.end, s.events)
            for person, sessions in counted.sessions.items()
            for s in sessions
        }
        differ: dict[str, tuple[list[Any], list[Any]]] = {}
        for person, key, start, end, events in want_s ^ have_s:
            if checked.settled("hour", periods.of(start)[1]):
                have, expected = differ.setdefault(person, ([], []))
                kept = (person, key, start, end, events) in have_s
                (have if kept else expected).append([key, start, end, events])
        report.drift += [
            Drift("person_sessions", person, sorted(have), sorted(expected))
            for person, (have, expected) in sorted(differ.items())
        ]
    if stored.funnel_progress is not None and rules is not None:
        funnels = {funnel.name for funnel in rules.funnels}  # a dropped one's is not counted
        want_f = {key: step for key, step in counted.funnel_progress.items() if step}
        have_f = {
            key: step for key, step in stored.funnel_progress.items() if step and key[0] in funnels
        }
        for entry in sorted(set(want_f) | set(have_f)):
            have_step, want_step = have_f.get(entry), want_f.get(entry)
            if checked.settled("day", entry[2]) and have_step != want_step:
                report.drift.append(Drift("funnel_progress", ":".join(entry), have_step, want_step))


def verify(
    store: Auditable,
    periods: Periods,
    *,
    now: float,
    retention_s: float | None,
    repair: bool = False,
    drop_older: bool = False,
    dead_letters: DeadLetterBox | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = no_progress,
) -> VerifyReport:
    """Recount `store`'s aggregates (see the module's docstring). The dead letters are read
    from `dead_letters`, or from `store` when it keeps them, and judged under `limits` (the
    worker's: `Settings.limits`). `progress` is told what the recount is doing: the
    aggregates read, the raw events read (`retained_events`), a repair's rebuild starting.

    With `repair`, drift in the kept copies of raw events alone (`kept_copies`) drops those
    copies; any other drift rebuilds every aggregate from the retained raw events. Where some
    aggregates are older than the retention (`report.not_checked`), that rebuild recounts them
    from the events still kept, losing those that expired: it runs only with `drop_older`
    (then `report.older_recounted` says how many), and otherwise raises StoreError naming
    what would be lost. Raises StoreError when the store fails too."""
    horizon = horizon_of(now, retention_s, limits)
    rules = store.rules if store.behavioral else None
    with store.consistent_reads():
        stored = store.snapshot()
        progress("aggregates read; reading the raw events", True)
        report = compare(
            stored,
            retained_events(store, progress),
            periods,
            horizon,
            rules,
            store.stored_links(),
            # Stores that keep breakdowns say so (the port's `keeps_breakdowns`).
            breakdowns=bool(getattr(store, "keeps_breakdowns", False)),
        )
    if repair and report.copies_only:
        progress("drift in the kept copies of raw events only: dropping them", True)
        store.drop_copies(*report.copy_owners())
        report.repaired = True
    elif repair and not report.ok:
        if report.not_checked and not drop_older:
            assert horizon is not None  # nothing is older than a retention that is not set
            raise StoreError(older_refusal("--repair", report.not_checked, horizon))
        progress("drift found: rebuilding the aggregates", True)
        store.rebuild(retained_events(store, progress))
        report.repaired = True
        report.older_recounted = report.not_checked
        if rules is not None:
            report.final_periods = final_periods_changed(report.drift, rules, periods, now)
    box = dead_letters if dead_letters is not None else store
    if hasattr(box, "dead_letters") and hasattr(box, "count_dead_letters"):
        # checked by hasattr above: the box has the DeadLetterBox methods
        found = replayable_dead_letters(box, limits=limits)  # type: ignore[arg-type]  # hasattr
        report.valid_dead_letters, report.unreplayable_dead_letters = found
    return report


def horizon_of(
    now: float, retention_s: float | None, limits: Limits = DEFAULT_LIMITS
) -> float | None:
    """The time (epoch seconds) after which every raw event of a figure is still kept at `now`:
    the retention's start plus the most an accepted event is dated ahead of its receipt
    (`limits.max_future_skew_s`), since such an event expires `retention_s` after it is
    processed, before its own time leaves the retention; None without a retention."""
    return None if retention_s is None else now - retention_s + limits.max_future_skew_s


def older_refusal(what: str, older: int, horizon: float) -> str:
    """The one line refusing `what` (a command's rebuild) where `older` aggregates predate
    `horizon` (epoch seconds: `horizon_of`), saying how to go on."""
    since = datetime.fromtimestamp(horizon, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{what} would recount {older} aggregate{'s' * (older != 1)} older than the raw-event "
        f"retention from the raw events kept (since {since}), losing the events that expired "
        "(periods and profiles none of whose events are kept disappear); nothing was changed. "
        "To accept that, run it again with --drop-older (on the local store, "
        "`behavioral-analytics backup DIR` first keeps a copy to go back to)"
    )


def final_periods_changed(
    drift: Sequence[Drift], rules: BehaviorRules, periods: Periods, now: float
) -> list[str]:
    """`granularity:period` of the session figures in `drift` whose period was final at `now`
    (epoch seconds): what a repair that rebuilt them reports it changed, as `forget` does."""
    kept: tuple[Granularity, ...] = ("hour", "day")  # session figures are kept for these
    changed = set()
    for d in drift:
        granularity, _, period = d.key.partition(":")
        for g in kept:
            if (
                d.what == "sessions"
                and g == granularity
                and rules.session_final(periods, g, period, now)
            ):
                changed.add(d.key)
    return sorted(changed)
