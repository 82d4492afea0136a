"""The exact-under-faults scenario, shared by the local and the Google Cloud runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import Periods, fold
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.store import Store

USERS = [f"user_{i}" for i in range(1, 101)] + ["team/alice", "anon"]
TYPES = ["page_view", "button_click", "purchase", "search", "signup", "checkout.step_2"]


@dataclass
class Workload:
    lines: list[bytes]
    distinct: dict[str, Event]  # dedupe key → event
    malformed: list[bytes]
    duplicates: int = 0
    expected_reasons: dict[bytes, str] = field(default_factory=dict)


def make_workload(count: int, seed: int, now: float) -> Workload:
    """`count` messages: about 5 % re-sends of an earlier message, 1 % malformed lines."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    malformed: list[bytes] = []
    duplicates = 0
    while len(lines) < count:
        roll = rng.random()
        if roll < 0.05 and lines:
            lines.append(rng.choice(lines))
            duplicates += 1
        elif roll < 0.06:
            bad = rng.choice(
                [
                    b"not json at all %d" % len(lines),
                    json.dumps({"event_type": "page_view", "n": len(lines)}).encode(),
                    json.dumps(
                        {"user_id": "u", "event_type": "x", "timestamp": "soon", "n": len(lines)}
                    ).encode(),
                    b"[1, 2, %d]" % len(lines),
                ]
            )
            lines.append(bad)
            malformed.append(bad)
        else:
            user = rng.choice(USERS)
            event = {
                # The recipe's weak ids: six random digits, colliding across users by design.
                "event_id": f"evt_{rng.randint(100000, 999999)}",
                "event_type": rng.choice(TYPES),
                "timestamp": round(now - rng.uniform(0, 3 * 3600), 3),
                "session_id": f"sess_{rng.randint(1000, 9999)}",
                "properties": {"page_url": f"/page/{rng.randint(1, 20)}", "device_type": "mobile"},
            }
            event["anonymous_id" if user == "anon" else "user_id"] = user
            lines.append(json.dumps(event).encode())
    distinct: dict[str, Event] = {}
    for line in lines:
        parsed = parse_message(line, message_id="unused", received_at=now)
        if isinstance(parsed, Event):
            distinct[parsed.key] = parsed
    return Workload(lines, distinct, malformed, duplicates)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its log goes to a file, not a pipe nobody reads (a full pipe would block the worker).
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the test process
    worker = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--no-drain"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker.log = log  # type: ignore[attr-defined]
    return worker


def _log_of(worker: subprocess.Popen[bytes]) -> str:
    log = getattr(worker, "log", None)
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode(errors="replace")


def run_with_kills(
    env: dict[str, str],
    publish: Callable[[list[bytes]], None],
    workload: Workload,
    progress: Callable[[], int],
    seed: int,
    kills: int = 3,
    deadline_s: float = 240.0,
) -> list[float]:
    """Two worker processes; `kills` times, at a random point of progress, `kill -9` one of them
    and start it again. Returns the progress fractions at which the kills happened."""
    rng = random.Random(seed)
    workers = [start_worker(env), start_worker(env)]
    chunk = 1000
    lines = workload.lines
    total = len(workload.distinct)
    kill_at = sorted(rng.uniform(0.1, 0.85) for _ in range(kills))
    killed_at: list[float] = []
    published = 0
    deadline = time.monotonic() + deadline_s
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained in {deadline_s} s: {progress()}/{total}")
            if published < len(lines):
                publish(lines[published : published + chunk])
                published += chunk
            done = progress()
            if kill_at and done >= kill_at[0] * total:
                victim = rng.randrange(2)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(10)
                killed_at.append(done / total)
                kill_at.pop(0)
                workers[victim] = start_worker(env)
            for i, worker in enumerate(workers):
                if worker.poll() is not None:
                    raise AssertionError(f"worker {i} died on its own: {_log_of(worker)[-2000:]}")
            if published >= len(lines) and not kill_at and done >= total:
                return killed_at
            time.sleep(0.05)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


def assert_exact(store: Store, workload: Workload, periods: Periods) -> None:
    """Every distinct valid event counted once in every bucket and profile."""
    expected = fold(workload.distinct.values(), periods)
    snapshot = store.snapshot()
    want_buckets = {k: (b.total, dict(b.by_type)) for k, b in expected.buckets.items()}
    assert snapshot.buckets == want_buckets
    assert snapshot.unique_users == dict(expected.unique_users())
    assert snapshot.markers == expected.markers
    want_profiles = {
        who: (p.total, dict(p.by_type), p.first_seen, p.last_activity)
        for who, p in expected.profiles.items()
    }
    assert snapshot.profiles == want_profiles
    assert {e.key for e in store.iter_raw_events()} == set(workload.distinct)
