"""Issue 19, case 4 on Google's Firestore emulator: the emulator frozen (SIGSTOP) under a
running worker gets a WARNING within seconds and progress lines that say why nothing moves;
thawed (SIGCONT), a line says the store answers again, and every event is counted once.

The test starts an emulator of its own (freezing the shared one would stall other tests).
Without gcloud, Java or the emulator it skips loudly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.chaos.conftest import Lines
from tests.conftest import wait_until

pytestmark = [pytest.mark.gcp, pytest.mark.slow]
PROJECT = "demo-chaos"


def _sdk_root() -> Path:
    gcloud, java = shutil.which("gcloud"), shutil.which("java")
    if gcloud is None or java is None:
        pytest.skip("FIRESTORE EMULATOR NOT RUN: needs gcloud and java on PATH")
    root = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    binary = Path(root) / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    if not binary.exists():
        pytest.skip(f"FIRESTORE EMULATOR NOT RUN: {binary} is missing")
    return binary


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def frozen_able_firestore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A Firestore emulator of this test's own; yields its process group id."""
    binary = _sdk_root()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"127.0.0.1:{port}"
    with (tmp_path / "firestore.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "start", "--host=127.0.0.1", f"--port={port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _answers(host), 90, "the Firestore emulator to start")
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_case_4_a_frozen_firestore_is_reported_and_nothing_is_lost(
    tmp_path: Path,
    frozen_able_firestore: int,
    lines: Lines,
) -> None:
    firestore = pytest.importorskip("google.cloud.firestore")
    from behavioral_analytics.stores.firestore import FirestoreStore

    store = FirestoreStore(firestore.Client(project=PROJECT), timeout_s=60.0)
    store.init()
    broker = LocalBroker(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    options = WorkerOptions(flush_interval_s=0.2, stall_warning_s=2.0, report_interval_s=2.0)
    worker = Worker(broker, store, options=options)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    now = time.time()

    def publish(start: int) -> None:
        broker.publish(
            [
                OutgoingMessage(
                    json.dumps(
                        {
                            "event_id": f"e{i}",
                            "user_id": f"u{i % 7}",
                            "event_type": "view",
                            "timestamp": now - 30,
                        }
                    ).encode()
                )
                for i in range(start, start + 50)
            ]
        )

    runner.start()
    try:
        publish(0)
        wait_until(lambda: store.count_events() == 50, 60, "the first events")
        os.killpg(frozen_able_firestore, signal.SIGSTOP)
        try:
            publish(50)
            wait_until(lambda: lines.has("store not answering"), 15, "the outage warning")
            wait_until(
                lambda: lines.has("worker progress", blocked_on="store commit"),
                15,
                "a progress line saying why",
            )
        finally:
            os.killpg(frozen_able_firestore, signal.SIGCONT)
        wait_until(lambda: lines.has("store answering again"), 60, "the recovery line")
        wait_until(lambda: store.count_events() == 100, 60, "every event")
    finally:
        stop.set()
        runner.join(60)
    assert broker.backlog() == 0 and store.count_events() == 100
    broker.close()
    store.close()
