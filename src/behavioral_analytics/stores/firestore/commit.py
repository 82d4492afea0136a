"""Committing a processed batch exactly once on the Firestore store.

A commit is one atomic commit request (the `WriteBatch` semantics): `create()` for every raw
event (so a redelivered event fails the batch with ALREADY_EXISTS instead of being counted
twice) and one write per aggregate document touched (the fold has already merged the batch per
document) with `Increment`/`Minimum`/`Maximum` transforms; a period's breakdowns ride in its
bucket's write (`wire.merged`). Profiles are read first and written
under a precondition (`profile_writes`, or `person_writes` with the behavioral read model). A
concurrent change fails the whole batch (FAILED_PRECONDITION or ALREADY_EXISTS); the store then
reads which raw events exist, drops them, re-reads the profiles, recomputes and commits again.

A batch too large for one request (10 MiB, 500 transforms per document) is split into parts,
each its own atomic commit; a part whose built request comes out larger than estimated (the
profiles carry the behavioral state) is halved. With the behavioral read model a commit first
plans who each event counts for (`plan`), then recomputes sessions and funnels per person.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc

from behavioral_analytics.actors import actor
from behavioral_analytics.aggregation import Granularity, fold
from behavioral_analytics.behavior import as_person
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.privacy import named_ids
from behavioral_analytics.store import CommitResult, NewDeadLetter, StoreError, TransientStoreError
from behavioral_analytics.stores.firestore.breakdowns import (
    BreakdownBatch,
    read_admitted,
    transform_room,
)
from behavioral_analytics.stores.firestore.documents import (
    Extra,
    add_bucket_writes,
    as_datetime,
    dead_letter_doc,
    dead_letter_id,
    dead_letter_size,
    distinct_dead_letters,
    event_doc,
    event_size,
    freshness_write,
)
from behavioral_analytics.stores.firestore.forget import tombstones_of
from behavioral_analytics.stores.firestore.gateway import (
    BACKOFF_S,
    CONFLICT_ERRORS,
    MAX_CONFLICTS,
    TRANSIENT_ERRORS,
    Gateway,
    conflict_backoff_s,
)
from behavioral_analytics.stores.firestore.groups import add_group_writes
from behavioral_analytics.stores.firestore.minutes import bucket_transform_limit, transforms_fit
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.people import People
from behavioral_analytics.stores.firestore.person_writes import PersonWriter
from behavioral_analytics.stores.firestore.plan import plan
from behavioral_analytics.stores.firestore.profile_writes import ProfileWriter
from behavioral_analytics.stores.firestore.schema import (
    DEAD_LETTERS,
    EVENTS,
    MAX_BUILT_REQUEST_BYTES,
)
from behavioral_analytics.stores.firestore.wire import merged, write

__all__ = ["Committer"]


class _TooLarge(Exception):
    """A built commit request exceeds the size limit: split the part."""


@dataclass(frozen=True, slots=True)
class _Built:
    writes: list[Any]
    lag: float | None
    markers: set[tuple[Granularity, str, str]]
    created: list[Event]  # the raw events the commit creates
    forgotten: int = 0  # events dropped: dated up to their person's `forget` tombstone


class Committer:
    """Atomic commits of batches (raw events, aggregate deltas, dead letters)."""

    def __init__(self, gateway: Gateway, options: StoreOptions, people: People) -> None:
        self.gateway = gateway
        self.options = options
        self.people = people
        self.profiles = ProfileWriter(gateway, options)
        self.persons = PersonWriter(gateway, options, people)

    def commit(
        self, events: Sequence[Event], dead_letters: Sequence[NewDeadLetter] = ()
    ) -> CommitResult:
        """Store `events` (each at most once) and `dead_letters`, with their aggregate deltas.

        Raises `TransientStoreError` when a part kept conflicting or failing transiently,
        `StoreError` on any other Firestore error; parts committed before stay committed."""
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.key, event)
        created: list[Event] = []
        lag: float | None = None
        forgotten = 0
        kept = self._not_forgotten(dead_letters)
        parts = list(self._split(list(unique.values()), distinct_dead_letters(kept)))
        parts.reverse()
        while parts:
            part_events, part_dead = parts.pop()
            try:
                part_created, part_lag, part_forgotten = self._commit_atomic(part_events, part_dead)
            except _TooLarge:
                # Profiles carry the behavioral state: the request came out larger than the
                # estimate. Halve the part; each half is its own atomic commit.
                middle = len(part_events) // 2
                parts += [(part_events[middle:], []), (part_events[:middle], part_dead)]
                continue
            created.extend(part_created)
            forgotten += part_forgotten
            if part_lag is not None:
                lag = part_lag if lag is None else max(lag, part_lag)
        return CommitResult(
            created=len(created),
            duplicates=len(events) - len(created) - forgotten,
            dead_letters=len(kept),
            created_by_type=dict(Counter(e.event_type for e in created)),
            max_lag_s=lag,
            forgotten=forgotten,
            letters_forgotten=len(dead_letters) - len(kept),
        )

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> int:
        """Record `dead_letters` (each at most once, none a tombstone covers), in as many
        atomic commits as they need; how many a tombstone covered (not recorded).

        Raises as `commit` does."""
        kept = self._not_forgotten(dead_letters)
        for _, part in self._split([], distinct_dead_letters(kept)):
            self._commit_atomic([], part)
        return len(dead_letters) - len(kept)

    def _not_forgotten(self, dead_letters: Sequence[NewDeadLetter]) -> list[NewDeadLetter]:
        """The dead letters no tombstone covers (the rule of `tombstones.covers_letters`): none
        of the people its own JSON names (`privacy.named_ids`) has a tombstone dated at or
        after its `received_at` (bytes that are not JSON name nobody here: they are recorded)."""
        named: list[set[str]] = []
        for letter in dead_letters:
            users, anonymous = named_ids(letter.data) if letter.received_at > 0 else ((), ())
            named.append({*users, *(actor(None, a) for a in anonymous)})
        everyone = set().union(*named)
        stones = tombstones_of(self.gateway, everyone) if everyone else {}
        return [
            letter
            for letter, people in zip(dead_letters, named, strict=True)
            if not any(stones.get(p, -1.0) >= letter.received_at for p in people)
        ]

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        """Set `replayed_at` = `when` on dead letters, 500 per batch, each commit made with
        `gateway.bound` (`dlq replay`'s: a read-time bound; setting the same time again is
        harmless).

        Raises `StoreError` when one does not exist."""
        ids = list(dead_letter_ids)
        client = self.gateway.client
        for start in range(0, len(ids), 500):
            batch = client.batch()
            for dead_letter_id_ in ids[start : start + 500]:
                ref = client.collection(DEAD_LETTERS).document(dead_letter_id_)
                batch.update(ref, {"replayed_at": when})
            try:
                batch.commit(**self.gateway.bound)
            except gexc.NotFound as exc:
                raise StoreError(f"no such dead letter: {exc}") from exc
            self.gateway.counters.write_ops += len(batch)

    def _split(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> Iterator[tuple[list[Event], list[NewDeadLetter]]]:
        """One part when the batch fits a commit; else parts that each fit, each atomic."""
        budget = self.options.max_request_bytes
        dl_sizes = [dead_letter_size(d) for d in dead_letters]
        ev_sizes = [event_size(e) for e in events]
        if sum(dl_sizes) + sum(ev_sizes) <= budget // 2 and self._transforms_fit(events):
            yield events, dead_letters
            return
        chunk: list[NewDeadLetter] = []
        used = 0
        for d, size in zip(dead_letters, dl_sizes, strict=True):
            if chunk and used + size > budget:
                yield [], chunk
                chunk, used = [], 0
            chunk.append(d)
            used += size
        if chunk:
            yield [], chunk
        # Aggregate writes add at most a few per event: half the budget for raw events.
        part: list[Event] = []
        used = 0
        for event, size in zip(events, ev_sizes, strict=True):
            if part and used + size > budget // 2:
                yield from self._split_by_transforms(part)
                part, used = [], 0
            part.append(event)
            used += size
        if part:
            yield from self._split_by_transforms(part)

    def _split_by_transforms(
        self, events: list[Event]
    ) -> Iterator[tuple[list[Event], list[NewDeadLetter]]]:
        if len(events) <= 1 or self._transforms_fit(events):
            yield events, []
            return
        middle = len(events) // 2
        yield from self._split_by_transforms(events[:middle])
        yield from self._split_by_transforms(events[middle:])

    def _transforms_fit(self, events: Sequence[Event]) -> bool:
        """Whether each aggregate document `events` touch takes their transforms in one
        commit (`minutes.transforms_fit`)."""
        # Breakdown counts spill into further parts of a period past the limit
        # (`breakdowns.breakdown_writes`): they never split a batch.
        limit = bucket_transform_limit(self.options)
        return transforms_fit(events, self.options.periods, limit)

    def _commit_atomic(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> tuple[list[Event], float | None, int]:
        """The part's created events, their largest lag and how many it dropped as forgotten."""
        counters = self.gateway.counters
        transient_failures = conflicts = 0
        refused_again: list[NewDeadLetter] = []
        while True:
            now = self.options.clock()
            try:
                built = self._build(events, dead_letters, now, refused_again)
                writes = built.writes
                if not writes:
                    return [], None, built.forgotten
                if len(events) > 1 and self.options.behavioral:
                    size = sum(w.ByteSize() for w in writes)
                    if size > min(self.options.max_request_bytes, MAX_BUILT_REQUEST_BYTES):
                        raise _TooLarge(size)
                self.gateway.send(writes)
            except CONFLICT_ERRORS as exc:
                counters.conflicts += 1
                conflicts += 1
                if conflicts > MAX_CONFLICTS:
                    raise TransientStoreError(f"Firestore commit kept conflicting: {exc}") from exc
                time.sleep(conflict_backoff_s(conflicts))
                events, dead_letters, refused_again = self._drop_existing(
                    events, [*dead_letters, *refused_again]
                )
                continue
            except TRANSIENT_ERRORS as exc:
                if transient_failures >= len(BACKOFF_S):
                    raise TransientStoreError(f"Firestore commit failed: {exc}") from exc
                time.sleep(BACKOFF_S[transient_failures])
                transient_failures += 1
                continue
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"Firestore commit failed: {exc}") from exc
            counters.write_ops += len(writes)
            counters.commits += 1
            if not self.options.behavioral:
                self.profiles.remember(built.markers)
            return built.created, built.lag, built.forgotten

    def _drop_existing(
        self, events: list[Event], dead_letters: list[NewDeadLetter]
    ) -> tuple[list[Event], list[NewDeadLetter], list[NewDeadLetter]]:
        """The events and dead letters not stored yet, and the dead letters already stored."""
        names = [self.gateway.name(EVENTS, e.key) for e in events]
        names += [self.gateway.name(DEAD_LETTERS, dead_letter_id(d)) for d in dead_letters]
        # Neither raw events nor dead letters have `kind`: the read returns existence only.
        existing = {name.rsplit("/", 1)[1] for name in self.gateway.get(names, ["kind"])}
        return (
            [e for e in events if e.key not in existing],
            [d for d in dead_letters if dead_letter_id(d) not in existing],
            [d for d in dead_letters if dead_letter_id(d) in existing],
        )

    def _build(
        self,
        events: list[Event],
        dead_letters: list[NewDeadLetter],
        now: float,
        refused_again: Sequence[NewDeadLetter] = (),
    ) -> _Built:
        """The writes of a commit at `now`; a dead letter in `refused_again` is stored already
        (a redelivered or replayed message refused again): its `replayed_at` is cleared, so a
        replay the worker refuses stays where `dlq` and `verify` show it."""
        options, name = self.options, self.gateway.name
        expire_at = as_datetime(now + options.raw_retention_s)
        processed_at = as_datetime(now)
        extra: Extra = {}
        writes: list[Any] = []
        breakdowns = None
        if options.behavioral and events:
            planned = plan(events, self.gateway, options, self.people)
            forgotten = len(events) - len(planned.events)
            events = planned.events
            persons = planned.persons
            humans = [as_person(e, persons[e.key]) for e in events if not is_bot(e.properties)]
            deltas = fold(humans, options.periods)
            breakdowns = BreakdownBatch(
                humans,
                [m.event for m in planned.moves],
                options.rules.breakdowns,
                options.periods,
                lambda keys: read_admitted(self.gateway.get, name, keys),
                options.max_transforms_per_doc,
            )
            new_uniques = self.persons.add(writes, deltas, humans, planned, extra, now, breakdowns)
        else:
            forgotten = 0
            persons = {}
            deltas = fold(events, options.periods)
            seen = self.profiles.read(deltas)
            new_uniques = self.profiles.add(writes, deltas, seen, now)
        writes.extend(
            write(
                name(EVENTS, event.key),
                event_doc(event, persons.get(event.key, event.who), now, processed_at, expire_at),
                exists=False,
            )
            for event in events
        )
        shard = options.next_shard()
        add_bucket_writes(writes, name, deltas, new_uniques, processed_at, shard, extra)
        if breakdowns is not None:
            room = transform_room(writes, options.max_transforms_per_doc)
            writes.extend(breakdowns.writes(name, processed_at, room))
        writes.extend(
            write(
                name(DEAD_LETTERS, dead_letter_id(d)),
                dead_letter_doc(d, now, options.dead_letter_retention_s),
                exists=False,
            )
            for d in dead_letters
        )
        writes.extend(
            write(
                name(DEAD_LETTERS, dead_letter_id(d)),
                {"replayed_at": None},
                mask=["replayed_at"],
                exists=True,
            )
            for d in refused_again
        )
        add_group_writes(writes, name, events)
        lag = max((now - e.received_at for e in events), default=None)
        if events:
            writes.append(freshness_write(name, events, now, lag, shard))
        return _Built(merged(writes), lag, deltas.markers, events, forgotten)
