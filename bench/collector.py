"""Collector throughput: accepted events/s per core through POST /v1/batch, beside publishing the
same events straight to the local broker from Python.

    python bench/collector.py [--events 40000] [--batch 100] [--clients 4] [--warmup 2000]
                              [--repeat 5]

Both paths take the same recipe events, in batches of `--batch`, on a fresh local data
directory each run:

- direct: `LocalBroker.publish` of `OutgoingMessage`s holding each event's JSON (encoded
  beforehand, not timed), per CPU second of this process;
- collector: uvicorn in a subprocess on loopback, `POST /v1/batch` of the same events as
  Segment track calls (pre-encoded request bodies) from `--clients` httpx clients, every event
  validated, normalized, re-encoded as the canonical event and published through the same
  broker before its 200; per CPU second of the server process (user + system, from /proc), so
  the clients' own CPU does not count.

Each run first warms both paths with `--warmup` other events (not counted), then measures; the
best run of each path counts (the least disturbed: the machine may be busy with other work),
and every run's ratio is printed too. Target: the collector at >= 50 % of the direct rate per
core. Reference: RudderStack's gateway, about 850 events/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.loadgen import synthetic_stream
from behavioral_analytics.settings import load_settings
from behavioral_analytics.wiring import build_broker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from traffic import count_or_none, positive_int

WRITE_KEY = "bench-write-key"
RUDDERSTACK_PER_CORE = 850.0

_SERVER = """
import sys
from behavioral_analytics.api.server import serve
from behavioral_analytics.settings import load_settings
from behavioral_analytics.telemetry import configure_logging
from behavioral_analytics.wiring import build_server
settings = load_settings()
configure_logging(settings.log_level)
serve(build_server(settings, sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class Result:
    path: str
    events: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def per_core(self) -> float:
        return self.events / self.cpu_s if self.cpu_s > 0 else float("nan")


def make_events(count: int, prefix: str = "bench", seed: int = 42) -> list[dict[str, Any]]:
    stream = synthetic_stream(seed=seed)
    now = time.time()
    events = []
    for index in range(count):
        event = next(stream)
        event["event_id"] = f"{prefix}-{index:08d}"
        event["timestamp"] = now - 60 + 60 * index / count
        events.append(event)
    return events


def as_segment_track(event: dict[str, Any]) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(event["timestamp"], UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "track",
        "messageId": event["event_id"],
        "userId": event.get("user_id"),
        "anonymousId": event.get("anonymous_id"),
        "event": event["event_type"],
        "timestamp": stamp,
        "properties": event["properties"],
    }


def bench_direct(
    events: list[dict[str, Any]], warmup: list[dict[str, Any]], batch: int, data_dir: Path
) -> Result:
    settings = load_settings(data_dir=data_dir, backend="local")
    broker = build_broker(settings)
    broker.init()
    for start in range(0, len(warmup), batch):
        broker.publish(
            [OutgoingMessage(data=json.dumps(e).encode()) for e in warmup[start : start + batch]]
        )
    payloads = [json.dumps(event).encode() for event in events]
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(payloads), batch):
        broker.publish([OutgoingMessage(data=data) for data in payloads[start : start + batch]])
    result = Result(
        "LocalBroker.publish (direct)",
        len(events),
        time.perf_counter() - wall,
        time.process_time() - cpu,
    )
    broker.close()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_bodies(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    return [
        json.dumps({"batch": [as_segment_track(e) for e in events[start : start + batch]]}).encode()
        for start in range(0, len(events), batch)
    ]


def bench_collector(
    events: list[dict[str, Any]],
    warmup: list[dict[str, Any]],
    batch: int,
    clients: int,
    data_dir: Path,
) -> tuple[Result, int]:
    port = free_port()
    env = {
        **os.environ,
        "BA_BACKEND": "local",
        "BA_DATA_DIR": str(data_dir),
        "BA_WRITE_KEYS": WRITE_KEY,
        "BA_READ_KEYS": "bench-read-key",
        "BA_RATE_LIMIT": "100000000",
        "BA_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, "127.0.0.1", str(port)], env=env, cwd=data_dir
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the collector did not start")
            time.sleep(0.1)

        bodies = batch_bodies(events, batch)
        accepted = 0
        lock = threading.Lock()
        failures: list[str] = []

        def send(share: list[bytes]) -> None:
            nonlocal accepted
            headers = {"X-Write-Key": WRITE_KEY, "Content-Type": "application/json"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
                for body in share:
                    response = http.post("/v1/batch", content=body)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                        continue
                    with lock:
                        accepted += len(response.json()["accepted"])

        # Warm up the server (first requests, memory, caches) outside the measurement.
        headers = {"X-Write-Key": WRITE_KEY, "Content-Type": "application/json"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            for body in batch_bodies(warmup, batch):
                if http.post("/v1/batch", content=body).status_code != 200:
                    raise SystemExit("the collector refused the warm-up events")
        threads = [
            threading.Thread(target=send, args=(bodies[i::clients],)) for i in range(clients)
        ]
        cpu_before, wall = process_cpu_s(server.pid), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - wall
        cpu_s = process_cpu_s(server.pid) - cpu_before
        if failures:
            raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
        return Result(
            f"collector POST /v1/batch ({clients} clients)", accepted, wall_s, cpu_s
        ), len(bodies)
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=positive_int, default=40_000, help="events measured")
    parser.add_argument("--batch", type=positive_int, default=100, help="events per request")
    parser.add_argument("--clients", type=positive_int, default=4, help="concurrent HTTP clients")
    parser.add_argument(
        "--warmup",
        type=count_or_none,
        default=2000,
        help="other events through each path first (0: none)",
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=5, help="runs of each path; the best counts"
    )
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        raise SystemExit("this benchmark reads the server's CPU time from /proc (Linux)")

    events = make_events(args.events)
    warmup = make_events(args.warmup, prefix="warmup", seed=7)
    directs: list[Result] = []
    collectors: list[Result] = []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ba-bench-") as tmp:
            directs.append(bench_direct(events, warmup, args.batch, Path(tmp) / "direct"))
            (Path(tmp) / "collector").mkdir()
            result, requests = bench_collector(
                events, warmup, args.batch, args.clients, Path(tmp) / "collector"
            )
            collectors.append(result)
        if result.events != len(events):
            raise SystemExit(f"the collector accepted {result.events} of {len(events)} events")
        print(
            f"run {run + 1}: direct {directs[-1].per_core:,.0f}/core-s, "
            f"collector {result.per_core:,.0f}/core-s "
            f"({result.per_core / directs[-1].per_core:.0%})",
            file=sys.stderr,
        )
    # The least disturbed run of each (the machine may be busy with other work).
    direct = max(directs, key=lambda r: r.per_core)
    collector = max(collectors, key=lambda r: r.per_core)
    rows = [
        (
            r.path,
            f"{r.events:,}",
            f"{r.wall_s:.2f}",
            f"{r.per_s:,.0f}",
            f"{r.cpu_s:.2f}",
            f"{r.per_core:,.0f}",
        )
        for r in (direct, collector)
    ]
    header = ("path", "events", "wall s", "events/s", "CPU s", "events/s per core")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    print(
        f"{args.events:,} recipe events, batches of {args.batch} ({requests} requests), "
        f"{args.warmup:,} warm-up events first, best of {args.repeat} runs, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(line.format(*header))
    for row in rows:
        print(line.format(*row))
    ratio = collector.per_core / direct.per_core
    runs = sorted(c.per_core / d.per_core for c, d in zip(collectors, directs, strict=True))
    print(
        "collector / direct per core, run by run: "
        + ", ".join(f"{r:.0%}" for r in runs)
        + f" (median {statistics.median(runs):.0%})"
    )
    print(
        f"collector / direct per core: {ratio:.0%} (target >= 50 %: "
        f"{'met' if ratio >= 0.5 else 'NOT met'}); "
        f"{collector.per_core / RUDDERSTACK_PER_CORE:.1f}x RudderStack's ~850 events/s per core"
    )


if __name__ == "__main__":
    main()
