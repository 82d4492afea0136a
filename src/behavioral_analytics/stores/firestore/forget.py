"""`forget USER` on the Firestore store.

1. A tombstone (`forgotten_at`, raised to now) goes into the user's document first, then into
   the documents of the anonymous ids actively linked to them (an anonymous visitor forgotten
   on their own, `anonymous:ID`, has none, and is refused if a link makes them a user's).
   Every commit reads the documents of the people its events count for and writes them under
   their update time, so from then on an event of theirs dated up to the tombstone is dropped
   (one committing meanwhile fails its precondition, re-reads and drops it).
2. Per person, their raw events up to the tombstone (human events by whom they count for,
   crawlers' by who sent them) are deleted with their counts, in atomic chunks when there
   are many; the last chunk goes with the person's document, replaced under its update time
   by what their remaining events (newer than the tombstone) make, and with the difference
   in unique users, sessions and funnel users. A `forget` cut short
   is finished by running it again: each chunk is exact on its own and the document still
   holds what the last step subtracts.
3. The link records naming the user go; so do the dead letters that name them. A commit
   records no dead letter a tombstone covers (`tombstones.covers_letters`), reading the
   tombstones of the people its JSON names (`privacy.named_ids`, `tombstones_of`) before it
   commits: one recorded while a `forget` runs, or bytes that are not JSON, go by running it
   again.

It takes the narrow parts of the store it needs: the gateway (reads, commit requests,
counters), the options (rules, periods, clock, shards) and the people reader.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from behavioral_analytics.actors import ANONYMOUS_PREFIX, actor, actor_ids
from behavioral_analytics.aggregation import GRANULARITIES, Deltas, fold
from behavioral_analytics.behavior import funnel_points, sessions_of
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import progress
from behavioral_analytics.identity import Link, resolve
from behavioral_analytics.privacy import mentions
from behavioral_analytics.session_breakdowns import (
    SessionValues,
    session_deltas,
    session_dimensions,
    session_endpoints,
    session_values,
)
from behavioral_analytics.store import ForgetReport, LinkedAnonymousId, TransientStoreError
from behavioral_analytics.stores.firestore.behavior import (
    PersonChange,
    PersonState,
    raw_event,
    renew_recent,
)
from behavioral_analytics.stores.firestore.breakdowns import (
    Marker,
    encode_markers,
    forget_writes,
)
from behavioral_analytics.stores.firestore.documents import (
    Extra,
    Seen,
    add_bucket_writes,
    as_datetime,
    behavior_fields,
    behavior_transforms,
    links_of,
    profile_doc,
    queried_event,
)
from behavioral_analytics.stores.firestore.gateway import (
    CONFLICT_ERRORS,
    MAX_CONFLICTS,
    Gateway,
    conflict_backoff_s,
)
from behavioral_analytics.stores.firestore.identity import encode_links
from behavioral_analytics.stores.firestore.keys import doc_id, encode_map_key
from behavioral_analytics.stores.firestore.minutes import bucket_transform_limit, fitting_prefix
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.people import People
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BOT_FIELD,
    BREAKDOWN_MARKER_FIELD,
    DEAD_LETTERS,
    EVENTS,
    FORGOTTEN_FIELD,
    LINKED_USERS_FIELD,
    LINKS_FIELD,
    MOVE_FIELDS,
)
from behavioral_analytics.stores.firestore.session_counts import (
    SESSION_VALUES_FIELD,
    Stored,
    encode_values,
)
from behavioral_analytics.stores.firestore.wire import (
    delete,
    field_path,
    from_value,
    merged,
    write,
)

__all__ = ["CHUNK", "forget"]

CHUNK = 400  # raw events deleted per commit before the last one


def tombstones_of(gateway: Gateway, persons: set[str]) -> dict[str, float]:
    """The tombstones of `persons` (ids as `events.actor` makes them) that have one: person id
    -> `forgotten_at`, read from their documents in batched gets (one read billed per
    document). Raises `TransientStoreError` on a transient error."""
    names = {gateway.name(AGGREGATES, doc_id("user_", person)): person for person in persons}
    found = gateway.get(sorted(names), [FORGOTTEN_FIELD])
    stones = {}
    for name, document in found.items():
        if FORGOTTEN_FIELD in document.fields:
            stones[names[name]] = float(from_value(document.fields[FORGOTTEN_FIELD]))
    return stones


def forget(who: str, gateway: Gateway, options: StoreOptions, people: People) -> ForgetReport:
    """Delete `who`'s events, counts, links and dead letters (and those of the anonymous ids
    actively linked to them); see the module's docstring for the steps.

    Raises `LinkedAnonymousId` for an anonymous actor a link makes a user's, `NotSupported`
    without the behavioral read model, `TransientStoreError` when a
    step kept conflicting with commits, the client's `GoogleAPICallError`s as they come (each
    step made is complete: running it again finishes)."""
    options.need_behavior("forget")
    return _Forget(gateway, options, people).run(who)


class _Forget:
    def __init__(self, gateway: Gateway, options: StoreOptions, people: People) -> None:
        self.gateway = gateway
        self.options = options
        self.people = people

    def run(self, who: str) -> ForgetReport:
        now = self.options.clock()
        report = ForgetReport(who)
        visitor = who.startswith(ANONYMOUS_PREFIX)
        if visitor:
            self._refuse_linked(who)
        self._tombstone(who, now)
        naming = {} if visitor else self._documents_naming(who)
        active = sorted(
            anonymous
            for anonymous, links in naming.items()
            if any(link.user_id == who and link.status == "active" for link in links)
        )
        for anonymous in active:
            self._tombstone(anonymous, now)
        report.persons = [who, *active]
        for person in report.persons:
            self._forget_person(person, who, report)
        for anonymous in naming:
            if anonymous not in active:
                self._drop_links(anonymous, who, report)
        report.dead_letters = self._forget_dead_letters(*actor_ids(report.persons))
        return report

    def _refuse_linked(self, anonymous_actor: str) -> None:
        """Raise `LinkedAnonymousId` if an active link makes `anonymous_actor` a user's."""
        seen = self.people.read([anonymous_actor], []).get(anonymous_actor)
        for link in seen.links if seen is not None else ():
            if link.status == "active":
                raise LinkedAnonymousId(anonymous_actor, link.user_id)

    def _tombstone(self, person: str, when: float) -> None:
        name = self.gateway.name(AGGREGATES, doc_id("user_", person))
        self.gateway.send(
            [
                write(
                    name,
                    {"user_id": person},
                    mask=["user_id"],
                    transforms=[(FORGOTTEN_FIELD, "maximum", when)],
                )
            ]
        )
        self.gateway.counters.write_ops += 1

    def _documents_naming(self, user: str) -> dict[str, tuple[Link, ...]]:
        """Anonymous actor -> its links, for every anonymous id with a proposal naming `user`."""
        query = (
            self.gateway.collection(AGGREGATES)
            .where(filter=firestore.FieldFilter(LINKED_USERS_FIELD, "array_contains", user))
            .select(["user_id", LINKS_FIELD])
        )
        return {
            (snap.to_dict() or {})["user_id"]: links_of(snap)
            for snap in query.stream(**self.gateway.options())
        }

    def _forget_person(self, person: str, user: str, report: ForgetReport) -> None:
        for attempt in range(1, MAX_CONFLICTS + 1):
            seen = self.people.read([person], None).get(person)
            if seen is None or seen.forgotten_at is None:
                raise TransientStoreError(f"the tombstone of {person!r} is missing")
            stored, bots = self._events_of(person)
            newest = max((e.timestamp for e in stored), default=seen.forgotten_at)
            if newest > seen.forgotten_at:  # dated ahead of the clock: the tombstone covers it
                self._tombstone(person, newest)
                continue
            doomed = [e for e in stored if e.timestamp <= seen.forgotten_at]
            remaining = [e for e in stored if e.timestamp > seen.forgotten_at and e.key not in bots]
            try:
                while len(doomed) > (size := self._chunk_size(doomed)):
                    chunk, doomed = doomed[:size], doomed[size:]
                    values, _ = self._breakdown_changes(chunk, bots)
                    changes = self._bucket_changes(chunk, bots)
                    self.gateway.send(merged([*self._deletions(chunk, changes), *values]))
                    report.raw_events += len(chunk)
                sessions = self._session_changes(seen, remaining)
                values, markers = self._breakdown_changes(
                    doomed, bots, seen, remaining, sessions.deltas
                )
                document, extra, counts = self._derivation(
                    person, user, seen, remaining, markers, sessions.kept
                )
                for key, transforms in self._bucket_changes(doomed, bots).items():
                    extra.setdefault(key, []).extend(transforms)
                self.gateway.send(merged([*self._deletions(doomed, extra), *values, document]))
            except CONFLICT_ERRORS:
                self.gateway.counters.conflicts += 1
                time.sleep(conflict_backoff_s(attempt))
                continue
            report.raw_events += len(doomed)
            report.sessions += counts[0]
            report.funnel_entries += counts[1]
            report.links += counts[2]
            report.final_periods = sorted({*report.final_periods, *counts[3]})
            return
        raise TransientStoreError(f"forgetting {person!r} kept conflicting with commits")

    def _events_of(self, person: str) -> tuple[list[Event], set[str]]:
        """The stored events `forget` deletes for `person`, by time: the human events counted
        for them and the crawlers' events they sent (a crawler's event counts for nobody; its
        `person` field is who it would have counted for when it arrived, which a later link
        can change); and the keys of the crawlers' among them."""
        prefix = ANONYMOUS_PREFIX
        filters = [firestore.FieldFilter("person", "==", person)]
        if person.startswith(prefix):
            anonymous_id = person.removeprefix(prefix)
            filters.append(firestore.FieldFilter("anonymous_id", "==", anonymous_id))
        found: dict[str, Event] = {}
        bots = set()
        for where in filters:
            query = self.gateway.collection(EVENTS).where(filter=where).select(MOVE_FIELDS)
            for snap in query.stream(**self.gateway.options()):
                data = snap.to_dict() or {}
                if data.get("bot"):
                    if actor(data.get("user_id"), data.get("anonymous_id")) != person:
                        continue
                    bots.add(snap.id)
                elif data.get("person") != person:
                    continue
                found[snap.id] = queried_event(snap.id, data, person)
        return sorted(found.values(), key=lambda e: (e.timestamp, e.key)), bots

    def _chunk_size(self, doomed: Sequence[Event]) -> int:
        """How many of `doomed` one commit deletes: `CHUNK`, fewer when their buckets' (and
        their hours' minutes') transforms would pass Firestore's limit per document."""
        limit = bucket_transform_limit(self.options)
        return fitting_prefix(doomed, self.options.periods, limit, CHUNK)

    def _bucket_changes(self, events: Sequence[Event], bots: set[str]) -> Extra:
        """What `events` counted in their buckets (totals, types, bots), taken away."""
        periods = self.options.periods
        extra: Extra = {}
        humans = [e for e in events if e.key not in bots]
        for key, bucket in fold(humans, periods).buckets.items():
            transforms = extra.setdefault(key, [])
            transforms.append(("total_events", "increment", -bucket.total))
            transforms += [
                (field_path("events_by_type", encode_map_key(t)), "increment", -n)
                for t, n in bucket.by_type.items()
            ]
        counted: Counter[tuple[str, str]] = Counter()
        for event in events:
            if event.key in bots:
                counted.update(zip(GRANULARITIES, periods.of(event.timestamp), strict=True))
        for bucket_key, n in counted.items():
            extra.setdefault(bucket_key, []).append((BOT_FIELD, "increment", -n))
        return extra

    def _breakdown_changes(
        self,
        events: Sequence[Event],
        bots: set[str],
        seen: Seen | None = None,
        remaining: Sequence[Event] = (),
        sessions: Mapping[tuple[str, str, str, str], int] | None = None,
    ) -> tuple[list[Any], list[Marker]]:
        """What the human events among `events` counted in breakdowns, taken away; with
        `seen` (the last step), the unique users per value that the person's markers no
        longer hold, and the markers their `remaining` events hold; `sessions`: the session
        deltas by raw value."""
        return forget_writes(
            self.gateway.get,
            self.gateway.name,
            self.options.rules.breakdowns,
            self.options.periods,
            [e for e in events if e.key not in bots],
            as_datetime(self.options.clock()),
            seen.breakdown_markers if seen is not None else None,
            remaining,
            sessions,
        )

    def _session_changes(self, seen: Seen, remaining: Sequence[Event]) -> _SessionChanges:
        """The person's stored session values taken out of the sessions per value, those of
        the sessions their `remaining` events make put in (`session_breakdowns`)."""
        rules = self.options.rules
        dimensions = session_dimensions(rules.breakdowns)
        if not dimensions:
            return _SessionChanges(Counter(), {})
        stored = seen.behavior.session_values if seen.behavior is not None else {}
        old = [SessionValues(start, raw) for start, _, raw in stored.values()]
        sessions = sessions_of(remaining, rules.sessions)
        kept: dict[str, Stored] = {}
        for key, (first, last) in session_endpoints(sessions, remaining).items():
            values = session_values(first, last, rules.breakdowns)
            kept[key] = (values.start, first.key, dict(values.values))
        new = [SessionValues(v[0], v[2], (v[0], v[1])) for v in kept.values()]
        deltas = session_deltas(old, new, self.options.periods, dimensions)
        return _SessionChanges(deltas, kept)

    def _deletions(self, events: Sequence[Event], extra: Extra) -> list[Any]:
        """Deletes of `events` and one write per bucket document changed (one atomic unit)."""
        writes = [delete(self.gateway.name(EVENTS, e.key), exists=True) for e in events]
        updated = as_datetime(self.options.clock())
        add_bucket_writes(
            writes,
            self.gateway.name,
            Deltas(),
            Counter(),
            updated,
            self.options.next_shard(),
            extra,
        )
        return writes

    def _derivation(
        self,
        person: str,
        user: str,
        seen: Seen,
        remaining: list[Event],
        breakdown_markers: Sequence[Marker],
        session_values: Mapping[str, Stored],
    ) -> tuple[Any, Extra, tuple[int, int, int, list[str]]]:
        """The person's document as their remaining events make it (or no profile: the links
        not naming `user`, the tombstone) under its update time; the difference in unique
        users, sessions and funnel users; the sessions, funnel entries and links it removes, and
        the final periods whose session figures it changes."""
        rules, periods = self.options.rules, self.options.periods
        state = seen.behavior or PersonState()
        change = PersonChange(PersonState(dict(state.sessions), {}))
        change.replacer(periods)(dict(state.sessions), sessions_of(remaining, rules.sessions))
        for name, days in state.progress.items():
            change.state.progress[name] = dict(days)
        reached = {
            funnel.name: progress(funnel_points(remaining, funnel), funnel, periods)
            for funnel in rules.funnels
        }
        for name in {*state.progress, *reached}:
            for day in {*state.progress.get(name, {}), *reached.get(name, {})}:
                change.set_step(name, day, reached.get(name, {}).get(day, 0))
        known = [
            raw_event(e.key, e.timestamp, e.session_id, e.event_type, e.properties, rules)
            for e in remaining
        ]
        renew_recent(change.state, 0.0, known, rules)
        deltas = fold(remaining, periods)
        markers = {(g, p) for g, p, _ in deltas.markers}
        uniques: Counter[tuple[str, str]] = Counter(markers - seen.markers)
        uniques.subtract(seen.markers - markers)
        extra: Extra = {}
        behavior_transforms(extra, [], [change], periods)
        for key, n in uniques.items():
            if n:
                extra.setdefault(key, []).append(("unique_users", "increment", n))
        now = self.options.clock()
        updated = as_datetime(now)
        horizon = self.options.horizon([], now)
        behavior = behavior_fields(change, horizon, periods)
        if session_values:
            kept = [s for s in change.state.sessions.values() if s.end >= horizon]
            behavior[SESSION_VALUES_FIELD] = encode_values(session_values, kept)
        profile = deltas.profiles.get(person)
        if profile is not None:
            doc = profile_doc(person, profile, sorted(markers), updated, behavior)
        else:
            doc = {"kind": "person", "user_id": person, "last_updated": updated, **behavior}
        doc[FORGOTTEN_FIELD] = seen.forgotten_at
        if breakdown_markers:
            doc[BREAKDOWN_MARKER_FIELD] = encode_markers(breakdown_markers)
        links = _without(seen.links, user, rules.allow_relink)
        if links:
            doc.update(encode_links(links))
        name = self.gateway.name(AGGREGATES, doc_id("user_", person))
        counts = (
            len(state.sessions),
            sum(len(days) for days in state.progress.values()),
            len(seen.links) - len(links),
            rules.final_changed(change.sessions, periods, now),
        )
        return write(name, doc, update_time=seen.update_time), extra, counts

    def _drop_links(self, anonymous: str, user: str, report: ForgetReport) -> None:
        """Remove the records naming `user` from an anonymous id's links (refused or duplicate
        proposals: who its events count for does not change)."""
        name = self.gateway.name(AGGREGATES, doc_id("user_", anonymous))
        for attempt in range(1, MAX_CONFLICTS + 1):
            seen = self.people.read([anonymous], [])[anonymous]
            links = _without(seen.links, user, self.options.rules.allow_relink)
            fields = encode_links(links)
            try:
                self.gateway.send(
                    [write(name, fields, mask=list(fields), update_time=seen.update_time)]
                )
            except CONFLICT_ERRORS:
                self.gateway.counters.conflicts += 1
                time.sleep(conflict_backoff_s(attempt))
                continue
            report.links += len(seen.links) - len(links)
            return
        raise TransientStoreError(f"forgetting links of {anonymous!r} kept conflicting")

    def _forget_dead_letters(self, user_ids: set[str], anonymous_ids: set[str]) -> int:
        doomed = []
        for snap in self.gateway.all(DEAD_LETTERS):
            data = bytes((snap.to_dict() or {}).get("data") or b"")
            if mentions(data, user_ids, anonymous_ids):
                doomed.append(snap.reference)
        client = self.gateway.client
        for start in range(0, len(doomed), CHUNK):
            batch = client.batch()
            for reference in doomed[start : start + CHUNK]:
                batch.delete(reference)
            batch.commit(**self.gateway.options())
        return len(doomed)


@dataclass(frozen=True, slots=True)
class _SessionChanges:
    deltas: Counter[tuple[str, str, str, str]]  # by raw value (`session_deltas`)
    kept: dict[str, Stored]  # session key → values, of the sessions remaining


def _without(links: Sequence[Link], user: str, allow_relink: bool) -> list[Link]:
    """An anonymous id's links less those naming `user`, resolved again (a proposal refused
    for the user's sake becomes active: the events it covers were the user's or the anonymous
    id's own, deleted)."""
    return resolve([link for link in links if link.user_id != user], allow_relink)
