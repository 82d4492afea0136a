#!/usr/bin/env python3
"""The recipe's event generator: `python3 generate_events.py` publishes sample events through
the configured broker (local by default; Pub/Sub with BA_BACKEND=gcp). Any
`behavioral-analytics generate` option may follow, e.g. `--events 5000 --rate 100`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from _bootstrap import ensure_environment

ensure_environment()

from behavioral_analytics.cli.loadgen import generate, script_main  # noqa: E402

if __name__ == "__main__":
    script_main(generate, {"via": "broker", "events": 100}, "generate_events.py")
