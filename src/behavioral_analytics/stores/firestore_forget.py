"""`forget USER` on the Firestore store.

1. A tombstone (`forgotten_at`, raised to now) goes into the user's document first, then into
   the documents of the anonymous ids actively linked to them. Every commit reads the
   documents of the people its events count for and writes them under their update time, so
   from then on an event of theirs dated up to the tombstone is dropped (one committing
   meanwhile fails its precondition, re-reads and drops it).
2. Per person, their raw events up to the tombstone are deleted with their counts, in atomic
   chunks when there are many; the last chunk goes with the person's document, replaced
   under its update time by what their remaining events (newer than the tombstone) make,
   and with the difference in unique users, sessions and funnel users. A `forget` cut short
   is finished by running it again: each chunk is exact on its own and the document still
   holds what the last step subtracts.
3. The link records naming the user go; so do the dead letters that name them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import firestore

from behavioral_analytics.aggregation import GRANULARITIES, Deltas, fold
from behavioral_analytics.behavior import funnel_points, sessions_of
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import progress
from behavioral_analytics.identity import Link, resolve
from behavioral_analytics.privacy import mentions
from behavioral_analytics.store import ForgetReport, TransientStoreError
from behavioral_analytics.stores.firestore import (
    _CONFLICTS,
    _MAX_CONFLICTS,
    _MOVE_FIELDS,
    AGGREGATES,
    BOT_FIELD,
    DEAD_LETTERS,
    EVENTS,
    FORGOTTEN_FIELD,
    _dt,
    _links_of,
    _profile_doc,
    _queried_event,
)
from behavioral_analytics.stores.firestore_behavior import (
    PersonChange,
    PersonState,
    raw_event,
    renew_recent,
)
from behavioral_analytics.stores.firestore_identity import (
    LINKED_USERS_FIELD,
    LINKS_FIELD,
    encode_links,
)
from behavioral_analytics.stores.firestore_keys import doc_id, encode_map_key
from behavioral_analytics.stores.firestore_wire import delete, field_path, write

if TYPE_CHECKING:
    from behavioral_analytics.stores.firestore import FirestoreStore, _Seen

__all__ = ["forget"]

CHUNK = 400  # raw events deleted per commit before the last one


def forget(store: FirestoreStore, who: str) -> ForgetReport:
    store._need_behavior("forget")
    now = store._clock()
    report = ForgetReport(who)
    _tombstone(store, who, now)
    naming = _documents_naming(store, who)
    active = sorted(
        anonymous
        for anonymous, links in naming.items()
        if any(link.user_id == who and link.status == "active" for link in links)
    )
    for anonymous in active:
        _tombstone(store, anonymous, now)
    report.persons = [who, *active]
    for person in report.persons:
        _forget_person(store, person, who, report)
    for anonymous in naming:
        if anonymous not in active:
            _drop_links(store, anonymous, who, report)
    report.dead_letters = _forget_dead_letters(
        store, {who}, {a.removeprefix("anonymous:") for a in active}
    )
    return report


def _tombstone(store: FirestoreStore, person: str, when: float) -> None:
    name = store._name(AGGREGATES, doc_id("user_", person))
    store._send(
        [
            write(
                name,
                {"user_id": person},
                mask=["user_id"],
                transforms=[(FORGOTTEN_FIELD, "maximum", when)],
            )
        ]
    )
    store.write_ops += 1


def _documents_naming(store: FirestoreStore, user: str) -> dict[str, tuple[Link, ...]]:
    """Anonymous actor -> its links, for every anonymous id with a proposal naming `user`."""
    query = (
        store.db.collection(AGGREGATES)
        .where(filter=firestore.FieldFilter(LINKED_USERS_FIELD, "array_contains", user))
        .select(["user_id", LINKS_FIELD])
    )
    return {
        (snap.to_dict() or {})["user_id"]: _links_of(snap)
        for snap in query.stream(timeout=store.timeout_s)
    }


_Transforms = dict[tuple[str, str], list[tuple[str, str, float]]]


def _forget_person(store: FirestoreStore, person: str, user: str, report: ForgetReport) -> None:
    for _ in range(_MAX_CONFLICTS):
        seen = store._read_people([person], None).get(person)
        if seen is None or seen.forgotten_at is None:
            raise TransientStoreError(f"the tombstone of {person!r} is missing")
        stored, bots = _events_of(store, person)
        newest = max((e.timestamp for e in stored), default=seen.forgotten_at)
        if newest > seen.forgotten_at:  # dated ahead of the clock: the tombstone covers it too
            _tombstone(store, person, newest)
            continue
        doomed = [e for e in stored if e.timestamp <= seen.forgotten_at]
        remaining = [e for e in stored if e.timestamp > seen.forgotten_at and e.key not in bots]
        try:
            while len(doomed) > CHUNK:
                chunk, doomed = doomed[:CHUNK], doomed[CHUNK:]
                store._send(_deletions(store, chunk, _bucket_changes(store, chunk, bots)))
                report.raw_events += len(chunk)
            document, extra, counts = _derivation(store, person, user, seen, remaining)
            for key, transforms in _bucket_changes(store, doomed, bots).items():
                extra.setdefault(key, []).extend(transforms)
            store._send([*_deletions(store, doomed, extra), document])
        except _CONFLICTS:
            store.conflicts += 1
            continue
        report.raw_events += len(doomed)
        report.sessions += counts[0]
        report.funnel_entries += counts[1]
        report.links += counts[2]
        return
    raise TransientStoreError(f"forgetting {person!r} kept conflicting with commits")


def _events_of(store: FirestoreStore, person: str) -> tuple[list[Event], set[str]]:
    """Every stored event counted for `person`, by time, and the keys of the bots' among them."""
    query = (
        store.db.collection(EVENTS)
        .where(filter=firestore.FieldFilter("person", "==", person))
        .select(_MOVE_FIELDS)
    )
    found, bots = [], set()
    for snap in query.stream(timeout=store.timeout_s):
        data = snap.to_dict() or {}
        found.append(_queried_event(snap.id, data, person))
        if data.get("bot"):
            bots.add(snap.id)
    return sorted(found, key=lambda e: (e.timestamp, e.key)), bots


def _bucket_changes(store: FirestoreStore, events: Sequence[Event], bots: set[str]) -> _Transforms:
    """What `events` counted in their buckets (totals, types, bots), taken away."""
    extra: _Transforms = {}
    humans = [e for e in events if e.key not in bots]
    for key, bucket in fold(humans, store.periods).buckets.items():
        transforms = extra.setdefault(key, [])
        transforms.append(("total_events", "increment", -bucket.total))
        transforms += [
            (field_path("events_by_type", encode_map_key(t)), "increment", -n)
            for t, n in bucket.by_type.items()
        ]
    counted: Counter[tuple[str, str]] = Counter()
    for event in events:
        if event.key in bots:
            counted.update(zip(GRANULARITIES, store.periods.of(event.timestamp), strict=True))
    for key, n in counted.items():
        extra.setdefault(key, []).append((BOT_FIELD, "increment", -n))
    return extra


def _deletions(store: FirestoreStore, events: Sequence[Event], extra: _Transforms) -> list[Any]:
    """Deletes of `events` and one write per bucket document changed (one atomic unit)."""
    writes = [delete(store._name(EVENTS, e.key), exists=True) for e in events]
    updated = _dt(store._clock())
    store._add_buckets(writes, Deltas(), Counter(), updated, store._next_shard(), extra)
    return writes


def _derivation(
    store: FirestoreStore, person: str, user: str, seen: _Seen, remaining: list[Event]
) -> tuple[Any, _Transforms, tuple[int, int, int]]:
    """The person's document as their remaining events make it (or no profile: the links not
    naming `user`, the tombstone) under its update time; the difference in unique users,
    sessions and funnel users; the sessions, funnel entries and links it removes."""
    rules, periods = store.rules, store.periods
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
    extra: _Transforms = {}
    store._behavior_transforms(extra, [], [change])
    for key, n in uniques.items():
        if n:
            extra.setdefault(key, []).append(("unique_users", "increment", n))
    now = store._clock()
    updated = _dt(now)
    behavior = store._behavior_fields(change, store._horizon([], now))
    profile = deltas.profiles.get(person)
    if profile is not None:
        doc = _profile_doc(person, profile, sorted(markers), updated, behavior)
    else:
        doc = {"kind": "person", "user_id": person, "last_updated": updated, **behavior}
    doc[FORGOTTEN_FIELD] = seen.forgotten_at
    links = _without(seen.links, user, rules.allow_relink)
    if links:
        doc.update(encode_links(links))
    name = store._name(AGGREGATES, doc_id("user_", person))
    counts = (
        len(state.sessions),
        sum(len(days) for days in state.progress.values()),
        len(seen.links) - len(links),
    )
    return write(name, doc, update_time=seen.update_time), extra, counts


def _without(links: Sequence[Link], user: str, allow_relink: bool) -> list[Link]:
    """An anonymous id's links less those naming `user`, resolved again (a proposal refused
    for the user's sake becomes active: the events it covers were the user's or the anonymous
    id's own, deleted)."""
    return resolve([link for link in links if link.user_id != user], allow_relink)


def _drop_links(store: FirestoreStore, anonymous: str, user: str, report: ForgetReport) -> None:
    """Remove the records naming `user` from an anonymous id's links (refused or duplicate
    proposals: who its events count for does not change)."""
    name = store._name(AGGREGATES, doc_id("user_", anonymous))
    for _ in range(_MAX_CONFLICTS):
        seen = store._read_people([anonymous], [])[anonymous]
        links = _without(seen.links, user, store.rules.allow_relink)
        fields = encode_links(links)
        try:
            store._send([write(name, fields, mask=list(fields), update_time=seen.update_time)])
        except _CONFLICTS:
            store.conflicts += 1
            continue
        report.links += len(seen.links) - len(links)
        return
    raise TransientStoreError(f"forgetting links of {anonymous!r} kept conflicting")


def _forget_dead_letters(store: FirestoreStore, user_ids: set[str], anonymous_ids: set[str]) -> int:
    needles = [n.encode() for n in (user_ids | anonymous_ids)]
    doomed = []
    for snap in store._all(DEAD_LETTERS):
        data = bytes((snap.to_dict() or {}).get("data") or b"")
        if any(needle in data for needle in needles) and mentions(data, user_ids, anonymous_ids):
            doomed.append(snap.reference)
    for start in range(0, len(doomed), CHUNK):
        batch = store.db.batch()
        for reference in doomed[start : start + CHUNK]:
            batch.delete(reference)
        batch.commit(timeout=store.timeout_s)
    return len(doomed)
