"""Issue 19, cases 1 and 2: a hostile message is judged alone, a stage fault is never a clean
exit, and a message that kills the worker takes no batch-mate to the dead letters."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.settings import load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import build_broker, build_store
from behavioral_analytics.worker import Worker, WorkerOptions, WorkerStageFailed
from tests.chaos.crash_worker import LEASE_S, open_broker

WRITE_KEY = "wk_chaos_1"
ROOT = Path(__file__).resolve().parents[2]


def deep(levels: int) -> bytes:
    """The issue's message: an event whose properties nest `levels` objects (about 6 bytes a
    level, so 3,000 levels stay under the 32 KiB message limit)."""
    return (
        '{"user_id":"u","event_type":"t","properties":'
        + '{"a":' * levels
        + "1"
        + "}" * (levels + 1)
    ).encode()


def good(n: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"evt_{n}",
            "user_id": f"user_{n % 50}",
            "event_type": "page_view",
            "timestamp": time.time() - 60,
            "properties": {"n": n},
        }
    ).encode()


def test_case_1_a_deeply_nested_message_is_dead_lettered_alone(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    messages = [good(i) for i in range(999)]
    messages.insert(500, deep(3000))
    assert len(messages[500]) < 32 * 1024
    broker.publish([OutgoingMessage(m) for m in messages])
    options = WorkerOptions(flush_max_events=5000, flush_interval_s=0.2, idle_after_s=0.3)
    Worker(broker, store, options=options).run(threading.Event(), until_idle=True)
    assert store.count_events() == 999
    letters = store.dead_letters(10).items
    assert [(d.reason, d.data) for d in letters] == [("too_deep", messages[500])]
    assert broker.backlog() == 0


class _BrokenFeederWorker(Worker):
    def _prepare(self, deliveries):  # type: ignore[no-untyped-def]
        raise MemoryError("the feeder stage broke")


def test_case_1_a_feeder_fault_ends_the_run_with_an_error_not_a_clean_stop(
    broker: LocalBroker, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    broker.publish([OutgoingMessage(good(i)) for i in range(10)])
    worker = _BrokenFeederWorker(broker, store, options=WorkerOptions(flush_interval_s=0.05))
    with pytest.raises(WorkerStageFailed):
        worker.run(threading.Event(), until_idle=True)
    assert any(r.levelname == "ERROR" and "stage" in r.getMessage() for r in caplog.records)
    assert store.count_events() == 0  # nothing acked: the messages come back


@pytest.mark.parametrize("path", ["/v1/events", "/v1/track", "/v1/batch", "/v1/t"])
@pytest.mark.parametrize("levels", [40, 3000])
def test_case_1_the_collector_answers_a_deep_body_400_in_the_error_shape(
    tmp_path: Path, path: str, levels: int
) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        backend="local",
        api_host="127.0.0.1",
        write_keys=WRITE_KEY,
        read_keys="rk_chaos_1",
    )
    broker, store = build_broker(settings), build_store(settings)
    broker.init()
    store.init()
    nested = '{"a":' * levels + "1" + "}" * levels
    call = '{"type":"track","event":"t","userId":"u","user_id":"u","event_type":"t","properties":'
    body = f'{{"batch":[{call}{nested}}}]}}' if path == "/v1/batch" else f"{call}{nested}}}"
    with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as client:
        response = client.post(path, content=body.encode(), headers={"X-Write-Key": WRITE_KEY})
    broker.close()
    store.close()
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    answer = response.json()
    if levels == 3000:
        assert response.status_code == 400
        assert {"error", "detail", "code", "message"} <= answer.keys()
        assert answer["code"] == "too_deep"
    else:  # deeper than an event may be, yet decodable: rejected per event, with the reason
        assert response.status_code in (200, 400)
        assert "too_deep" in json.dumps(answer)


@pytest.mark.slow
def test_case_2_a_crash_loop_dead_letters_only_the_message_that_kills(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    broker = open_broker(data)
    SQLiteStore(data / "store.db").close()
    messages = [good(i) for i in range(400)]
    broker.publish([OutgoingMessage(m) for m in messages])
    deadly = "evt_123"
    exits: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(exits) < 10:
        run = subprocess.run(
            [sys.executable, "-m", "tests.chaos.crash_worker", str(data), deadly],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        exits.append(run.returncode)
        if run.returncode == 0:
            break
        assert run.returncode == -9, run.stderr.decode()[-2000:]
        time.sleep(LEASE_S)  # the killed worker's leases run out
    assert exits[-1] == 0 and exits.count(-9) == 5, exits
    store = SQLiteStore(data / "store.db")
    try:
        assert store.count_events() == 399
        letters = store.dead_letters(100).items
        assert [json.loads(d.data)["event_id"] for d in letters] == [deadly]
        report = verify(store, Periods(), now=time.time(), retention_s=None)
        assert report.ok  # the aggregates agree with the raw events …
        assert report.valid_dead_letters == [letters[0].id]  # … and the shortfall is shown
    finally:
        store.close()
        broker.close()
