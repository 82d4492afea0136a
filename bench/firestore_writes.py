"""Firestore writes per event and events/s: this adapter beside the recipe's per-event
pattern, on the same events, against Google's Firestore emulator, in one run.

    python bench/firestore_writes.py [--input live|backfill|narrow] [--events 100000]
                                     [--users 10000] [--seed 17] [--rate 1000]
                                     [--naive-events 10000] [--shards 4] [--no-behavior]
                                     [--identify 0.3] [--breakdown-properties 5]
                                     [--no-breakdowns]

Input (`--input`, bench/traffic.py): `live` (the default) is the project's generator — people
in sessions with its funnel and crawlers, 5 % late by up to an hour and 1 % by up to 3 days,
30 % of the people anonymous until they sign in during their first session (`identified`) —
arriving in time order at the model's own rate (about 1.5 events/s per 1,000 `--users`);
`backfill` is the same model over `--days` days arriving at `--rate`/s, as an import would;
`narrow` is the earlier input described next. The generator's parameters and seed are printed.

The adapter runs with the behavioral read model (bots, sessions and the generator's purchase
funnel, maintained exactly in the same commits) unless `--no-behavior`, and with breakdowns by
the default dimensions (docs/breakdowns.md; K = 100 values each) unless `--no-breakdowns`;
`--breakdown-properties N` adds N property dimensions (`BA_BREAKDOWN_PROPERTIES`), taken in
order from the generator's properties `PROPERTY_DIMENSIONS`.

After the first adapter row the bench reads its whole database back and prints what it
stores: bytes per event (every document's size by Firestore's storage-size rules,
cloud.google.com/firestore/docs/storage-size), the index entries those documents add under the
repository's `firestore.indexes.json` (single-field and composite, sized by the same page's
rules: `firestore_storage.py`) by collection, the largest breakdown document, and the price of
a million events at the list prices in `PRICES` (writes, the reads of the commits' batched gets,
the raw events' TTL deletes, a month of storage of the documents and index entries they leave).

The narrow input: events from `--users` users in session-like bursts (a session is a handful
of events a few seconds apart) arriving at `--rate` events/s of simulated time.

For each flush interval (1, 5 and 15 s) the events are grouped by the interval their arrival
falls in and each group is one `FirestoreStore.commit` (flush size cap: 20,000, the largest
BA_FLUSH_MAX_EVENTS), so a longer interval folds more events into each aggregate write. Writes
are counted in the adapter (`store.write_ops`: the document writes of successful commits, which
is what Firestore bills; printed per 1,000 events by collection, the aggregates split into
people and buckets, the breakdowns into counts and values documents, and the raw events into
creates and the rewrites of stored events an identity link moves to another person), beside the
structural floor of the row's flushes: one raw-event write per event plus one person write per
distinct person per flush. The writes above the floor are then printed per event by where they
go (`above_floor`). The bare row creates the raw-event documents only (the adapter's document
shape, one batch per flush): the rate and the bytes stored per event the adapter's are compared
to.

Beside the writes, the table gives each row's bytes written per event (`WrittenBytes`: the
serialized size of every write its successful commit requests carried; Firestore bills writes
by count, so this is what shows the cost of the profiles' blobs) and, for the bare row and the
first adapter row, the bytes stored per event (documents and index entries, as above) and their
ratio to the bare row's.

Staleness = how long after arrival an event shows in the aggregates: waiting for its flush
(half the interval on average) plus the commit. Events/s = events / wall time of the commits,
back to back: one store, one thread (one worker that never waits for messages; the workers row
below runs several at once), each commit reading what it needs (one `get_all` of the profiles
it does not know yet) and writing one atomic commit. With `--shards N` one more row runs the
1 s flush with N counter shards.

The naive pattern (the recipe's): per event one set() of the raw event plus three merge writes
with Increment (user, hourly, daily documents), ten threads. It makes 4 writes per event by
construction; its events/s is measured on the first `--naive-events` events (default 10,000)
because at about a thousand writes/s on the emulator the full run would take minutes.

The emulator is a JVM: its first seconds run several times slower than the rest. A warm-up on a
scratch database (both patterns, not reported) comes first, so no row pays for it.

Uses FIRESTORE_EMULATOR_HOST if set, else starts the emulator from the Google Cloud SDK. Each
row writes to a fresh named database. Targets: writes per event at the default flush interval
(1 s) <= the floor + 0.1; >= 10x the naive events/s.

With `--workers N` (N > 1) one more 1 s row runs N stores on clients of one database, as a
worker pool shares Firestore, with `--shards`' counter shards: each flush's events are dealt
among them at random (Pub/Sub gives any message to any subscriber) and committed at once from N
threads. The floor then counts each worker's share apart (a person whose events two workers
hold is written by both), and the commits' conflicts are printed (a document another worker
wrote since this one read it, a profile or a bucket it admits values into, fails the whole
commit, which is read, recomputed and sent again); `verify` runs on that row's database too.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event, dedupe_key, parse_message
from behavioral_analytics.loadgen import EVENT_TYPES

sys.path.insert(0, str(Path(__file__).resolve().parent))

import traffic
from firestore_storage import IndexConfig, IndexEntries, index_entries

if TYPE_CHECKING:
    from google.cloud import firestore

    from behavioral_analytics.stores.firestore import FirestoreStore


class ClientFor(Protocol):
    """A client of the emulator: on a fresh database, or (`same`) on the one made last."""

    def __call__(self, same: bool = False) -> firestore.Client: ...


PROJECT = "demo-bench"
# --indexes: the index configurations the stored documents' index entries are counted under;
# the first prices them.
INDEX_FILES = [Path(__file__).resolve().parent.parent / "firestore.indexes.json"]
MAX_FLUSH_EVENTS = 20_000
# The generator's top-level properties (loadgen.py), in the order --breakdown-properties takes.
PROPERTY_DIMENSIONS = ("query", "button_id", "product_id", "amount", "currency")
# Firestore Standard edition list prices, regional us-central1, US$, as quoted in docs/deploy.md
# on 2026-11-28 from https://cloud.google.com/firestore/pricing (not re-read by this run:
# override with --price-*): per 100,000 writes, reads, deletes; per GiB-month stored.
PRICES = {"write": 0.09, "read": 0.03, "delete": 0.01, "storage_gib_month": 0.15}
PRICES_SOURCE = "https://cloud.google.com/firestore/pricing (as quoted 2026-11-28)"


@dataclass
class Row:
    name: str
    events: int
    writes: int
    seconds: float
    staleness_avg_s: float | None = None
    staleness_max_s: float | None = None
    floor_writes: int | None = None
    written_bytes: int | None = None  # `WrittenBytes`: the commit requests' writes
    stored_bytes: int | None = None  # documents and index entries (`Stored.in_all`)

    @property
    def floor_per_event(self) -> float | None:
        return None if self.floor_writes is None else self.floor_writes / self.events

    @property
    def per_1000(self) -> float:
        return 1000 * self.writes / self.events

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_events(
    count: int, users: int, rate: float, seed: int = 7, identify: float = 0.0
) -> list[Event]:
    """`count` events in sessions of about 8 events, 0.5-10 s apart, arriving at `rate`/s; every
    user has a session (while there are events to spare), then sessions go to random users.
    A share `identify` of the users arrive anonymous: their first session starts with events
    carrying only an anonymous id, then an `identify` (both ids), then both ids."""
    rng = random.Random(seed)
    raw: list[tuple[float, int, str, int]] = []  # time, user, type, 0 anonymous / 1 identify
    span = count / rate
    first_sessions = rng.sample(range(users), users)
    anonymous = set(rng.sample(range(users), round(users * identify)))
    while len(raw) < count:
        first = bool(first_sessions)
        user = first_sessions.pop() if first_sessions else rng.randrange(users)
        at = rng.uniform(0, span)
        length = min(1 + int(rng.expovariate(1 / 7)), 40)
        sign_in = rng.randrange(length) if first and user in anonymous else -1
        for i in range(length):
            kind = 2 if i > sign_in else (1 if i == sign_in else 0)
            raw.append((at, user, "identify" if kind == 1 else rng.choice(EVENT_TYPES), kind))
            at += rng.uniform(0.5, 10)
    raw = sorted(raw[:count])
    base = 1_764_320_000.0
    events = []
    for n, (at, user, event_type, kind) in enumerate(raw):
        ts = base + at
        user_id = f"user_{user}" if kind else None
        anonymous_id = f"anon_{user}" if user in anonymous else None
        who = user_id or f"anonymous:{anonymous_id}"
        events.append(
            Event(
                key=dedupe_key(f"evt_{n}", who, event_type, ts),
                event_id=f"evt_{n}",
                user_id=user_id,
                anonymous_id=anonymous_id,
                event_type=event_type,
                timestamp=ts,
                session_id=f"sess_{user}_{int(at // 1800)}",
                properties={"page_url": f"/page/{n % 20}", "device_type": "mobile"},
                received_at=ts,
                who=who,
            )
        )
    return events


def generated_events(kind: str, args: argparse.Namespace) -> tuple[list[Event], str]:
    """The input `kind` as parsed events (received when they arrive) and its description."""
    if kind == "narrow":
        events = make_events(args.events, args.users, args.rate, identify=args.identify)
        return events, (
            f"narrow: {len(events):,} events in session-like bursts, arriving at {args.rate:g}/s "
            f"({args.identify:.0%} of users sign in during a visit), seed 7"
        )
    end = time.time() - 60.0
    if kind == "live":
        config = traffic.live_config(args.events, args.users, args.seed)
        arrivals = traffic.timed(config, end)
        description = "live traffic, arriving at the model's rate; "
    else:
        config = traffic.backfill_config(args.events, args.users, args.seed, args.days)
        pairs = traffic.timed(config, end)
        arrivals = [(end + i / args.rate, data) for i, (_, data) in enumerate(pairs)]
        description = f"backfill over {args.days:g} days, arriving at {args.rate:g}/s; "
    events = []
    for i, (received_at, data) in enumerate(arrivals):
        event = parse_message(data, message_id=f"m{i}", received_at=received_at)
        assert isinstance(event, Event), event
        events.append(event)
    return events, description + traffic.describe(config)


class WrittenBytes:
    """The bytes of the writes `db`'s successful commit requests carried: each `Write`
    message's serialized size (its document's fields, transforms, mask and precondition),
    counted once its commit returned (a request a conflict fails is not counted), whoever built
    it (the client library's batches, the adapter's own protobufs). Firestore bills writes by
    count, not size; this is the figure a packing of rows into blobs cannot hide, as the SQLite
    bench's bytes written. Made after anything that replaces the client's GAPIC client
    (`FirestoreStore` opens a channel of its own)."""

    def __init__(self, db: firestore.Client) -> None:
        self.total = 0
        self._adding = threading.Lock()  # the naive pattern commits from 10 threads
        api = db._firestore_api  # the client's GAPIC client, made once per client
        commit = api.commit

        def counted(*args: Any, request: Any = None, **kwargs: Any) -> Any:
            response = commit(*args, request=request, **kwargs)
            size = sum(_message(write).ByteSize() for write in _writes(request))
            with self._adding:
                self.total += size
            return response

        api.commit = counted  # every commit of this client


def _writes(request: Any) -> Sequence[Any]:
    """The writes of a commit request: a batch's dict or a wrapped `CommitRequest`."""
    writes: Sequence[Any] = (
        request["writes"] if isinstance(request, dict) else type(request).pb(request).writes
    )
    return writes


def _message(write: Any) -> Any:
    """`write` as a protobuf message: the library's proto-plus `Write` unwrapped."""
    return write if hasattr(write, "ByteSize") else type(write).pb(write)


def structural_floor(groups: list[list[Event]]) -> int:
    """One raw-event write per event plus one person write per distinct person per flush."""
    return sum(len(group) + len({e.user_id or e.who for e in group}) for group in groups)


def run_bare(client_for: ClientFor, events: list[Event], interval: float) -> Row:
    """The raw-event documents only, created in one batch per flush: no aggregates."""
    from behavioral_analytics.stores.firestore.documents import as_datetime, event_doc

    db = client_for()
    written = WrittenBytes(db)
    collection = db.collection("user_events")
    writes = 0
    started = time.perf_counter()
    for group in flush_groups(events, interval):
        now = time.time()
        for at in range(0, len(group), 500):
            batch = db.batch()
            for event in group[at : at + 500]:
                doc = event_doc(
                    event, event.who, now, as_datetime(now), as_datetime(now + 30 * 86400)
                )
                batch.create(collection.document(event.key), doc)
                writes += 1
            batch.commit()
    elapsed = time.perf_counter() - started
    return Row(
        f"bare raw-event create, flush {interval:g} s",
        len(events),
        writes,
        elapsed,
        written_bytes=written.total,
        stored_bytes=stored_figures(db, 0).in_all,
    )


def flush_groups(events: list[Event], interval: float) -> list[list[Event]]:
    """The events grouped by the flush interval their arrival falls in, each group capped at
    MAX_FLUSH_EVENTS, in order."""
    base = events[0].received_at
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(int((event.received_at - base) // interval), []).append(event)
    return [
        group[at : at + MAX_FLUSH_EVENTS]
        for index in sorted(groups)
        for group in (groups[index],)
        for at in range(0, len(group), MAX_FLUSH_EVENTS)
    ]


BEHAVIOR = True  # --no-behavior: the store without bots, sessions and funnels
FUNNEL = True  # --no-funnel: bots and sessions only (the default configuration: no funnel)
BREAKDOWNS: tuple[str, ...] | None = None  # None: the default dimensions; () none


@dataclass
class Stored:
    """What a row's database holds once its events are committed."""

    documents: int
    bytes: int
    largest_breakdown_bytes: int
    largest_breakdown: str
    breakdown_documents: int
    reads: int  # documents the commits read by batched gets (queries not counted)
    index: IndexEntries  # the documents' index entries (firestore_storage)
    index_by_collection: Counter[str]  # their bytes by collection
    other_indexes: list[tuple[Path, IndexEntries]]  # under --indexes' further files

    @property
    def in_all(self) -> int:
        """Bytes stored: the documents and their index entries."""
        return self.bytes + self.index.bytes


def stored_figures(db: firestore.Client, reads: int) -> Stored:
    """Every document of `db` sized by Firestore's storage-size rules, with its index
    entries under `INDEX_FILES`' first index configuration (`firestore_storage`), and under
    each further one apart."""
    from behavioral_analytics.stores.firestore.breakdown_layout import doc_size_bytes
    from behavioral_analytics.stores.firestore.schema import BREAKDOWNS, BUCKET_BREAKDOWNS_FIELD

    config, *others = [IndexConfig.load(path) for path in INDEX_FILES]
    index = IndexEntries()
    other_indexes = [(path, IndexEntries()) for path in INDEX_FILES[1:]]
    index_by_collection: Counter[str] = Counter()
    documents = total = largest = breakdowns = 0
    largest_name = "-"
    for collection in db.collections():
        for snap in collection.stream():
            data = snap.to_dict() or {}
            size = doc_size_bytes(snap.reference.path, data)
            entries = index_entries(snap.reference.path, data, config)
            index.add(entries)
            index_by_collection[collection.id] += entries.bytes
            for other, (_, counted) in zip(others, other_indexes, strict=True):
                counted.add(index_entries(snap.reference.path, data, other))
            documents += 1
            total += size
            if collection.id == BREAKDOWNS or BUCKET_BREAKDOWNS_FIELD in data:
                # A bucket holding its period's breakdowns counts as one (`breakdown_layout`).
                breakdowns += 1
                if size > largest:
                    largest, largest_name = size, snap.id
    return Stored(
        documents,
        total,
        largest,
        largest_name,
        breakdowns,
        reads,
        index,
        index_by_collection,
        other_indexes,
    )


def print_costs(row: Row, stored: Stored, prices: dict[str, float]) -> None:
    """Bytes per event and the price of a million events at `prices`."""
    per_event_bytes = stored.bytes / row.events
    index_per_event = stored.index.bytes / row.events
    million = 1_000_000 / row.events
    writes = row.writes * million * prices["write"] / 100_000
    reads = stored.reads * million * prices["read"] / 100_000
    deletes = 1_000_000 * prices["delete"] / 100_000  # each raw event's TTL delete
    stored_per_event = per_event_bytes + index_per_event
    by_collection = ", ".join(
        f"{name} {n / row.events:,.0f}" for name, n in stored.index_by_collection.most_common()
    )
    gib_month = 1_000_000 / 2**30 * prices["storage_gib_month"]  # per byte stored per event
    storage = stored_per_event * gib_month
    others = ""
    for path, counted in stored.other_indexes:
        their_storage = (per_event_bytes + counted.bytes / row.events) * gib_month
        others += (
            f"under {path}: {counted.entries / row.events:,.1f} index entries, "
            f"{counted.bytes / row.events:,.0f} bytes per event: storage ${their_storage:.3f}, "
            f"a million events ${writes + reads + deletes + their_storage:.2f}\n"
        )
    print(
        f"stored after {row.name}: {stored.documents:,} documents, {stored.bytes:,} bytes = "
        f"{per_event_bytes:,.0f} bytes per event (documents by Firestore's size rules); "
        f"{stored.breakdown_documents:,} breakdown documents, the "
        f"largest {stored.largest_breakdown_bytes:,} bytes ({stored.largest_breakdown})\n"
        f"index entries (under {INDEX_FILES[0]}, bench/firestore_storage.py): "
        f"{stored.index.entries / row.events:,.1f} per event "
        f"({stored.index.single / row.events:,.1f} single-field, "
        f"{stored.index.composite / row.events:,.1f} composite), "
        f"{index_per_event:,.0f} bytes per event ({by_collection}); "
        f"{stored_per_event:,.0f} bytes stored per event in all\n{others}"
        f"price of a million events at {PRICES_SOURCE}: writes ${writes:.2f} "
        f"(${prices['write']}/100k) + reads by the commits' gets ${reads:.2f} "
        f"(${prices['read']}/100k) + TTL deletes ${deletes:.2f} (${prices['delete']}/100k) "
        f"+ storage of documents and index entries ${storage:.3f} per month kept "
        f"(${prices['storage_gib_month']}/GiB-month) "
        f"= ${writes + reads + deletes + storage:.2f}",
        flush=True,
    )


MOVED = "user_events (moved by links)"


def written_kind(name: str, *, moved: bool = False) -> str:
    """The collection of a written document, with the kind of document for the two collections
    a commit writes several kinds to: aggregates (people, buckets) and breakdowns (counts,
    values); a raw event's write that changes some fields only (`moved`: its `person`, set
    again when an identity link moves it) is counted apart, as `MOVED`."""
    collection, _, document = name.split("/documents/")[1].partition("/")
    if collection == "user_events" and moved:
        return MOVED
    if collection == "analytics_aggregates":
        return f"{collection} ({'people' if document.startswith('user_') else 'buckets'})"
    if collection == "breakdowns":
        return f"{collection} ({'counts' if document.startswith('counts_') else 'values'})"
    return collection


def run_adapter(
    client_for: ClientFor,
    events: list[Event],
    interval: float,
    shards: int = 0,
    check: bool = False,
    prices: dict[str, float] | None = None,
    quiet: bool = False,
    workers: int = 1,
) -> Row:
    """The adapter on `events`, grouped by the flush `interval` (seconds), each group one
    commit; with `workers` > 1, that many stores on one database, each group's events dealt
    among them at random (as a subscription's messages are) and committed at once, one thread
    each. Prints the writes by collection and above the floor, the commits' conflicts and
    queries, and with `prices` what is stored and the price of a million events."""
    from behavioral_analytics.behavior import BehaviorRules
    from behavioral_analytics.breakdowns import BreakdownRules
    from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
    from behavioral_analytics.stores.firestore import FirestoreStore

    # The generator's purchase funnel: its steps are among the events' types.
    rules = BehaviorRules(funnels=parse_funnels(PURCHASE_FUNNEL) if FUNNEL else ())
    if BREAKDOWNS is not None:
        rules = replace(rules, breakdowns=BreakdownRules(BREAKDOWNS))
    db = client_for()
    stores = [
        FirestoreStore(
            client, clock=time.time, counter_shards=shards, rules=rules, behavior=BEHAVIOR
        )
        for client in (db, *(client_for(same=True) for _ in range(workers - 1)))
    ]
    # After the stores gave their clients channels of their own.
    written = [WrittenBytes(store.gateway.client) for store in stores]
    reads = 0
    by_collection: Counter[str] = Counter()
    adding = threading.Lock()  # the workers' commits run at once

    def count_calls(store: FirestoreStore) -> None:
        get, send = store.gateway.get, store.gateway.send

        def counted_get(names: Sequence[str], mask: Sequence[str]) -> dict[str, Any]:
            nonlocal reads
            with adding:
                reads += len(names)  # a batched get bills every document asked for, found or not
            return get(names, mask)

        def counted_send(writes: list[Any]) -> None:
            send(writes)  # a failed commit bills nothing: count after it lands
            with adding:
                for w in writes:
                    moved = bool(w.update_mask.field_paths)
                    by_collection[written_kind(w.update.name or w.delete, moved=moved)] += 1

        store.gateway.get = counted_get  # type: ignore[method-assign]  # reads counted as billed
        store.gateway.send = counted_send  # type: ignore[method-assign]  # writes counted by kind

    for store in stores:
        count_calls(store)
    base = events[0].received_at
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(int((event.received_at - base) // interval), []).append(event)
    staleness_sum = staleness_max = 0.0
    floor = 0
    dealing = random.Random(f"workers:{workers}")
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for index in sorted(groups):
            group = groups[index]
            for at in range(0, len(group), MAX_FLUSH_EVENTS):
                chunk = group[at : at + MAX_FLUSH_EVENTS]
                shares: list[list[Event]] = [[] for _ in stores]
                for event in chunk:
                    shares[dealing.randrange(workers) if workers > 1 else 0].append(event)
                floor += structural_floor([share for share in shares if share])
                commit_started = time.perf_counter()
                # The shares commit together; workers whose flush timers differ overlap less.
                list(
                    pool.map(
                        lambda worker, share: worker.commit(share) if share else None,
                        stores,
                        shares,
                    )
                )
                commit_s = time.perf_counter() - commit_started
                flushed_at = base + (index + 1) * interval
                for event in chunk:
                    stale = flushed_at - event.received_at + commit_s
                    staleness_sum += stale
                    staleness_max = max(staleness_max, stale)
    elapsed = time.perf_counter() - started
    store = stores[0]
    notes = (f", {shards} shards" if shards else "") + (
        f", {workers} workers" if workers > 1 else ""
    )
    stored = stored_figures(db, reads) if prices is not None else None
    if check:
        conflicts = sum(s.conflicts for s in stores)
        verify_exact(store, len(events), f"flush {interval:g} s{notes}", conflicts)
    flushes = len(flush_groups(events, interval))
    if not quiet:
        print(
            f"flush {interval:g} s: {flushes:,} flushes; writes per 1,000 events by collection: "
            + ", ".join(
                f"{c} {1000 * n / len(events):,.1f}" for c, n in sorted(by_collection.items())
            ),
            flush=True,
        )
        print(f"flush {interval:g} s: {above_floor(by_collection, floor, len(events))}", flush=True)
    if BEHAVIOR and not quiet:
        print(
            f"flush {interval:g} s: {sum(s.commits for s in stores):,} commits, "
            f"{sum(s.conflicts for s in stores)} conflicts, "
            f"{sum(s.behavior_queries for s in stores):,} raw-event queries (the rest read "
            f"profile digests), {sum(s.identity_queries for s in stores):,} for events a link "
            "moves",
            flush=True,
        )
    for each in stores:
        each.close()
    row = Row(
        f"this adapter, flush {interval:g} s{notes}",
        len(events),
        sum(s.write_ops for s in stores),
        elapsed,
        staleness_sum / len(events),
        staleness_max,
        floor,
        sum(w.total for w in written),
        None if stored is None else stored.in_all,
    )
    if stored is not None and prices is not None:
        print_costs(row, stored, prices)
    return row


def per_event(total: int | None, events: int) -> str:
    """`total` bytes per event for the table, or `-` where the row has no such figure."""
    return "-" if total is None else f"{total / events:,.0f}"


def stored_vs(row: Row, bare: Row) -> str:
    """The row's bytes stored per event as a multiple of the bare row's."""
    if row.stored_bytes is None or not bare.stored_bytes:
        return "-"
    return f"{(row.stored_bytes / row.events) / (bare.stored_bytes / bare.events):.2f}x"


def above_floor(by_collection: Counter[str], floor: int, events: int) -> str:
    """The writes per event above the structural floor, by where they go: the raw-event
    creates beyond one per event, the person documents beyond one per distinct person per flush
    (an anonymous visitor's document a sign-in moves is one of them), and every other write."""
    above = Counter(by_collection)
    above["user_events"] -= events
    above["analytics_aggregates (people)"] -= floor - events
    total = sum(above.values())
    parts = ", ".join(f"{kind} {n / events:+.3f}" for kind, n in above.most_common() if n != 0)
    return f"above the floor: {total / events:+.3f} writes per event ({parts})"


def verify_exact(
    store: FirestoreStore, expected_events: int, row: str = "flush 1 s", conflicts: int = 0
) -> None:
    """`verify` (recount from the raw events) on `row`'s database, which must hold
    `expected_events` raw events; exits with the report on drift, else prints a line with the
    row's commits' `conflicts`."""
    from behavioral_analytics.verification import verify

    report = verify(store, Periods(), now=time.time(), retention_s=None)
    if not report.ok or report.raw_events != expected_events:
        sys.exit(f"error: verify found drift: {report.to_dict()}")
    print(
        f"verify after the {row} row: ok ({report.raw_events:,} raw events, "
        f"{report.buckets_checked:,} buckets, {report.profiles_checked:,} profiles, "
        f"{conflicts} conflicts)",
        flush=True,
    )


def run_naive(client_for: ClientFor, events: list[Event], threads: int = 10) -> Row:
    from google.cloud import firestore

    db = client_for()
    written = WrittenBytes(db)
    periods = Periods()

    def one(event: Event) -> int:
        _, hour, day = periods.of(event.timestamp)
        db.collection("user_events").document(event.key).set(
            {
                "event_id": event.event_id,
                "user_id": event.user_id,
                "event_type": event.event_type,
                "timestamp": event.timestamp,
                "session_id": event.session_id,
                "properties": event.properties,
            }
        )
        aggregates = db.collection("analytics_aggregates")
        increment = {"total_events": firestore.Increment(1)}
        by_type = {"events_by_type": {event.event_type: firestore.Increment(1)}}
        aggregates.document(f"user_{event.who}").set(
            {**increment, **by_type, "last_activity": event.timestamp}, merge=True
        )
        aggregates.document(f"hourly_{hour}").set({**increment, **by_type}, merge=True)
        aggregates.document(f"daily_{day}").set({**increment, **by_type}, merge=True)
        return 4

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        writes = sum(pool.map(one, events))
    elapsed = time.perf_counter() - started
    return Row(
        f"naive per event, {threads} threads",
        len(events),
        writes,
        elapsed,
        written_bytes=written.total,
    )


def warm_up(client_for: ClientFor, count: int) -> None:
    """Run both patterns once on other events, unreported, so the emulator's JIT is warm."""
    if count <= 0:
        return
    events = make_events(count, max(1, count // 10), 1000.0, seed=1)
    started = time.perf_counter()
    run_naive(client_for, events[: count // 10])
    run_adapter(client_for, events, 1.0, quiet=True)
    print(f"warm-up: {time.perf_counter() - started:.0f} s", flush=True)


def wipe(database: str) -> None:
    url = (
        f"http://{os.environ['FIRESTORE_EMULATOR_HOST']}/emulator/v1/projects/{PROJECT}"
        f"/databases/{database}/documents"
    )
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=120).read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator() -> subprocess.Popen[bytes] | None:
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return None
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        sys.exit("error: no FIRESTORE_EMULATOR_HOST and no gcloud to start the emulator")
    sdk = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    binary = Path(sdk) / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    if not binary.exists():
        sys.exit(f"error: Firestore emulator not found at {binary}")
    host = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        [str(binary), "start", "--host=127.0.0.1", f"--port={host.split(':')[1]}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}/", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("error: the Firestore emulator did not start")
            time.sleep(0.25)
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    return process


def intervals(text: str) -> list[float]:
    """An argparse `type`: flush intervals in seconds, comma-separated, each above 0."""
    return [traffic.positive_float(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    count, span = traffic.positive_int, traffic.positive_float
    parser.add_argument("--input", choices=traffic.INPUTS, default="live", help="the traffic")
    traffic.add_generator_arguments(parser)
    parser.add_argument("--events", type=count, default=100_000, help="events of every row")
    parser.add_argument("--users", type=count, default=10_000, help="people")
    parser.add_argument(
        "--rate",
        type=span,
        default=1000.0,
        help="arrivals per second (narrow and backfill; live arrives at the model's rate)",
    )
    parser.add_argument(
        "--naive-events",
        type=count,
        default=10_000,
        help="the naive row runs on the first this many",
    )
    parser.add_argument(
        "--intervals", type=intervals, default="1,5,15", help="flush intervals, seconds"
    )
    parser.add_argument(
        "--shards",
        type=traffic.count_or_none,
        default=4,
        help="counter shards for an extra 1 s row (0: none)",
    )
    parser.add_argument(
        "--workers",
        type=traffic.positive_int,
        default=1,
        help="with more than 1: an extra 1 s row with that many stores sharing the database "
        "(with --shards' counter shards), each flush's events dealt among them at random and "
        "committed at once",
    )
    parser.add_argument(
        "--warmup-events",
        type=traffic.count_or_none,
        default=20_000,
        help="the warm-up's events (0: none)",
    )
    parser.add_argument(
        "--identify",
        type=traffic.share,
        default=0.0,
        help="share of users who arrive anonymous and sign in during their first session "
        f"(narrow only; live and backfill sign in {traffic.IDENTIFY_SHARE:.0%}% of the people)",
    )
    parser.add_argument(
        "--behavior",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the behavioral read model (bots, sessions, the purchase funnel) on the adapter",
    )
    parser.add_argument(
        "--funnel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with the behavioral model: maintain the purchase funnel too (BA_FUNNELS)",
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run `verify` on the 1 s row's database (minutes at full size)",
    )
    parser.add_argument(
        "--breakdowns",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with the behavioral model: breakdowns by the default dimensions",
    )
    parser.add_argument(
        "--breakdown-properties",
        type=int,
        default=0,
        choices=range(len(PROPERTY_DIMENSIONS) + 1),
        help=f"property dimensions added, in the order {', '.join(PROPERTY_DIMENSIONS)}",
    )
    parser.add_argument(
        "--indexes",
        type=Path,
        action="append",
        help="an index configuration (firestore.indexes.json's format) to count the stored "
        "documents' index entries under; repeated: the first prices them, the others are "
        "printed beside (default: the repository's)",
    )
    for name, price in PRICES.items():
        parser.add_argument(f"--price-{name.replace('_', '-')}", type=float, default=price)
    args = parser.parse_args()
    global BEHAVIOR, FUNNEL, BREAKDOWNS
    BEHAVIOR = args.behavior
    FUNNEL = args.funnel
    if not args.breakdowns:
        BREAKDOWNS = ()
    elif args.breakdown_properties:
        from behavioral_analytics.dimensions import DIMENSIONS, PROPERTY_PREFIX

        chosen = PROPERTY_DIMENSIONS[: args.breakdown_properties]
        BREAKDOWNS = DIMENSIONS + tuple(PROPERTY_PREFIX + name for name in chosen)
    prices = {name: getattr(args, f"price_{name}") for name in PRICES}
    if args.indexes:
        INDEX_FILES[:] = args.indexes

    emulator = start_emulator()
    from google.cloud import firestore

    databases: list[str] = []

    def client_for(same: bool = False) -> firestore.Client:
        if not same:
            databases.append(f"bench-{uuid.uuid4().hex[:8]}")
        return firestore.Client(project=PROJECT, database=databases[-1])

    def wiped(row: Row) -> Row:
        """Empty the row's databases so the emulator's heap does not grow from row to row."""
        while databases:
            wipe(databases.pop())
        return row

    try:
        events, description = generated_events(args.input, args)
        users = len({e.user_id or e.who for e in events})
        print(
            f"{description}\n{len(events):,} events from {users:,} people; "
            f"behavioral read model {'on' if BEHAVIOR else 'off'}; breakdowns: "
            f"{'default dimensions' if BREAKDOWNS is None else ', '.join(BREAKDOWNS) or 'none'}; "
            f"Firestore emulator at {os.environ['FIRESTORE_EMULATOR_HOST']}",
            flush=True,
        )
        warm_up(client_for, args.warmup_events)
        wiped(Row("warm-up", 1, 0, 1.0))
        rows = [wiped(run_naive(client_for, events[: args.naive_events]))]
        bare = wiped(run_bare(client_for, events, 1.0))
        rows.append(bare)
        for n, interval in enumerate(args.intervals):
            check = args.verify and interval == 1
            measured = prices if n == 0 else None
            rows.append(
                wiped(run_adapter(client_for, events, interval, check=check, prices=measured))
            )
        if args.shards:
            rows.append(wiped(run_adapter(client_for, events, 1.0, args.shards)))
        if args.workers > 1:
            rows.append(
                wiped(
                    run_adapter(
                        client_for,
                        events,
                        1.0,
                        args.shards,
                        check=args.verify,
                        workers=args.workers,
                    )
                )
            )
        naive = rows[0]
        width = max(40, *(len(row.name) for row in rows))
        print()
        header = (
            f"{'variant':{width}} {'events':>8} {'writes/ev':>10} {'floor/ev':>9} {'events/s':>9} "
            f"{'vs bare':>8} {'vs naive':>9} {'staleness avg/max s':>20} {'written B/ev':>13} "
            f"{'stored B/ev':>12} {'stored vs bare':>14}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            stale = (
                f"{row.staleness_avg_s:.1f} / {row.staleness_max_s:.1f}"
                if row.staleness_avg_s is not None
                else ("~0 / per event" if row is naive else "-")
            )
            floor = f"{row.floor_per_event:.2f}" if row.floor_per_event is not None else "-"
            print(
                f"{row.name:{width}} {row.events:>8,} {row.writes / row.events:>10.2f} {floor:>9} "
                f"{row.rate:>9,.0f} {row.rate / bare.rate:>8.0%} {row.rate / naive.rate:>8.1f}x "
                f"{stale:>20} {per_event(row.written_bytes, row.events):>13} "
                f"{per_event(row.stored_bytes, row.events):>12} {stored_vs(row, bare):>14}"
            )
        rss_mib = traffic.rss_bytes("VmHWM") / 2**20
        print(f"\npeak RSS of the bench process (client side): {rss_mib:.0f} MiB")
    finally:
        if emulator is not None:
            os.killpg(emulator.pid, signal.SIGTERM)
            emulator.wait(timeout=20)


if __name__ == "__main__":
    main()
