"""scripts/smoke_test.sh's Firestore reads, run against the Firestore emulator's REST endpoint.

The worker processes what the smoke test publishes (5 events and a malformed message) through
the Pub/Sub emulator; then the script runs with FIRESTORE_EMULATOR_HOST set and a gcloud
stand-in (its own publishes go nowhere), and must find the events, the profile, the daily
bucket and the dead letter, whose body Firestore's REST API returns base64-encoded.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO, GcloudStandIn


def _run_worker_until(settings: Any, until: Any, timeout_s: float) -> None:
    from behavioral_analytics.telemetry import WorkerMetrics
    from behavioral_analytics.wiring import build_broker, build_store, build_worker

    broker, store = build_broker(settings), build_store(settings)
    worker = build_worker(settings, broker, store, metrics=WorkerMetrics(), flush_interval_s=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until(store):
            assert time.monotonic() < deadline, "timed out waiting for the worker"
            time.sleep(0.25)
    finally:
        stop.set()
        thread.join(timeout=15)
        broker.close()
        store.close()
    assert not thread.is_alive()


def test_smoke_test_finds_a_healthy_deployments_documents(
    settings_for: Any, emulators: Any, tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("CURL NOT INSTALLED: smoke_test.sh's REST reads not run")
    from behavioral_analytics.broker import OutgoingMessage
    from behavioral_analytics.wiring import build_broker

    settings = settings_for()
    run_id = f"smoke{int(time.time())}"
    user = f"smoke_user_{run_id}"
    now = int(time.time())
    # What smoke_test.sh publishes, byte for byte.
    messages = [
        json.dumps(
            {
                "event_id": f"evt_{run_id}_{i}",
                "user_id": user,
                "event_type": "page_view",
                "timestamp": now,
                "session_id": f"sess_{run_id}",
                "properties": {"page_url": f"/smoke/{i}"},
            },
            separators=(",", ":"),
        ).encode()
        for i in range(1, 6)
    ] + [f"not json {run_id}".encode()]
    broker = build_broker(settings)
    broker.init()
    broker.publish([OutgoingMessage(m) for m in messages])
    broker.close()
    _run_worker_until(
        settings,
        lambda store: store.count_events() >= 5 and store.count_dead_letters() >= 1,
        60,
    )

    gc = GcloudStandIn(tmp_path, "everything")
    proc = gc.run(
        "smoke_test.sh",
        "--timeout",
        "20",
        PROJECT_ID=emulators.project,
        FIRESTORE_EMULATOR_HOST=emulators.firestore_host,
        FIRESTORE_DATABASE=settings.firestore_database,
        SMOKE_RUN_ID=run_id,
    )
    out = proc.stdout
    for line in (
        "PASS  5 raw events in user_events",
        f"PASS  profile user_{user} counts 5 events",
        "aggregate exists",
        "PASS  malformed message recorded in dead_letters",
        "SKIP  custom metrics",
    ):
        assert line in out, f"{line!r} missing:\n{out}\n{proc.stderr}"
    assert "FAIL  malformed" not in out
    assert str(REPO) in str(Path(__file__).resolve())
