#!/usr/bin/env python3
"""Publish a small batch of test events through the configured broker (local by default;
Pub/Sub with BA_BACKEND=gcp). Any `behavioral-analytics generate` option may follow, e.g.
`--events 500 --seed 7` or `--via ndjson`; see docs/loadtest.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_environment

ensure_environment()

from behavioral_analytics.cli.loadgen import generate, script_main  # noqa: E402

if __name__ == "__main__":
    script_main(generate, {"via": "broker", "events": 50}, "generate_test_events.py")
