"""A behavioral commit's writes of people on the Firestore store: moved events, one write per
person or actor document touched (under the update time it was read with, or create() when
absent), and the bucket transforms for bots, sessions and funnels.

Per person of the batch, the stored derivation is recomputed (`behavior.recompute`) from the
digest of recent events in their profile when it reaches back far enough, else from their raw
events queried from the range's start on, in parallel, after the profiles were read. A person
losing stored events (an identity link moved them away) is recounted from scratch over what
the change reaches (`behavior.recount_range`), with the unique-user markers they lose and the
bounds of their profile. The sessions each person's recomputation replaces move the sessions
per breakdown value (`session_counts`), their values kept in the profile write.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from behavioral_analytics.aggregation import Deltas, ProfileDelta
from behavioral_analytics.behavior import as_person
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.stores.firestore.behavior import (
    PersonChange,
    PersonState,
    RawEvent,
    client_recounts,
    encode_recent,
    exact_low,
    read_range,
    recompute,
    recount_range,
)
from behavioral_analytics.stores.firestore.breakdowns import (
    BreakdownBatch,
    Marker,
    add_session_counts,
    encode_markers,
    marker_path,
)
from behavioral_analytics.stores.firestore.documents import (
    Extra,
    Seen,
    as_datetime,
    behavior_fields,
    behavior_transforms,
    markers_by_who,
    profile_doc,
    type_transforms,
)
from behavioral_analytics.stores.firestore.gateway import Gateway, Stale
from behavioral_analytics.stores.firestore.identity import encode_anonymous_events, encode_links
from behavioral_analytics.stores.firestore.keys import doc_id
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.people import People
from behavioral_analytics.stores.firestore.plan import Plan
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    ANONYMOUS_EVENTS_FIELD,
    BREAKDOWN_MARKER_FIELD,
    EVENTS,
    FORGOTTEN_FIELD,
    MARKER_FIELD,
    RECENT_FIELD,
    REVISION_FIELD,
)
from behavioral_analytics.stores.firestore.session_counts import (
    SESSION_VALUES_FIELD,
    PersonSessions,
    Stored,
    count_sessions,
    encode_values,
)
from behavioral_analytics.stores.firestore.wire import field_path, write

__all__ = ["PersonWriter"]


@dataclass(frozen=True, slots=True)
class _Recounted:
    """A person losing stored events, recounted."""

    change: PersonChange
    lost: set[tuple[str, str]]  # markers no event of theirs holds any more
    lost_breakdowns: set[Marker]  # per-value breakdown markers, likewise
    bounds: tuple[float, float] | None  # first seen, last activity


@dataclass(frozen=True, slots=True)
class _PersonUpdate:
    who: str
    seen: Seen | None
    delta: ProfileDelta | None  # the batch's new events
    moved_in: list[Event]  # stored events now counted for them
    moved_out: list[Event]  # stored events now counted for someone else
    bounds: tuple[float, float] | None  # first seen, last activity, recounted
    behavior: dict[str, Any] | None  # the stored derivation's fields
    links: tuple[Link, ...] | None  # replaced, when the batch changes them
    bump: bool
    gained: list[tuple[str, str]]
    lost: list[tuple[str, str]]
    anonymous_events: bytes | None  # replaced, when the batch adds some
    gained_breakdowns: list[Marker]
    lost_breakdowns: list[Marker]


@dataclass(frozen=True, slots=True)
class _SessionCounts:
    deltas: Counter[tuple[str, str, str, str]]  # for `add_session_counts`
    values: dict[str, dict[str, Stored]]  # person → session key → values kept


class PersonWriter:
    """The person writes of behavioral commits, reading through `people`."""

    def __init__(self, gateway: Gateway, options: StoreOptions, people: People) -> None:
        self.gateway = gateway
        self.options = options
        self.people = people

    def add(
        self,
        writes: list[Any],
        deltas: Deltas,
        humans: list[Event],
        plan: Plan,
        extra: Extra,
        now: float,
        breakdowns: BreakdownBatch,
    ) -> Counter[tuple[str, str]]:
        """The behavioral read model's writes for a batch, appended to `writes` (bucket
        transforms to `extra`): moved events, one write per person or actor document touched,
        bots, sessions and funnels; return the unique-user changes per bucket (those per
        breakdown value go to `breakdowns.user_changes`)."""
        writes.extend(
            write(
                self.gateway.name(EVENTS, m.event.key),
                {"person": m.new},
                mask=["person"],
                exists=True,
            )
            for m in plan.moves
        )
        moved_in: dict[str, list[Event]] = defaultdict(list)
        moved_out: dict[str, list[Event]] = defaultdict(list)
        for m in plan.moves:
            moved_in[m.new].append(as_person(m.event, m.new))
            moved_out[m.old].append(as_person(m.event, m.old))
        # Gaining stored events is like gaining new ones; losing some is recounted.
        gaining = [e for person, own in moved_in.items() if person not in moved_out for e in own]
        changes = self._recompute(
            [h for h in humans if h.who not in moved_out] + gaining, plan.seen
        )
        recounted = {
            person: self._recount_person(
                person,
                [h for h in humans if h.who == person],
                moved_in[person],
                out,
                plan,
                breakdowns,
            )
            for person, out in sorted(moved_out.items())
        }
        changes.update({person: r.change for person, r in recounted.items()})
        counted_sessions = self._session_counts(changes, humans, moved_in, moved_out, plan)
        add_session_counts(breakdowns, counted_sessions.deltas)
        behavior_transforms(extra, plan.events, changes.values(), self.options.periods)
        markers = markers_by_who(deltas.markers)
        links = {change.actor: change for change in plan.links.values()}
        arrivals: dict[str, list[Event]] = defaultdict(list)
        for event in plan.events:
            if event.user_id is None and event.anonymous_id and not is_bot(event.properties):
                arrivals[event.who].append(event)
        people = [*deltas.profiles, *moved_in, *moved_out, *links]
        uniques: Counter[tuple[str, str]] = Counter()
        horizon = self.options.horizon(plan.events, now)
        for who in dict.fromkeys([*people, *sorted(plan.bumps)]):
            seen = plan.seen.get(who)
            have = seen.markers if seen is not None else frozenset()
            redo = recounted.get(who)
            gained = {m for m in markers.get(who, ()) if m not in have}
            gained |= {
                marker
                for e in moved_in.get(who, ())
                for marker in self.options.marker_periods(e.timestamp)
                if marker not in have
            }
            lost = redo.lost if redo is not None else set()
            uniques.update(gained)
            uniques.subtract(lost)
            have_values = seen.breakdown_markers if seen is not None else frozenset()
            gained_values = breakdowns.markers.get(who, set()) | breakdowns.stored_markers(
                moved_in.get(who, ())
            )
            gained_values -= have_values
            lost_values = redo.lost_breakdowns if redo is not None else set()
            breakdowns.user_changes.update(gained_values)
            breakdowns.user_changes.subtract(lost_values)
            change = changes.get(who)
            link = links.get(who)
            listed = None
            if who in arrivals:  # the commit writes this document: its list grows
                before = [] if seen is None else seen.anonymous_events
                listed = encode_anonymous_events(
                    None if before is None else [*before, *arrivals[who]]
                )
            behavior = None
            if change is not None:
                behavior = behavior_fields(change, horizon, self.options.periods)
                if who in counted_sessions.values:
                    kept = [s for s in change.state.sessions.values() if s.end >= horizon]
                    behavior[SESSION_VALUES_FIELD] = encode_values(
                        counted_sessions.values[who], kept
                    )
            writes.append(
                self._person_write(
                    _PersonUpdate(
                        who,
                        seen,
                        deltas.profiles.get(who),
                        moved_in.get(who, []),
                        moved_out.get(who, []),
                        redo.bounds if redo is not None else None,
                        behavior,
                        link.after if link is not None else None,
                        who in plan.bumps,
                        sorted(gained),
                        sorted(lost),
                        listed,
                        sorted(gained_values),
                        sorted(lost_values),
                    ),
                    now,
                )
            )
        for key, n in uniques.items():
            if n and key not in deltas.buckets:
                extra.setdefault(key, []).append(("unique_users", "increment", n))
        return uniques

    def _session_counts(
        self,
        changes: dict[str, PersonChange],
        humans: list[Event],
        moved_in: dict[str, list[Event]],
        moved_out: dict[str, list[Event]],
        plan: Plan,
    ) -> _SessionCounts:
        """The sessions per value the commit's session changes move (`session_counts`), and
        each changed person's session values as their profile keeps them."""
        if not self.options.rules.breakdowns.dimensions:
            return _SessionCounts(Counter(), {})
        batch: dict[str, list[Event]] = defaultdict(list)
        for event in humans:
            batch[event.who].append(event)
        people = []
        for person, change in changes.items():
            seen = plan.seen.get(person)
            state = seen.behavior if seen is not None else None
            people.append(
                PersonSessions(
                    person,
                    state.sessions if state is not None else {},
                    change.state.sessions,
                    state.session_values if state is not None else {},
                    [*batch.get(person, ()), *moved_in.get(person, ())],
                    {e.key: (e.session_id, e.timestamp) for e in moved_out.get(person, ())},
                )
            )
        deltas = count_sessions(
            people, self.people.events_at, self.options.rules.breakdowns, self.options.periods
        )
        return _SessionCounts(deltas, {p.person: p.values for p in people})

    def _recount_person(
        self,
        person: str,
        new: list[Event],
        moved_in: list[Event],
        moved_out: list[Event],
        plan: Plan,
        breakdowns: BreakdownBatch,
    ) -> _Recounted:
        """A person losing stored events (a link moved them away): their derivation recounted
        over what the change reaches, the markers they lose, the bounds of their profile."""
        rules, periods = self.options.rules, self.options.periods
        seen = plan.seen.get(person)
        state = seen.behavior if seen is not None and seen.behavior is not None else PersonState()
        changed = [*new, *moved_in, *moved_out]
        low = exact_low(state, changed, rules, periods)
        out = {e.key for e in moved_out}
        everything = None  # all their events, when known
        if person in plan.anonymous:  # an anonymous actor: its events were just read
            own = [event for event, counted_for in plan.anonymous[person] if counted_for == person]
            everything = [e for e in own if e.key not in out] + new + moved_in
            stored = [e for e in own if e.timestamp >= low]
        else:
            stored = self.people.all_from(person, low)
            self.gateway.counters.identity_queries += 1
        after = [e for e in stored if e.key not in out] + new + moved_in
        change = recount_range(state, after, low, changed, rules, periods)
        marker_periods = self.options.marker_periods
        left = {marker for e in after for marker in marker_periods(e.timestamp)}
        have = seen.markers if seen is not None else frozenset()
        lost = {
            marker
            for e in moved_out
            for marker in marker_periods(e.timestamp)
            if marker not in left and marker in have
        }
        new_keys = {e.key for e in new}
        left_values = breakdowns.stored_markers([e for e in after if e.key not in new_keys])
        left_values |= breakdowns.markers.get(person, set())
        have_values = seen.breakdown_markers if seen is not None else frozenset()
        lost_values = {
            marker
            for marker in breakdowns.stored_markers(moved_out)
            if marker not in left_values and marker in have_values
        }
        bounds = None
        if everything:
            stamps = [e.timestamp for e in everything]
            bounds = (min(stamps), max(stamps))
        elif everything is None and seen is not None:
            first = seen.first_seen
            if first is None or first >= low:
                first = min((e.timestamp for e in after), default=first)
            last = max((e.timestamp for e in after), default=None)
            if last is None:
                last = self.people.last_before(person, low)
            if first is not None and last is not None:
                bounds = (first, last)
        return _Recounted(change, lost, lost_values, bounds)

    def _person_write(self, update: _PersonUpdate, now: float) -> Any:
        """The one write of a person's or anonymous actor's document in a behavioral commit,
        under the precondition that it is as read (or absent)."""
        who, seen, delta = update.who, update.seen, update.delta
        by_type: Counter[str] = Counter(delta.by_type if delta is not None else {})
        total = delta.total if delta is not None else 0
        stamps = [delta.first_seen, delta.last_activity] if delta is not None else []
        for event in update.moved_in:
            by_type[event.event_type] += 1
            stamps.append(event.timestamp)
        for event in update.moved_out:
            by_type[event.event_type] -= 1
        total += len(update.moved_in) - len(update.moved_out)
        name = self.gateway.name(AGGREGATES, doc_id("user_", who))
        updated = as_datetime(now)
        links = encode_links(update.links) if update.links is not None else {}
        if update.anonymous_events is not None:
            links[ANONYMOUS_EVENTS_FIELD] = update.anonymous_events
        behavior = update.behavior or {}
        if seen is None:
            if total > 0:
                gained = ProfileDelta(total, by_type, min(stamps), max(stamps))
                doc = profile_doc(who, gained, update.gained, updated, behavior)
                if update.gained_breakdowns:
                    doc[BREAKDOWN_MARKER_FIELD] = encode_markers(update.gained_breakdowns)
            else:  # an anonymous id's first link: no event of theirs is stored
                doc = {
                    "kind": "person",
                    "user_id": who,
                    "last_updated": updated,
                    RECENT_FIELD: encode_recent(0.0, {}),
                    **behavior,
                }
            if who.startswith("anonymous:"):  # none of its events is stored yet
                doc[ANONYMOUS_EVENTS_FIELD] = encode_anonymous_events([])
            doc.update(links)
            return write(name, doc, exists=False)
        if seen.total + total <= 0 and (seen.kind == "user" or update.lost):
            # Every event of theirs now counts for someone else: no profile any more, only
            # what is not one (links, a tombstone).
            doc = {"kind": "person", "user_id": who, "last_updated": updated, **behavior}
            doc.update(encode_links(seen.links) if seen.links else {})
            doc[ANONYMOUS_EVENTS_FIELD] = encode_anonymous_events(seen.anonymous_events)
            doc.update(links)
            if seen.forgotten_at is not None:
                doc[FORGOTTEN_FIELD] = seen.forgotten_at
            return write(name, doc, update_time=seen.update_time)
        fields: dict[str, Any] = {"user_id": who, "last_updated": updated, **behavior, **links}
        mask = [*fields]
        if seen.total + total > 0:
            fields["kind"] = "user"
            mask.append("kind")
        transforms: list[tuple[str, str, float]] = []
        if total:
            transforms.append(("total_events", "increment", total))
        transforms += type_transforms(
            "events_by_type", Counter({t: n for t, n in by_type.items() if n})
        )
        if update.bounds is not None:
            fields["first_seen"], fields["last_activity"] = update.bounds
            mask += ["first_seen", "last_activity"]
        elif stamps:
            transforms += [
                ("first_seen", "minimum", min(stamps)),
                ("last_activity", "maximum", max(stamps)),
            ]
        for granularity, period in update.gained:
            fields.setdefault(MARKER_FIELD[granularity], {})[period] = True
            mask.append(field_path(MARKER_FIELD[granularity], period))
        mask += [field_path(MARKER_FIELD[g], period) for g, period in update.lost]
        if update.gained_breakdowns:
            fields[BREAKDOWN_MARKER_FIELD] = encode_markers(update.gained_breakdowns)
            mask += [marker_path(*marker) for marker in update.gained_breakdowns]
        mask += [marker_path(*marker) for marker in update.lost_breakdowns]
        if any(granularity == "day" for granularity, _ in update.gained):
            mask.extend(self.options.expired_marker_paths(seen.days, now))
            horizon = self.options.periods.label("day", now - self.options.marker_retention_s)
            mask += [field_path(BREAKDOWN_MARKER_FIELD, d) for d in seen.days if d < horizon]
        if update.bump:
            transforms.append((REVISION_FIELD, "increment", 1))
        return write(name, fields, mask=mask, transforms=transforms, update_time=seen.update_time)

    def _recompute(self, humans: list[Event], seen: dict[str, Seen]) -> dict[str, PersonChange]:
        """Per person of the batch: their stored relevant events over the range the rules
        need — from the digest in their profile when it reaches back far enough, else queried
        (from the range's start on, in parallel; after the profiles: see `behavior`) — and
        the recomputation."""
        rules = self.options.rules
        by_person: dict[str, list[Event]] = {}
        for event in humans:
            by_person.setdefault(event.who, []).append(event)
        inputs: dict[str, tuple[PersonState, list[RawEvent], float | None]] = {}
        queries: dict[str, float] = {}
        for person, new in by_person.items():
            seen_state = seen.get(person)
            if seen_state is None or seen_state.behavior is None:
                # No profile: no stored human event of theirs; the digest starts complete.
                inputs[person] = (PersonState(), [], 0.0)
                continue
            state = seen_state.behavior
            span = read_range(state, new, rules)
            if span is None or (state.recent_from is not None and span[0] >= state.recent_from):
                inputs[person] = (state, list(state.recent.values()), state.recent_from)
            else:
                queries[person] = span[0]
                inputs[person] = (state, [], span[0])
        self.gateway.counters.behavior_queries += len(queries)
        if queries:
            names = list(queries)
            found = self.gateway.in_parallel(
                lambda p: self.people.relevant_from(p, queries[p]), names
            )
            for person, events in zip(names, found, strict=True):
                state, _, low = inputs[person]
                inputs[person] = (state, events, low)
        clients = {
            person: needed
            for person, new in by_person.items()
            if (needed := client_recounts(inputs[person][0], new, rules))
        }
        client_times: dict[str, dict[str, list[float]]] = {}
        if clients:  # a client session that cannot merge: its stored times are queried
            names = list(clients)
            self.gateway.counters.behavior_queries += len(names)
            found_times = self.gateway.in_parallel(
                lambda p: self.people.client_times_from(p, min(clients[p].values())), names
            )
            client_times = dict(zip(names, found_times, strict=True))
            for person, needed in clients.items():
                if not needed.keys() <= client_times[person].keys():
                    # The profile says these client sessions have stored events, the events
                    # say otherwise: a concurrent commit moved them (an identity link) after
                    # the profile was read, and will have changed the profile too.
                    raise Stale(f"client sessions of {person!r} moved since their profile was read")
        return {
            person: recompute(
                inputs[person][0],
                inputs[person][1],
                inputs[person][2],
                new,
                rules,
                self.options.periods,
                client_times.get(person),
            )
            for person, new in by_person.items()
        }
