"""`verify`'s memory on a store of live traffic: the recount's events as read, and as `verify`
reads them (`shared_values`: each repeated value held once), side by side in one run.

`verify` recounts every aggregate from all the retained raw events at once, so its memory grows
with the store. This builds a store of `--events` live events with the shipped worker (the
generator's live input, bench/traffic.py, as bench/pipeline.py's (a) ingests it), then recounts
it in fresh processes, alternating the two variants over `--rounds` rounds:

  as read   `verification.compare` over `iter_raw_events()`: each event with its own copies
  shared    `verification.compare` over `retained_events(store)`, as `verify` reads them

Per variant: the recount's seconds, its peak RSS less the process's RSS before it (MiB, and
bytes per retained event), and whether it found the store exact; then shared against as read.
The lowest seconds and memory of each variant's rounds are shown.

    .venv/bin/python bench/verify_memory.py [--events 200000] [--users 20000] [--seed 17]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import traffic
from pipeline import publish_all, shipped_store, shipped_worker

from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.recount_reads import retained_events
from behavioral_analytics.verification import compare

VARIANTS = {"as read": "read", "shared": "shared"}


def build(path: Path, events: int, users: int, seed: int) -> int:
    """A store at `path` of the live input, ingested by the shipped worker; its event count."""
    lines = traffic.lines_for("live", events, users, seed, 6.0)
    broker = publish_all(path.parent, lines)
    store = shipped_store(path)
    shipped_worker(broker, store).run(threading.Event(), until_idle=True)
    count = store.count_events()
    store.close()
    broker.close()
    return count


def recount(path: Path, variant: str) -> dict[str, float]:
    """One recount of the store at `path` (`VARIANTS`' value), in this process, as `verify`
    makes it: the aggregates read, then compared with the fold of the raw events."""
    store = shipped_store(path)
    before = traffic.rss_bytes("VmRSS")
    started = time.perf_counter()
    with store.consistent_reads():
        events = store.iter_raw_events() if variant == "read" else retained_events(store)
        report = compare(
            store.snapshot(),
            events,
            store.periods,
            None,
            store.rules,
            store.stored_links(),
            breakdowns=True,
        )
    seconds = time.perf_counter() - started
    grown = max(0, traffic.rss_bytes("VmHWM") - before)
    store.close()
    return {"seconds": seconds, "grown_bytes": grown, "exact": float(report.ok)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--events", type=traffic.positive_int, default=200_000, help="events in the store"
    )
    parser.add_argument("--users", type=traffic.positive_int, default=20_000, help="people")
    parser.add_argument("--seed", type=int, default=17, help="the generator's seed")
    parser.add_argument(
        "--rounds", type=traffic.positive_int, default=2, help="rounds; the lowest figures count"
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS.values()), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("BA_FUNNELS", PURCHASE_FUNNEL)
    if args.variant:
        print(json.dumps(recount(args.store, args.variant)))
        return
    print(traffic.describe_input("live", args.events, args.users, args.seed, 6.0), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        count = build(path, args.events, args.users, args.seed)
        print(f"store built: {count:,} raw events\n", flush=True)
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in VARIANTS}
        for _ in range(args.rounds):
            for label, variant in VARIANTS.items():
                output = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--store", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs[label].append(json.loads(output.strip().splitlines()[-1]))
    print(f"{'variant':<9}  {'seconds':>7}  {'MiB':>6}  {'B/event':>7}  exact")
    best = {}
    for label, results in runs.items():
        seconds = min(r["seconds"] for r in results)
        grown = min(r["grown_bytes"] for r in results)
        exact = all(r["exact"] for r in results)
        best[label] = (seconds, grown)
        print(f"{label:<9}  {seconds:7.2f}  {grown / 2**20:6.0f}  {grown / count:7,.0f}  {exact}")
    (shared_s, shared_b), (read_s, read_b) = best["shared"], best["as read"]
    print(
        f"shared against as read: {shared_b / read_b:.0%} of the memory, "
        f"{shared_s / read_s:.0%} of the time"
    )


if __name__ == "__main__":
    main()
