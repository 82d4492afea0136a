"""Pipeline throughput on the embedded default, three ways, on the same events, in one run.

  (a) this worker, one process, end to end: pull → parse → fold → one commit per batch → ack
      (publishing is done beforehand and not timed);
  (b) the recipe's pattern on the same SQLite store: per event one raw insert, three aggregate
      upserts (user, hour, day) and one commit; pulled and acked in the same batches as (a);
  (c) the machine's limit: parse the same events and insert them, in large transactions, into a
      table with the same schema, indexes and SQLite settings as (a) — nothing else.

Each variant runs in its own process (for its peak RSS) on a fresh data directory.

    .venv/bin/python bench/pipeline.py [--events 50000] [--users 1000]

(a) maintains the behavioral read model as configured: sessions, identity links and bot counts
always, funnels when BA_FUNNELS lists some (e.g. `BA_FUNNELS="$(python -c 'from
behavioral_analytics.funnels import PURCHASE_FUNNEL as f; print(f)')"`).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.settings import load_settings
from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite import EVENTS_SCHEMA, INSERT_EVENT, SQLiteStore
from behavioral_analytics.worker import Worker, WorkerOptions

TYPES = ("page_view", "button_click", "purchase", "search", "signup", "login")


def make_events(count: int, users: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    now = time.time()
    lines = []
    for i in range(count):
        event_type = rng.choice(TYPES)
        properties: dict[str, object] = {
            "page_url": f"/page/{rng.randint(1, 50)}",
            "referrer": rng.choice(["google.com", "direct", "twitter.com"]),
            "device_type": rng.choice(["mobile", "desktop", "tablet"]),
            "user_agent": "BehavioralAnalytics/1.0",
        }
        if event_type == "purchase":
            properties.update(amount=round(rng.uniform(5, 500), 2), currency="USD")
        lines.append(
            json.dumps(
                {
                    "event_id": f"evt_{i:08d}",
                    "user_id": f"user_{rng.randint(1, users)}",
                    "event_type": event_type,
                    "timestamp": now - 7200 + 7200 * i / count,
                    "session_id": f"sess_{rng.randint(1000, 9999)}",
                    "properties": properties,
                }
            ).encode()
        )
    return lines


def publish_all(data_dir: Path, lines: list[bytes]) -> LocalBroker:
    broker = LocalBroker(data_dir / "broker.db")
    for start in range(0, len(lines), 5000):
        broker.publish([OutgoingMessage(line) for line in lines[start : start + 5000]])
    return broker


def store_writes(store: SQLiteStore) -> int:
    return store._db.total_changes  # rows inserted, updated or deleted on this connection


def run_worker(data_dir: Path, lines: list[bytes]) -> dict[str, float]:
    broker = publish_all(data_dir, lines)
    # The behavioral rules as configured (e.g. BA_FUNNELS), else the defaults.
    store = SQLiteStore(data_dir / "store.db", rules=load_settings().behavior_rules())
    options = WorkerOptions(idle_after_s=0.0, drain_dead_letters=False)  # default flush sizes
    worker = Worker(broker, store, options=options)
    started = time.perf_counter()
    worker.run(threading.Event(), until_idle=True)
    elapsed = time.perf_counter() - started
    assert store.count_events() == len(lines)
    return {"seconds": elapsed, "store_writes": store_writes(store)}


_NAIVE_USER = """
INSERT INTO profiles VALUES (?, 1, ?, ?, ?) ON CONFLICT (who) DO UPDATE SET
  total_events = total_events + 1, last_activity = max(last_activity, excluded.last_activity),
  last_updated = excluded.last_updated
"""
_NAIVE_BUCKET = """
INSERT INTO buckets VALUES (?, ?, 1, 0, ?) ON CONFLICT (granularity, period) DO UPDATE SET
  total_events = total_events + 1, last_updated = excluded.last_updated
"""


def run_naive(data_dir: Path, lines: list[bytes]) -> dict[str, float]:
    broker = publish_all(data_dir, lines)
    store = SQLiteStore(data_dir / "store.db")
    db = store._db
    periods = store.periods
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
    return {"seconds": elapsed, "store_writes": store_writes(store)}


def run_bare(data_dir: Path, lines: list[bytes]) -> dict[str, float]:
    db = connect(data_dir / "bare.db")
    db.executescript(EVENTS_SCHEMA)
    started = time.perf_counter()
    for start in range(0, len(lines), 10_000):
        now = time.time()
        rows = []
        for i, line in enumerate(lines[start : start + 10_000]):
            event = parse_message(line, message_id=str(start + i), received_at=now)
            assert isinstance(event, Event)
            rows.append(_row(event, now))
        with transaction(db):
            db.executemany(INSERT_EVENT, rows)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "store_writes": db.total_changes}


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


VARIANTS = {
    "a": ("(a) this worker, 1 process", run_worker),
    "b": ("(b) naive per-event commits", run_naive),
    "c": ("(c) bare parse + bulk insert", run_bare),
}


def child(variant: str, events: int, users: int) -> None:
    lines = make_events(events, users)
    with tempfile.TemporaryDirectory() as tmp:
        result = VARIANTS[variant][1](Path(tmp), lines)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="Interleaved rounds; the best of each is shown."
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args.variant, args.events, args.users)
        return
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):  # interleaved, so a noisy moment hits every variant alike
        for variant in VARIANTS:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--events",
                    str(args.events),
                    "--users",
                    str(args.users),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[variant].append(json.loads(output.strip().splitlines()[-1]))
    results = {v: min(r, key=lambda x: x["seconds"]) for v, r in runs.items()}
    rate = {v: args.events / r["seconds"] for v, r in results.items()}
    print(f"{args.events} events, {args.users} users, one process each, best of {args.rounds}\n")
    print(f"{'variant':<32} {'events/s':>10} {'store writes/event':>19} {'peak RSS MiB':>13}")
    for variant, (label, _) in VARIANTS.items():
        r = results[variant]
        print(
            f"{label:<32} {rate[variant]:>10,.0f} {r['store_writes'] / args.events:>19.2f} "
            f"{r['peak_rss_mib']:>13.0f}"
        )
    print(f"\n(a)/(c) = {rate['a'] / rate['c']:.0%}   (target >= 40%)")
    print(f"(a)/(b) = {rate['a'] / rate['b']:.1f}x   (target >= 1.5x)")


if __name__ == "__main__":
    main()
