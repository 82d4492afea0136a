"""Issue 19, case 5: `/readyz` says what the API's own traffic shows (the age and result of
the last publish, the age of the last commit), and a publish that cannot get through fails
fast instead of holding its client for half a minute."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.api.ops import COMMIT_STALL_S
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.settings import load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.conftest import wait_until

WRITE = {"X-Write-Key": "wk_chaos_5"}


class Clock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[TestClient, LocalBroker, SQLiteStore, Clock]]:
    settings = load_settings(
        data_dir=tmp_path, backend="local", write_keys="wk_chaos_5", read_keys="rk_chaos_5"
    )
    broker = LocalBroker(tmp_path / "broker.db", publish_timeout_s=1.0)
    store = SQLiteStore(tmp_path / "store.db")
    clock = Clock()
    app = create_app(settings, broker, store, cache_ttl_s=0, clock=clock)
    with TestClient(app) as client:
        yield client, broker, store, clock
    broker.close()
    store.close()


def event(n: int) -> dict[str, Any]:
    return {"event_id": f"e{n}", "user_id": "u", "event_type": "view", "timestamp": time.time()}


def _post_in_background(client: TestClient) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    threading.Thread(
        target=lambda: answers.append(client.post("/v1/events", json=event(1), headers=WRITE)),
        daemon=True,
    ).start()
    return answers


def test_case_5_a_locked_broker_fails_the_post_fast_and_readyz_says_so(
    stack: tuple[TestClient, LocalBroker, SQLiteStore, Clock], tmp_path: Path
) -> None:
    client, _, _, _ = stack
    assert client.get("/readyz").status_code == 200
    lock = sqlite3.connect(tmp_path / "broker.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        answers = _post_in_background(client)
        # The publish timeout is 1 s here; the file's own lock wait would be 30 s.
        wait_until(lambda: answers, 10, "the POST to be answered")
        assert answers[0].status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unavailable (last publish failed: BrokerError)"
        assert ready.json()["last_publish"]["ok"] is False
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert client.post("/v1/events", json=event(2), headers=WRITE).status_code == 202
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["last_publish"]["ok"] is True


def test_case_5_readyz_says_when_messages_wait_and_nothing_is_committed(
    stack: tuple[TestClient, LocalBroker, SQLiteStore, Clock],
) -> None:
    client, broker, store, clock = stack
    assert client.post("/v1/events", json=event(1), headers=WRITE).status_code == 202
    Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
        threading.Event(), until_idle=True
    )
    assert client.post("/v1/events", json=event(2), headers=WRITE).status_code == 202
    assert client.get("/readyz").status_code == 200  # a commit a moment ago
    clock.offset_s = COMMIT_STALL_S + 60  # the workers stopped committing two minutes ago
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"].startswith("stalled (no commit for ")
    assert ready.json()["last_commit_age_s"] > COMMIT_STALL_S
