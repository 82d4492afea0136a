"""Firestore writes per 1,000 events and events/s: this adapter beside the recipe's per-event
pattern, on the same events, against Google's Firestore emulator, in one run.

    python bench/firestore_writes.py [--events 100000] [--users 10000] [--rate 1000]
                                     [--naive-events 10000] [--shards 4] [--no-behavior]
                                     [--identify 0.3]

The adapter runs with the behavioral read model (bots, sessions and the generator's purchase
funnel, maintained exactly in the same commits) unless `--no-behavior`.

Events come from `--users` users in session-like bursts (a session is a handful of events a few
seconds apart) and arrive at `--rate` events/s of simulated time. For each flush interval (1, 5
and 15 s) the events are grouped by the interval their arrival falls in and each group is one
`FirestoreStore.commit` (flush size cap: 20,000, the largest BA_FLUSH_MAX_EVENTS), so a longer
interval folds more events into each aggregate write. Writes are counted in the adapter
(`store.write_ops`: the document writes of successful commits, which is what Firestore bills).
Staleness = how long after arrival an event shows in the aggregates: waiting for its flush
(half the interval on average) plus the commit. Events/s = events / wall time of the commits,
back to back: one store, one thread (one worker that never waits for messages), each commit
reading what it needs (one `get_all` of the profiles it does not know yet) and writing one
atomic commit. With `--shards N` one more row runs the 1 s flush with N counter shards.

The naive pattern (the recipe's): per event one set() of the raw event plus three merge writes
with Increment (user, hourly, daily documents), ten threads. It makes 4 writes per event by
construction; its events/s is measured on the first `--naive-events` events (default 10,000)
because at about a thousand writes/s on the emulator the full run would take minutes.

The emulator is a JVM: its first seconds run several times slower than the rest. A warm-up on a
scratch database (both patterns, not reported) comes first, so no row pays for it.

Uses FIRESTORE_EMULATOR_HOST if set, else starts the emulator from the Google Cloud SDK. Each
row writes to a fresh named database. Targets: <= 2,000 writes per 1,000 events at the default
flush interval (1 s); >= 10x the naive events/s.
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
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event, dedupe_key
from behavioral_analytics.loadgen import EVENT_TYPES

PROJECT = "demo-bench"
MAX_FLUSH_EVENTS = 20_000


@dataclass
class Row:
    name: str
    events: int
    writes: int
    seconds: float
    staleness_avg_s: float | None = None
    staleness_max_s: float | None = None

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


BEHAVIOR = True  # --no-behavior: the store without bots, sessions and funnels
FUNNEL = True  # --no-funnel: bots and sessions only (the default configuration: no funnel)


def run_adapter(
    client_for, events: list[Event], interval: float, shards: int = 0, check: bool = False
) -> Row:
    from behavioral_analytics.behavior import BehaviorRules
    from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
    from behavioral_analytics.stores.firestore import FirestoreStore

    store = FirestoreStore(
        client_for(),
        clock=time.time,
        counter_shards=shards,
        # The generator's purchase funnel: its steps are among the events' types.
        rules=BehaviorRules(funnels=parse_funnels(PURCHASE_FUNNEL) if FUNNEL else ()),
        behavior=BEHAVIOR,
    )
    base = events[0].received_at
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(int((event.received_at - base) // interval), []).append(event)
    staleness_sum = staleness_max = 0.0
    started = time.perf_counter()
    for index in sorted(groups):
        group = groups[index]
        for at in range(0, len(group), MAX_FLUSH_EVENTS):
            chunk = group[at : at + MAX_FLUSH_EVENTS]
            commit_started = time.perf_counter()
            store.commit(chunk)
            commit_s = time.perf_counter() - commit_started
            flushed_at = base + (index + 1) * interval
            for event in chunk:
                stale = flushed_at - event.received_at + commit_s
                staleness_sum += stale
                staleness_max = max(staleness_max, stale)
    elapsed = time.perf_counter() - started
    if check:
        verify_exact(store, len(events))
    if BEHAVIOR:
        print(
            f"flush {interval:g} s: {store.commits:,} commits, {store.conflicts} conflicts, "
            f"{store.behavior_queries:,} raw-event queries (the rest read profile digests), "
            f"{store.identity_queries:,} for events a link moves",
            flush=True,
        )
    store.close()
    shards_note = f", {shards} shards" if shards else ""
    return Row(
        f"this adapter, flush {interval:g} s{shards_note}",
        len(events),
        store.write_ops,
        elapsed,
        staleness_sum / len(events),
        staleness_max,
    )


def verify_exact(store, expected_events: int) -> None:
    """`verify` (recount from the raw events) and the unique users against the events."""
    from behavioral_analytics.verification import verify

    report = verify(store, Periods(), now=time.time(), retention_s=None)
    if not report.ok or report.raw_events != expected_events:
        sys.exit(f"error: verify found drift: {report.to_dict()}")
    print(
        f"verify after the flush 1 s row: ok ({report.raw_events:,} raw events, "
        f"{report.buckets_checked:,} buckets, {report.profiles_checked:,} profiles, "
        f"{store.conflicts} conflicts)",
        flush=True,
    )


def run_naive(client_for, events: list[Event], threads: int = 10) -> Row:
    from google.cloud import firestore

    db = client_for()
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
    return Row(f"naive per event, {threads} threads", len(events), writes, elapsed)


def warm_up(client_for, count: int) -> None:
    """Run both patterns once on other events, unreported, so the emulator's JIT is warm."""
    if count <= 0:
        return
    events = make_events(count, max(1, count // 10), 1000.0, seed=1)
    started = time.perf_counter()
    run_naive(client_for, events[: count // 10])
    run_adapter(client_for, events, 1.0)
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
        return sock.getsockname()[1]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="arrivals per second")
    parser.add_argument("--naive-events", type=int, default=10_000)
    parser.add_argument("--intervals", default="1,5,15", help="flush intervals, seconds")
    parser.add_argument(
        "--shards", type=int, default=4, help="counter shards for an extra 1 s row (0: none)"
    )
    parser.add_argument("--warmup-events", type=int, default=20_000)
    parser.add_argument(
        "--identify",
        type=float,
        default=0.0,
        help="share of users who arrive anonymous and sign in during their first session",
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
    args = parser.parse_args()
    global BEHAVIOR, FUNNEL
    BEHAVIOR = args.behavior
    FUNNEL = args.funnel

    emulator = start_emulator()
    from google.cloud import firestore

    databases: list[str] = []

    def client_for():
        databases.append(f"bench-{uuid.uuid4().hex[:8]}")
        return firestore.Client(project=PROJECT, database=databases[-1])

    def wiped(row: Row) -> Row:
        """Empty the row's databases so the emulator's heap does not grow from row to row."""
        while databases:
            wipe(databases.pop())
        return row

    try:
        events = make_events(args.events, args.users, args.rate, identify=args.identify)
        users = len({e.who for e in events})
        print(
            f"{len(events):,} events from {users:,} users in sessions, arriving at "
            f"{args.rate:g}/s ({args.identify:.0%} of users sign in during a visit); "
            f"behavioral read model {'on' if BEHAVIOR else 'off'}; "
            f"Firestore emulator at {os.environ['FIRESTORE_EMULATOR_HOST']}",
            flush=True,
        )
        warm_up(client_for, args.warmup_events)
        wiped(Row("warm-up", 1, 0, 1.0))
        rows = [wiped(run_naive(client_for, events[: args.naive_events]))]
        for interval in (float(x) for x in args.intervals.split(",")):
            check = args.verify and interval == 1
            rows.append(wiped(run_adapter(client_for, events, interval, check=check)))
        if args.shards:
            rows.append(wiped(run_adapter(client_for, events, 1.0, args.shards)))
        naive = rows[0]
        print()
        header = (
            f"{'variant':34} {'events':>8} {'writes/1000 ev':>15} {'events/s':>10} "
            f"{'vs naive':>9} {'staleness avg/max s':>20}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            stale = (
                f"{row.staleness_avg_s:.1f} / {row.staleness_max_s:.1f}"
                if row.staleness_avg_s is not None
                else "~0 / per event"
            )
            print(
                f"{row.name:34} {row.events:>8,} {row.per_1000:>15,.0f} {row.rate:>10,.0f} "
                f"{row.rate / naive.rate:>8.1f}x {stale:>20}"
            )
    finally:
        if emulator is not None:
            os.killpg(emulator.pid, signal.SIGTERM)
            emulator.wait(timeout=20)


if __name__ == "__main__":
    main()
