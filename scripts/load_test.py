#!/usr/bin/env python3
"""The recipe's load test: `python3 scripts/load_test.py --events=1000 --rate=10`.

A thin wrapper over `behavioral-analytics loadtest` against the configured backend (local by
default; Pub/Sub and Firestore with BA_BACKEND=gcp): it starts the workers where they run
locally, publishes at the rate, waits until every event is queryable and reports latency,
duplicates, rejects and verify. Each run sends its events under its own type
(`loadtest.<run id>`) and user prefix and judges itself by them alone, so messages left waiting
by the generators, or `up` running beside it, do not disturb it. Any other loadtest option may
follow; see docs/loadtest.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_environment

ensure_environment()

from behavioral_analytics.cli.loadgen import loadtest, script_main  # noqa: E402

if __name__ == "__main__":
    script_main(loadtest, {}, "load_test.py")
