"""Issue 19, case 4: outages are never silent. A store or broker that stops answering gets a
WARNING within seconds, progress lines keep coming while the worker is blocked (saying why),
and a line says when it answers again; nothing is lost or counted twice meanwhile."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.chaos.conftest import Lines
from tests.conftest import wait_until

OPTIONS = WorkerOptions(
    flush_interval_s=0.1, stall_warning_s=1.0, report_interval_s=1.0, idle_after_s=0.3
)


def good(n: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"evt_{n}",
            "user_id": "u",
            "event_type": "page_view",
            "timestamp": time.time() - 5,
        }
    ).encode()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


@pytest.mark.slow
@pytest.mark.parametrize("port", ["store", "broker"])
def test_case_4_a_locked_file_is_reported_while_blocked_and_when_it_answers(
    tmp_path: Path, lines: Lines, port: str
) -> None:
    broker = LocalBroker(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    store = SQLiteStore(tmp_path / "store.db")
    worker = Worker(broker, store, options=OPTIONS)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    broker.publish([OutgoingMessage(good(i)) for i in range(100)])
    runner.start()
    try:
        wait_until(lambda: store.count_events() == 100, 20, "the first events")
        lock = _hold_write_lock(tmp_path / f"{port}.db")
        try:
            # With the store locked, the next batch's commit blocks; with the broker locked,
            # the feeder's next pull does (a lease is a write).
            if port == "store":
                broker.publish([OutgoingMessage(good(i)) for i in range(100, 200)])
            call = "commit" if port == "store" else "pull"
            wait_until(lambda: lines.has(f"{port} not answering", call=call), 10, "the warning")
            wait_until(
                lambda: lines.has("worker progress", blocked_on=f"{port} {call}"),
                10,
                "a progress line while blocked",
            )
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_until(lambda: lines.has(f"{port} answering again", call=call), 10, "the recovery")
        if port == "broker":
            broker.publish([OutgoingMessage(good(i)) for i in range(100, 200)])
        wait_until(lambda: store.count_events() == 200, 20, "the events held back")
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert broker.backlog() == 0 and store.count_events() == 200
    broker.close()
    store.close()
