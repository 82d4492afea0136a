"""Pipeline throughput on the embedded default, on realistic traffic, in one run.

Variants, on the same events:

  (a) this worker, one process, end to end: pull → parse → fold → one commit per batch → ack
      (publishing is done beforehand and not timed), with the shipped defaults: sessions,
      identity, bot flags, the breakdowns of every fixed dimension unless
      BA_BREAKDOWN_DIMENSIONS names fewer, and the generator's purchase funnel unless BA_FUNNELS
      says otherwise (both printed first);
  (a2) the same worker in two processes sharing the broker and the store, as `up` starts it
      (`--workers 2`): commits take turns on SQLite's write lock (`BEGIN IMMEDIATE`) while the
      other process pulls, parses and folds; peak RSS is the two processes' sum;
  (b) the recipe's pattern on the same SQLite store: per event one raw insert, three aggregate
      upserts (user, hour, day) and one commit; pulled and acked in the same batches as (a);
  (c) the bare insert: parse the same events and insert them, in large transactions, into a
      table with the store's raw-event schema, indexes and SQLite settings — nothing else;
  (p) the local broker alone: pull and ack every message, to separate its writes from (a)'s.

Inputs (rows), from the project's generator (bench/traffic.py): `live` (the default: 20,000
people in sessions, in time order at the model's rate, 5 % late by up to an hour and 1 % by up
to 3 days), `backfill` (the same model over `--days` days, ingested at once) and `narrow` (the
earlier input: 1,000 users' random events in two hours). `--input all` runs the three.

Per variant: events/s, the ratio to (c) in the same run, store row writes per event (SQLite's
`total_changes`), bytes written per event (the process's `wchar` from /proc/self/io over the
timed part: WAL, checkpoints and, for (a) and (b), the broker's acks — (p) shows those), bytes
stored per event (the database file after a checkpoint) beside the bare table's, and peak RSS.
Each variant runs in its own process on a fresh data directory; with `--rounds N` the variants
are interleaved and the fastest of each is shown. `--baseline DIR` adds (a) and (a2) run by the
package of another checkout of the project at DIR (its `src` first on the path; this script's
harness), interleaved with the rest: before and after a change in one run, on the same machine
moment.
`--flush-max-events N` runs (a) and (a2) with `BA_FLUSH_MAX_EVENTS=N`; with `--baseline .` beside
the same code at the configured batch size.
Beside events/s, each variant's events per CPU-second (user and system time of all its threads)
and its ratio to (c)'s: on a machine shared with other work the wall-clock rates follow the
load, the CPU cost much less.
Under the table, for (a) and (a2), the share of the run during which the store's write lock was
held by a commit (from `BEGIN IMMEDIATE` granted to `COMMIT` done, summed over both processes
for (a2)): what the write lock leaves to a second process. Then, for (a) and (a2), the CPU
seconds by stage (bench/stages.py: pull + ack, parse + enrich, raw insert, the derivation,
COMMIT) and the ratio to (c) by CPU the worker would reach if the derivation (identity, the
fold, breakdowns, sessions, funnels, with their reads and writes) cost nothing: the ceiling for
any work on the derivation alone.

    .venv/bin/python bench/pipeline.py [--input live|backfill|narrow|all] [--events 100000]
        [--users 20000] [--seed 17] [--days 6] [--rounds 1] [--baseline DIR]
        [--flush-max-events N]
    .venv/bin/python bench/pipeline.py --grow [--grow-to 2000000] [--grow-steps 10]
        [--grow-control 20000] [--grow-slices 10] [--max-seconds 3600]

`--grow` ingests live traffic into one store in steps up to `--grow-to` events and prints, per
step, the worker's rate and the median latency of the queries a dashboard makes (a profile, the
hourly series, the hourly session series, the purchase funnel), and the rate of (c)'s bare insert
grown beside it in a table of its own, each step's events inserted right after the worker's: the
raw table's own slowdown, the floor under the worker's, at the same machine moment. After each
step a control runs: the first step's first `--grow-control` events into a fresh store by a
fresh worker (the "control" columns), and into a fresh bare table: what the machine gives an
empty store at that moment (on a shared machine the same events' rate, even per CPU-second,
moves by up to half within a run). Each step's worker is a new one: it checks every page of
the store's files before the timer starts, as a worker does once when it starts, so a step
times what a worker that has run all along does. Then, per step, the tables and indexes the
step's last commit wrote pages of (`wal_pages`); the controls' own drift (the control after
the last step against the control after the first); and the last step against the first by
events/s and by CPU, as measured and divided by the control run beside each, for the worker
and for the bare insert. The grown store does not always move with the control
(docs/benchmarks.md, "Growth"), so the division is printed beside the measured ratio, not
instead of it. It stops after the step that passes `--max-seconds`. A line warns first if a
step or the control is not a whole number of the worker's batches (BA_FLUSH_MAX_EVENTS): its
last batch would wait out the flush interval.

Last, the first and the last step side by side: the first step's events again into a fresh
store, and as many new events into the grown store, in `--grow-slices` slices taken in turn
(fresh, grown; then grown, fresh; …), the same for the bare tables: both steps' rates from the
same minutes of the machine, the drift that the sequential steps and the controls only show
taken out by the pairing (each slice but the last a whole number of batches: another number
of slices than `--grow-slices`, and a line saying so, where the step's batches do not divide
so). The grown store ends one step past `--grow-to`; the process holds the first step's
messages to the end. The script prints figures; it asserts only that every event was stored,
and prints whether `verify` (a recount from the raw events) agrees with (a)'s and the grown
store.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as ProcessEvent
from multiprocessing.synchronize import Semaphore
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stages
import traffic
from wal_pages import LogPeak, last_commit_pages, pages_line

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.settings import load_settings
from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite import EVENTS_SCHEMA, INSERT_EVENT, SQLiteStore
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import worker_options
from behavioral_analytics.worker import Worker

Result = dict[str, float]


def written_bytes() -> int:
    """Bytes this process has passed to write(2)/pwrite(2) so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def cpu_seconds() -> float:
    """CPU seconds (user and system, every thread) this process has used so far: what the work
    costs whatever else the machine runs, where wall-clock rates follow the load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's own peak RSS (`VmHWM`; `getrusage`'s would be the driver's, inherited)."""
    return traffic.rss_bytes("VmHWM") / 2**20


def stored_bytes(path: Path) -> int:
    """The database file's size after a full checkpoint (WAL folded in and truncated)."""
    db = connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


def publish_all(data_dir: Path, lines: list[bytes] | Iterator[bytes]) -> LocalBroker:
    broker = LocalBroker(data_dir / "broker.db")
    batch: list[OutgoingMessage] = []
    for line in lines:
        batch.append(OutgoingMessage(line))
        if len(batch) == 5000:
            broker.publish(batch)
            batch = []
    if batch:
        broker.publish(batch)
    return broker


def store_writes(store: SQLiteStore) -> int:
    return store._db.total_changes  # rows inserted, updated or deleted on this connection


def shipped_worker(broker: LocalBroker, store: SQLiteStore) -> Worker:
    """The worker with the settings' defaults (flush sizes, limits, behavioral rules)."""
    options = worker_options(load_settings(), idle_after_s=0.0, drain_dead_letters=False)
    return Worker(broker, store, options=options)


def shipped_store(path: Path) -> SQLiteStore:
    return SQLiteStore(path, rules=load_settings().behavior_rules())


def run_worker(data_dir: Path, lines: list[bytes]) -> Result:
    broker = publish_all(data_dir, lines)
    store = shipped_store(data_dir / "store.db")
    worker = shipped_worker(broker, store)
    timings = stages.Timings()
    timings.attach(broker, worker, store)
    wrote = written_bytes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    with LogPeak(data_dir / "store.db") as log_peak:
        worker.run(threading.Event(), until_idle=True)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu  # before verify's
    wrote = written_bytes() - wrote
    assert store.count_events() == len(lines), "not every event was stored"
    writes = store_writes(store)
    peak_mib = peak_rss_mib()  # before verify's
    exact = verify(store, store.periods, now=time.time(), retention_s=None).ok
    store.close()
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        **timings.as_result(),
        "peak_rss_mib": peak_mib,
        "verify_ok": float(exact),
        "store_writes": writes,
        "written_bytes": wrote,
        "stored_bytes": stored_bytes(data_dir / "store.db"),
        "log_peak_bytes": log_peak.bytes,
    }


def _worker_process(
    data_dir: Path, ready: Semaphore, go: ProcessEvent, results: multiprocessing.Queue[Result]
) -> None:
    """One of (a2)'s processes: the shipped worker on the shared broker and store, from `go`
    until idle (imports and set-up before `ready`, untimed, as for (a)); its CPU seconds, row
    writes and written bytes go back through `results`."""
    broker = LocalBroker(data_dir / "broker.db")
    store = shipped_store(data_dir / "store.db")
    worker = shipped_worker(broker, store)
    timings = stages.Timings()
    timings.attach(broker, worker, store)
    ready.release()
    go.wait()
    wrote, cpu = written_bytes(), cpu_seconds()
    worker.run(threading.Event(), until_idle=True)
    results.put(
        {
            "cpu_seconds": cpu_seconds() - cpu,
            **timings.as_result(),
            "store_writes": store_writes(store),
            "written_bytes": written_bytes() - wrote,
            "peak_rss_mib": peak_rss_mib(),
        }
    )
    store.close()
    broker.close()


def run_workers(data_dir: Path, lines: list[bytes], processes: int = 2) -> Result:
    """(a2): `processes` worker processes on one broker and one store, as `up` runs them
    (`--workers 2`); timed from when every one is set up until the last one is idle."""
    publish_all(data_dir, lines).close()
    shipped_store(data_dir / "store.db").close()  # the schema, before the workers race for it
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[Result] = context.Queue()
    ready, go = context.Semaphore(0), context.Event()
    children = [
        context.Process(target=_worker_process, args=(data_dir, ready, go, results))
        for _ in range(processes)
    ]
    for process in children:
        process.start()
    for _ in children:
        if not ready.acquire(timeout=600) or not all(p.is_alive() for p in children):
            for process in children:
                process.kill()
            raise RuntimeError("a worker process of (a2) did not start: see its traceback above")
    started = time.perf_counter()
    with LogPeak(data_dir / "store.db") as log_peak:
        go.set()
        parts = [results.get(timeout=3600) for _ in children]
    elapsed = time.perf_counter() - started
    for process in children:
        process.join()
    store = shipped_store(data_dir / "store.db")
    assert store.count_events() == len(lines), "not every event was stored"
    exact = verify(store, store.periods, now=time.time(), retention_s=None).ok
    store.close()
    return {
        "seconds": elapsed,
        "cpu_seconds": sum(part["cpu_seconds"] for part in parts),
        **stages.summed(parts),
        "peak_rss_mib": sum(part["peak_rss_mib"] for part in parts),
        "verify_ok": float(exact),
        "store_writes": sum(part["store_writes"] for part in parts),
        "written_bytes": sum(part["written_bytes"] for part in parts),
        "stored_bytes": stored_bytes(data_dir / "store.db"),
        "log_peak_bytes": log_peak.bytes,
    }


_NAIVE_USER = """
INSERT INTO persons VALUES (?, 1, ?, ?, ?, '{}') ON CONFLICT (who) DO UPDATE SET
  total_events = total_events + 1, last_activity = max(last_activity, excluded.last_activity),
  last_updated = excluded.last_updated
"""
_NAIVE_BUCKET = """
INSERT INTO buckets VALUES (?, ?, 1, 0, ?) ON CONFLICT (granularity, period) DO UPDATE SET
  total_events = total_events + 1, last_updated = excluded.last_updated
"""


def run_naive(data_dir: Path, lines: list[bytes]) -> Result:
    broker = publish_all(data_dir, lines)
    store = SQLiteStore(data_dir / "store.db")
    db = store._db
    periods = store.periods
    wrote = written_bytes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    while deliveries := broker.pull(1000, 0):
        for delivery in deliveries:
            event = parse_message(
                delivery.data, message_id=delivery.message_id, received_at=delivery.publish_time
            )
            assert isinstance(event, Event)
            now = time.time()
            _, hour, day = periods.of(event.timestamp)
            with transaction(db):
                db.execute(INSERT_EVENT, _row(event, now))
                db.execute(_NAIVE_USER, (event.who, event.timestamp, event.timestamp, now))
                db.execute(_NAIVE_BUCKET, ("hour", hour, now))
                db.execute(_NAIVE_BUCKET, ("day", day, now))
        broker.ack([d.ack_id for d in deliveries])
    elapsed = time.perf_counter() - started
    wrote = written_bytes() - wrote
    writes = store_writes(store)
    store.close()
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu_seconds() - cpu,
        "store_writes": writes,
        "written_bytes": wrote,
        "stored_bytes": stored_bytes(data_dir / "store.db"),
    }


def insert_bare(db: sqlite3.Connection, lines: list[bytes], first_id: int = 0) -> None:
    """(c)'s work: parse `lines` (message ids from `first_id` on) and insert them into the bare
    table on `db`, 10,000 to a transaction."""
    for start in range(0, len(lines), 10_000):
        now = time.time()
        rows = []
        for i, line in enumerate(lines[start : start + 10_000]):
            event = parse_message(line, message_id=str(first_id + start + i), received_at=now)
            assert isinstance(event, Event)
            rows.append(_row(event, now))
        with transaction(db):
            db.executemany(INSERT_EVENT, rows)


def run_bare(data_dir: Path, lines: list[bytes]) -> Result:
    db = bare_table(data_dir / "bare.db")
    wrote = written_bytes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    insert_bare(db, lines)
    elapsed = time.perf_counter() - started
    wrote = written_bytes() - wrote
    writes = db.total_changes
    db.close()
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu_seconds() - cpu,
        "store_writes": writes,
        "written_bytes": wrote,
        "stored_bytes": stored_bytes(data_dir / "bare.db"),
    }


def run_broker_only(data_dir: Path, lines: list[bytes]) -> Result:
    broker = publish_all(data_dir, lines)
    wrote = written_bytes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    while deliveries := broker.pull(1000, 0):
        broker.ack([d.ack_id for d in deliveries])
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu_seconds() - cpu,
        "store_writes": 0,
        "written_bytes": written_bytes() - wrote,
        "stored_bytes": 0,
    }


def _row(event: Event, now: float) -> tuple[object, ...]:
    return (
        event.key,
        event.event_id,
        event.user_id,
        event.anonymous_id,
        event.who,
        event.event_type,
        event.timestamp,
        event.session_id,
        json.dumps(event.properties),
        event.received_at,
        now,
        now + 30 * 86400,
        event.who,
        0,
    )


VARIANTS: dict[str, tuple[str, Callable[[Path, list[bytes]], Result]]] = {
    "a": ("(a) this worker, 1 process", run_worker),
    "2": ("(a2) 2 worker processes, as up", run_workers),
    "b": ("(b) naive per-event commits", run_naive),
    "c": ("(c) bare parse + bulk insert", run_bare),
    "p": ("(p) local broker pull + ack", run_broker_only),
}


def child(variant: str, input_path: Path) -> None:
    lines = input_path.read_bytes().splitlines()
    with tempfile.TemporaryDirectory() as tmp:
        result = VARIANTS[variant][1](Path(tmp), lines)
    result.setdefault("peak_rss_mib", peak_rss_mib())
    print(json.dumps(result))


# The baseline's variants: (a) and (a2) run by the other checkout's package.
_RUNS_AS = {"a0": "a", "20": "2"}


_WORKER_VARIANTS = (
    ("a0", "(a) at the baseline"),
    ("a", "(a)"),
    ("20", "(a2) at the baseline"),
    ("2", "(a2)"),
)


def compare(kind: str, args: argparse.Namespace, tmp: Path) -> None:
    """One row group: every variant on input `kind`, interleaved over the rounds."""
    print(traffic.describe_input(kind, args.events, args.users, args.seed, args.days), flush=True)
    lines = traffic.lines_for(kind, args.events, args.users, args.seed, args.days)
    people = len(
        {json.loads(line).get("user_id") or json.loads(line)["anonymous_id"] for line in lines}
    )
    input_path = tmp / f"{kind}.jsonl"
    input_path.write_bytes(b"\n".join(lines) + b"\n")
    labels = {v: label for v, (label, _) in VARIANTS.items()}
    if args.baseline is not None:
        name = args.baseline.resolve().name
        labels = {"a0": f"(a) at {name}"[:31], "20": f"(a2) at {name}"[:31], **labels}
    runs: dict[str, list[Result]] = {v: [] for v in labels}
    for _ in range(args.rounds):  # interleaved, so a noisy moment hits every variant alike
        for variant in labels:
            env = None
            if variant in _RUNS_AS:
                env = {**os.environ, "PYTHONPATH": str(args.baseline / "src")}
            elif variant in ("a", "2") and args.flush_max_events is not None:
                env = {**os.environ, "BA_FLUSH_MAX_EVENTS": str(args.flush_max_events)}
            output = subprocess.run(
                [sys.executable, __file__, "--variant", _RUNS_AS.get(variant, variant),
                 "--input-file", str(input_path)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout  # fmt: skip
            runs[variant].append(json.loads(output.strip().splitlines()[-1]))
    results = {v: min(r, key=lambda x: x["seconds"]) for v, r in runs.items()}
    count = len(lines)
    rate = {v: count / r["seconds"] for v, r in results.items()}
    bare_stored = results["c"]["stored_bytes"] / count
    print(f"{count:,} events from {people:,} people; best of {args.rounds}\n")
    cpu = {v: count / r["cpu_seconds"] for v, r in results.items() if r.get("cpu_seconds")}
    header = (
        f"{'variant':<31} {'events/s':>9} {'vs (c)':>7} {'ev/CPU-s':>9} {'vs (c)':>7} "
        f"{'rows/ev':>8} {'written B/ev':>13} {'stored B/ev':>12} {'vs bare':>8} {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for variant, label in labels.items():
        r = results[variant]
        stored = r["stored_bytes"] / count
        by_cpu = (
            f"{cpu[variant]:>9,.0f} {cpu[variant] / cpu['c']:>7.0%}"
            if variant in cpu
            else f"{'-':>9} {'-':>7}"
        )
        print(
            f"{label:<31} {rate[variant]:>9,.0f} {rate[variant] / rate['c']:>7.0%} {by_cpu} "
            f"{r['store_writes'] / count:>8.2f} {r['written_bytes'] / count:>13,.0f} "
            + (
                f"{stored:>12,.0f} {stored / bare_stored:>7.2f}x"
                if stored
                else f"{'-':>12} {'-':>8}"
            )
            + f" {r['peak_rss_mib']:>9.0f}"
        )
    store_only = (results["a"]["written_bytes"] - results["p"]["written_bytes"]) / count
    print(
        f"\n(a)/(c) = {rate['a'] / rate['c']:.0%} (by CPU {cpu['a'] / cpu['c']:.0%})   "
        f"(a2)/(c) = {rate['2'] / rate['c']:.0%} (by CPU {cpu['2'] / cpu['c']:.0%})   "
        f"(a)/(b) = {rate['a'] / rate['b']:.1f}x   "
        f"(a) without the broker's writes: {store_only:,.0f} written B/ev   "
        f"verify on (a)'s store: {'ok' if results['a']['verify_ok'] else 'DRIFT'}, "
        f"(a2)'s: {'ok' if results['2']['verify_ok'] else 'DRIFT'}"
    )
    print(
        "the store's write lock held (commits, from BEGIN IMMEDIATE granted to COMMIT done): "
        + "   ".join(
            f"{name} {results[v]['lock_held_s'] / results[v]['seconds']:.0%} of its run"
            for v, name in _WORKER_VARIANTS
            if v in results and results[v].get("lock_held_s")
        )
    )
    print(
        "the store's write-ahead log at its largest: "
        + "   ".join(
            f"{name} {results[v]['log_peak_bytes'] / 2**20:,.0f} MiB"
            for v, name in _WORKER_VARIANTS
            if v in results and "log_peak_bytes" in results[v]
        )
    )
    for variant, name in (("a", "(a)"), ("2", "(a2)")):
        print(stages.split_line(name, results[variant], results["c"]["cpu_seconds"]))
    if "a0" in results:
        name = args.baseline.resolve().name
        print(
            "   ".join(
                f"{mine}/({mine[1:-1]} at {name}) = {rate[v] / rate[v0]:.2f}x "
                f"(by CPU {cpu[v] / cpu[v0]:.2f}x), verify on its store: "
                + ("ok" if results[v0]["verify_ok"] else "DRIFT")
                for v, v0, mine in (("a", "a0", "(a)"), ("2", "20", "(a2)"))
            )
        )
    print()


def grow(args: argparse.Namespace) -> None:
    """Live traffic into one store in steps; the rate and query latencies per step, (c)'s bare
    insert grown beside it with the same events, and after each step a control on a fresh store
    and table (the first step's first events), for the machine's drift over the run; then the
    first step again beside one more step on the grown store (`side_by_side`)."""
    step = max(1, args.grow_to // args.grow_steps)
    further = min(step, args.grow_to)  # the side-by-side's step beyond --grow-to
    config = traffic.live_config(args.grow_to + further, args.users, args.seed)
    print(
        f"growth run to {args.grow_to:,} events, then {further:,} more side by side; "
        + traffic.describe(config),
        flush=True,
    )
    batch = load_settings().flush_max_events
    for what, events in (("step", step), ("control", min(args.grow_control, step))):
        if events % batch:
            print(
                f"warning: a {what} of {events:,} events is not a multiple of "
                f"BA_FLUSH_MAX_EVENTS ({batch:,}): its last batch waits out the flush interval, "
                "so its rates measure the wait as well as the worker"
            )
    messages = traffic.streamed(config, time.time() - 60.0)
    rng = random.Random(args.seed)
    began = time.monotonic()
    header = (
        f"{'stored events':>13} {'events/s':>9} {'ev/CPU-s':>9} {'rows/ev':>8} "
        f"{'written B/ev':>13} {'stored B/ev':>12} {'profile ms':>11} {'series ms':>10} "
        f"{'sessions ms':>12} {'funnel ms':>10} {'peak MiB':>9} {'(c) ev/s':>9} "
        f"{'(c) ev/CPU-s':>13} {'control ev/s':>13} {'control ev/CPU-s':>17}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        store = shipped_store(data_dir / "store.db")
        broker = LocalBroker(data_dir / "broker.db")
        bare = bare_table(data_dir / "bare.db")
        total = 0
        people: list[str] = []
        steps: list[Step] = []
        control: list[bytes] = []
        first_chunk: list[bytes] = []
        written_pages: list[tuple[int, Counter[str] | None]] = []
        print(header)
        print("-" * len(header))
        while total < args.grow_to:
            chunk = [next(messages) for _ in range(min(step, args.grow_to - total))]
            control = control or chunk[: args.grow_control]
            first_chunk = first_chunk or chunk
            people.extend(
                json.loads(chunk[i]).get("user_id") or "" for i in range(0, len(chunk), 97)
            )
            rows, wrote = store_writes(store), written_bytes()
            worker = worker_step(data_dir, broker, store, chunk)
            rows, wrote = store_writes(store) - rows, written_bytes() - wrote
            written_pages.append((total + len(chunk), last_commit_pages(data_dir / "store.db")))
            steps.append(
                Step(worker, bare_step(bare, chunk, total), *control_step(data_dir, control))
            )
            total += len(chunk)
            if store.count_events() != total:
                sys.exit(f"error: {store.count_events()} events stored, {total} sent")
            latencies = query_latencies(store, [p for p in people if p], rng)
            stored = stored_bytes(data_dir / "store.db") / total
            rss = peak_rss_mib()
            current = steps[-1]
            print(
                f"{total:>13,} {current.worker[0]:>9,.0f} {current.worker[1]:>9,.0f} "
                f"{rows / len(chunk):>8.2f} "
                f"{wrote / len(chunk):>13,.0f} {stored:>12,.0f} "
                + " ".join(
                    f"{latencies[name]:>{width},.2f}"
                    for name, width in (
                        ("profile", 11),
                        ("series", 10),
                        ("sessions", 12),
                        ("funnel", 10),
                    )
                )
                + f" {rss:>9.0f} {current.bare[0]:>9,.0f} {current.bare[1]:>13,.0f}"
                f" {current.control[0]:>13,.0f} {current.control[1]:>17,.0f}",
                flush=True,
            )
            if time.monotonic() - began > args.max_seconds:
                print(f"stopped: past --max-seconds {args.max_seconds:g}")
                break
        paired = side_by_side(
            data_dir,
            (store, broker, bare),
            first_chunk,
            [next(messages) for _ in range(len(first_chunk))],
            total,
            args.grow_slices,
        )
        if paired.slices != args.grow_slices:
            print(
                f"warning: --grow-slices {args.grow_slices} gives {paired.slices}: each slice "
                f"but the last is a whole number of batches (BA_FLUSH_MAX_EVENTS, {batch:,}) of "
                f"the first step's {len(first_chunk):,} events"
            )
        bare.close()
        for stored_events, pages in written_pages:
            print(f"at {stored_events:,} events, {pages_line(pages)}")
        first, last = steps[0], steps[-1]
        control_drift = against(last.control, first.control)
        print(
            f"control: the first {len(control):,} events of the first step into a fresh store "
            "and a fresh bare table right after each step; the control after the last step "
            f"against the control after the first: {control_drift}; the bare's: "
            f"{against(last.bare_control, first.bare_control)}"
        )
        worker_growth = grown(first.worker, last.worker, first.control, last.control)
        print(f"last step against the first: {worker_growth}")
        bare_growth = grown(first.bare, last.bare, first.bare_control, last.bare_control)
        print(f"(c)'s bare insert grown beside it, last step against the first: {bare_growth}")
        print(paired.describe(len(first_chunk), total))
        report = verify(store, store.periods, now=time.time(), retention_s=None)
        print(f"verify on the grown store: {'ok' if report.ok else report.to_dict()}")
        broker.close()
        store.close()


Rates = tuple[float, float]  # events/s, events per CPU-second


@dataclass(frozen=True, slots=True)
class Step:
    """A growth step's rates: the worker's and the bare insert's on the grown store and table,
    and their controls' on a fresh store and table right after."""

    worker: Rates
    bare: Rates
    control: Rates
    bare_control: Rates


@dataclass(frozen=True, slots=True)
class Paired:
    """The side-by-side after the last step, in `slices` alternating slices: the first step's
    events again into a fresh store (`first`) and as many new ones into the grown store
    (`last`) by the worker, and the same into a fresh and the grown bare table (`first_bare`,
    `last_bare`): the first and the last step at the same machine moments."""

    first: Rates
    last: Rates
    first_bare: Rates
    last_bare: Rates
    slices: int

    def describe(self, events: int, stored: int) -> str:
        """The lines printed for `events` per arm, the grown store holding `stored` before."""
        return (
            f"side by side, in {self.slices} alternating slices: the first step's {events:,} "
            f"events again into a fresh store and {events:,} more into the grown store "
            f"({stored:,} to {stored + events:,} events), the same into a fresh and the grown "
            f"bare table\nthe grown store's step against the first step's, side by side: "
            f"{against(self.last, self.first)} ({self.last[0]:,.0f} and {self.first[0]:,.0f} "
            f"events/s, {self.last[1]:,.0f} and {self.first[1]:,.0f} per CPU-second); (c)'s "
            f"bare insert: {against(self.last_bare, self.first_bare)}"
        )


@dataclass(slots=True)
class _Arm:
    """One side of `side_by_side`: where its slices go and the rates they ran at."""

    data_dir: Path
    broker: LocalBroker
    store: SQLiteStore
    bare: sqlite3.Connection
    lines: list[bytes]
    first_id: int  # the bare table's next message id
    worker_rates: list[tuple[int, Rates]] = field(default_factory=list)
    bare_rates: list[tuple[int, Rates]] = field(default_factory=list)

    def run_worker(self, part: range) -> None:
        lines = self.lines[part.start : part.stop]
        self.worker_rates.append(
            (len(lines), worker_step(self.data_dir, self.broker, self.store, lines))
        )

    def run_bare(self, part: range) -> None:
        lines = self.lines[part.start : part.stop]
        self.bare_rates.append((len(lines), bare_step(self.bare, lines, self.first_id)))
        self.first_id += len(lines)


def side_by_side(
    data_dir: Path,
    grown: tuple[SQLiteStore, LocalBroker, sqlite3.Connection],
    first: list[bytes],
    further: list[bytes],
    stored: int,
    slices: int,
) -> Paired:
    """`first` (the first step's events) into a fresh store and bare table under `data_dir`
    and `further` (as many new events) into the `grown` store, its broker and bare table
    (holding `stored` events), in `slices` slices (`slice_bounds`): each slice's worker runs
    one after the other, then its bare inserts, the order swapped every slice, so both sides
    meet the machine's drift alike. The combined rates of each side."""
    store, broker, bare = grown
    bounds = slice_bounds(len(first), slices, load_settings().flush_max_events)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        fresh = Path(tmp)
        fresh_arm = _Arm(
            fresh,
            LocalBroker(fresh / "broker.db"),
            shipped_store(fresh / "store.db"),
            bare_table(fresh / "bare.db"),
            first,
            0,
        )
        grown_arm = _Arm(data_dir, broker, store, bare, further, stored)
        try:
            for i, part in enumerate(bounds):
                order = (fresh_arm, grown_arm) if i % 2 == 0 else (grown_arm, fresh_arm)
                for arm in order:
                    arm.run_worker(part)
                for arm in order:
                    arm.run_bare(part)
            for arm, expected in ((fresh_arm, len(first)), (grown_arm, stored + len(further))):
                if arm.store.count_events() != expected:
                    sys.exit(f"error: {arm.store.count_events()} events stored, {expected} sent")
        finally:
            fresh_arm.broker.close()
            fresh_arm.store.close()
            fresh_arm.bare.close()
    return Paired(
        combined(fresh_arm.worker_rates),
        combined(grown_arm.worker_rates),
        combined(fresh_arm.bare_rates),
        combined(grown_arm.bare_rates),
        len(bounds),
    )


def slice_bounds(events: int, slices: int, batch: int) -> list[range]:
    """`events` cut into about `slices` consecutive ranges, each but the last a multiple of
    `batch` (the worker's BA_FLUSH_MAX_EVENTS: a partial batch waits out the flush interval),
    at least one batch each."""
    size = max(batch, events // max(1, slices) // batch * batch)
    return [range(start, min(start + size, events)) for start in range(0, events, size)]


def combined(parts: list[tuple[int, Rates]]) -> Rates:
    """The rates of (events, rates) parts run one after another: all their events over all
    their seconds, wall-clock and CPU."""
    events = sum(n for n, _ in parts)
    return (
        events / sum(n / r[0] for n, r in parts),
        events / sum(n / r[1] for n, r in parts),
    )


def control_step(data_dir: Path, lines: list[bytes]) -> tuple[Rates, Rates]:
    """`lines` into a fresh store by a fresh worker, then into a fresh bare table, under
    `data_dir` (removed after): their rates."""
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        fresh = Path(tmp)
        store = shipped_store(fresh / "store.db")
        broker = LocalBroker(fresh / "broker.db")
        try:
            worker = worker_step(fresh, broker, store, lines)
        finally:
            broker.close()
            store.close()
        db = bare_table(fresh / "bare.db")
        try:
            bare = bare_step(db, lines, 0)
        finally:
            db.close()
    return worker, bare


def worker_step(
    data_dir: Path, broker: LocalBroker, store: SQLiteStore, chunk: list[bytes]
) -> Rates:
    """Publish `chunk` to the broker in `data_dir` and run the shipped worker on `broker` and
    `store` until it is idle: its rates. The files' check a worker makes when it starts runs
    before the timer (`Checked`)."""
    publish_all(data_dir, chunk).close()
    store.check_files()
    broker.check_files()
    worker = shipped_worker(cast(LocalBroker, Checked(broker)), cast(SQLiteStore, Checked(store)))
    return rates(len(chunk), lambda: worker.run(threading.Event(), until_idle=True))


class Checked:
    """`port` whose files' every page was checked already: a worker checks them once, when it
    starts (`Worker.run`); a growth step's new worker stands for one that has run all along,
    so its check runs before the timer, and this one is a no-op."""

    def __init__(self, port: object) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def check_files(self) -> None:
        """Checked before the timer started (`worker_step`)."""


def bare_table(path: Path) -> sqlite3.Connection:
    """A connection to (c)'s bare table at `path`, created."""
    db = connect(path)
    db.executescript(EVENTS_SCHEMA)
    return db


def bare_step(db: sqlite3.Connection, chunk: list[bytes], first_id: int) -> Rates:
    """(c)'s insert of `chunk` (message ids from `first_id` on) into `db`: its rates."""
    return rates(len(chunk), lambda: insert_bare(db, chunk, first_id))


def rates(events: int, work: Callable[[], object]) -> Rates:
    """`events` over the wall-clock and CPU seconds `work` takes."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    work()
    return events / (time.perf_counter() - started), events / (cpu_seconds() - cpu_started)


def share(rates: Rates, control: Rates) -> Rates:
    """`rates` as shares of `control`'s, wall-clock and by CPU."""
    return rates[0] / control[0], rates[1] / control[1]


def against(last: Rates, first: Rates) -> str:
    """`last`'s rates as shares of `first`'s, wall-clock and by CPU."""
    return f"{last[0] / first[0]:.0%} of its events/s, {last[1] / first[1]:.0%} by CPU"


def grown(first: Rates, last: Rates, first_control: Rates, last_control: Rates) -> str:
    """The last step against the first, as measured and each divided by the control run
    beside it (whether that takes the machine's drift out, the control alone cannot tell)."""
    steady = against(share(last, last_control), share(first, first_control))
    return f"{against(last, first)}; each against its control: {steady}"


def query_latencies(store: SQLiteStore, people: list[str], rng: random.Random) -> dict[str, float]:
    """Median milliseconds of 7 calls of each query a dashboard makes."""
    queries: dict[str, Callable[[], object]] = {
        "profile": lambda: store.profile(rng.choice(people)),
        "series": lambda: store.series("hour"),
        "sessions": lambda: store.session_series("hour"),
        "funnel": lambda: store.funnel("purchase"),
    }
    medians = {}
    for name, query in queries.items():
        times = []
        for _ in range(7):
            started = time.perf_counter()
            query()
            times.append((time.perf_counter() - started) * 1000)
        medians[name] = statistics.median(times)
    return medians


def checkout(text: str) -> Path:
    """An argparse `type`: a checkout of the project, whose package `--baseline` runs."""
    package = Path(text) / "src" / "behavioral_analytics"
    if not package.is_dir():
        raise argparse.ArgumentTypeError(f"no {package} (not a checkout of this project)")
    return Path(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    count, span = traffic.positive_int, traffic.positive_float
    parser.add_argument(
        "--input", choices=[*traffic.INPUTS, "all"], default="live", help="all: the three in turn"
    )
    parser.add_argument("--events", type=count, default=100_000, help="events per input")
    parser.add_argument(
        "--users", type=count, default=20_000, help="people (the narrow input takes 1,000 at most)"
    )
    traffic.add_generator_arguments(parser)
    parser.add_argument(
        "--rounds", type=count, default=1, help="interleaved rounds; the best of each is shown"
    )
    parser.add_argument(
        "--baseline",
        type=checkout,
        help="another checkout whose worker runs as a variant too (its src/behavioral_analytics)",
    )
    parser.add_argument(
        "--flush-max-events",
        type=int,
        help="BA_FLUSH_MAX_EVENTS for (a) and (a2) alone (the baseline keeps the environment's)",
    )
    parser.add_argument("--grow", action="store_true", help="the growth run instead")
    parser.add_argument(
        "--grow-to", type=count, default=2_000_000, help="events in the grown store at the end"
    )
    parser.add_argument("--grow-steps", type=count, default=10, help="steps up to --grow-to")
    parser.add_argument(
        "--grow-control",
        type=count,
        default=20_000,
        help="events of the control run after each growth step (the first step's first ones; a "
        "multiple of BA_FLUSH_MAX_EVENTS, else its last batch waits out the flush interval)",
    )
    parser.add_argument(
        "--grow-slices",
        type=count,
        default=10,
        help="alternating slices of the side-by-side after the last step (each but the last a "
        "multiple of BA_FLUSH_MAX_EVENTS, so another number where the step's batches do not "
        "divide so)",
    )
    parser.add_argument(
        "--max-seconds",
        type=span,
        default=3600.0,
        help="the growth run stops after the step past it",
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--input-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flush_max_events is not None and (args.grow or not 1 <= args.flush_max_events <= 20000):
        parser.error(
            "--flush-max-events takes 1 to 20,000, without --grow (set BA_FLUSH_MAX_EVENTS)"
        )
    # The generator's purchase funnel, unless the environment names the funnels to keep.
    os.environ.setdefault("BA_FUNNELS", PURCHASE_FUNNEL)
    if args.variant:
        child(args.variant, args.input_file)
        return
    print(f"BA_FUNNELS={os.environ['BA_FUNNELS']}")
    settings = load_settings()
    print(f"breakdown dimensions: {', '.join(settings.breakdown_dimensions) or 'none'}")
    flush = args.flush_max_events or settings.flush_max_events
    print(f"(a) and (a2) commit up to {flush:,} events at a time (BA_FLUSH_MAX_EVENTS)\n")
    if args.grow:
        grow(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for kind in traffic.INPUTS if args.input == "all" else (args.input,):
            compare(kind, args, Path(tmp))


if __name__ == "__main__":
    main()
