"""Issue 19, case 9: SIGTERM with a full backlog and four workers drains within 5 s (Cloud
Run gives about 10 s), and what was held is committed or given back: nothing lost, nothing
counted twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import cli, wait_until

EVENTS = 40_000


@pytest.mark.slow
def test_case_9_sigterm_drains_four_workers_within_5_seconds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = LocalBroker(data / "broker.db")
    now = time.time()
    broker.publish(
        [
            OutgoingMessage(
                json.dumps(
                    {
                        "event_id": f"e{i}",
                        "user_id": f"u{i % 300}",
                        "event_type": "view",
                        "timestamp": now - 60,
                        "properties": {"pad": "x" * 100},
                    }
                ).encode()
            )
            for i in range(EVENTS)
        ]
    )
    store = SQLiteStore(data / "store.db")
    workers = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--workers", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: store.count_events() >= 5000, 60, "the workers to be committing")
        assert (broker.backlog() or 0) > 10_000  # a full backlog when the signal comes
        workers.send_signal(signal.SIGTERM)
        code = workers.wait(5)  # raises TimeoutExpired past the budget
    finally:
        if workers.poll() is None:
            workers.kill()
            workers.wait()
    assert code == 0
    cli("worker", "--until-idle")
    assert store.count_events() == EVENTS and broker.backlog() == 0
    assert verify(store, Periods(), now=time.time(), retention_s=None).ok
    store.close()
    broker.close()
