"""The two production processes against the emulators, each doing what it does in Cloud Run.

The worker runs as `behavioral-analytics worker` does (ports built by the wiring, metrics
exported); the API serves ingestion, the query routes and the health checks. Besides checking
that events flow end to end, this module is what tests/deploy records (with
tests/gcp/rpc_record.py) to tie each process's Google API calls to the IAM roles Terraform
grants its service account: every route and path a deployed process takes should run here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .helpers import recipe_payload

WRITE_KEY = "wk_roles_test"
READ_KEY = "rk_roles_test"
WRITE = {"X-Write-Key": WRITE_KEY}
READ = {"Authorization": f"Bearer {READ_KEY}"}


def _poll(
    until: Callable[[], bool], timeout_s: float, what: str, last: list[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {last})"
        time.sleep(0.25)


@pytest.fixture
def roles_settings(settings_for: Any) -> Any:
    settings = settings_for(
        write_keys=WRITE_KEY,
        read_keys=READ_KEY,
        rate_limit=100_000,
        flush_interval_s=0.2,
    )
    from behavioral_analytics.wiring import build_broker

    # Creating the topic and subscriptions is the deployment's job, not a process's: done
    # here by the test (no role), as Terraform or deploy.sh does in production.
    broker = build_broker(settings)
    broker.init()
    broker.close()
    return settings


@pytest.fixture
def running_worker(roles_settings: Any) -> Iterator[Any]:
    """The worker process's loop, with its metrics exporter, in a thread."""
    import grpc
    from google.cloud import monitoring_v3
    from google.cloud.monitoring_v3.services.metric_service.transports import (
        MetricServiceGrpcTransport,
    )

    from behavioral_analytics.exporters.cloud_monitoring import CloudMonitoringExporter
    from behavioral_analytics.telemetry import WorkerMetrics
    from behavioral_analytics.wiring import build_broker, build_store, build_worker

    broker, store = build_broker(roles_settings), build_store(roles_settings)
    metrics = WorkerMetrics()
    # No Monitoring emulator exists: the exporter talks to a closed loopback port, so its
    # CreateTimeSeries calls are made (and recorded) and fail at once, as a logged warning.
    channel = grpc.insecure_channel("127.0.0.1:1")
    client = monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=channel)
    )
    exporter = CloudMonitoringExporter(
        roles_settings.project, client=client, interval_s=0.5, poll_s=0.1, timeout_s=1.0
    )
    exporter.start(metrics)
    worker = build_worker(roles_settings, broker, store, metrics=metrics, flush_interval_s=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield exporter
    finally:
        stop.set()
        thread.join(timeout=15)
        exporter.close(timeout_s=5)
        broker.close()
        store.close()
        channel.close()
    assert not thread.is_alive()


def test_api_and_worker_against_the_emulators(roles_settings: Any, running_worker: Any) -> None:
    from fastapi.testclient import TestClient

    from behavioral_analytics.wiring import build_api

    now = time.time()
    events = [{**recipe_payload(i, ts=now - 5), "user_id": "roles_user"} for i in range(5)]
    with TestClient(build_api(roles_settings)) as client:
        assert client.get("/healthz").status_code == 200
        # A health check is retried in production too: the first call opens the channels.
        _poll(lambda: client.get("/readyz").status_code == 200, 30, "/readyz to answer 200")

        accepted = client.post("/v1/events", json=events, headers=WRITE)
        assert accepted.status_code < 300, accepted.text
        # A rejected event: the collector records it as a dead letter itself.
        rejected = client.post(
            "/v1/events", json=[{"event_type": "page_view", "timestamp": now}], headers=WRITE
        )
        assert rejected.status_code < 500, rejected.text
        segment = {
            "type": "track",
            "messageId": f"roles-{now}",
            "userId": "roles_user",
            "event": "signup",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5)),
        }
        tracked = client.post("/v1/track", json=segment, headers=WRITE)
        assert tracked.status_code < 300, tracked.text

        last: list[str] = []

        def profile_total() -> int:
            response = client.get("/v1/profiles/roles_user", headers=READ)
            last[:] = [response.text[:300]]
            if response.status_code != 200:
                return 0
            return int(response.json().get("profile", {}).get("total_events", 0))

        _poll(lambda: profile_total() >= 5, 60, "the worker to commit the API's events", last)

        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        for path in (
            "/v1/users/roles_user/timeline",
            "/v1/events?event_type=page_view",
            f"/v1/series?granularity=hour&from={day}",
            f"/v1/series?granularity=hour&from={day}&filter=page:/&filter=device:mobile",
            "/v1/top-event-types",
            "/v1/active-users",
            "/v1/dead-letters",
            "/v1/sessions",
            "/v1/funnels",
            "/v1/users/roles_user/links",
            "/v1/dashboard",
            "/metrics",
        ):
            response = client.get(path, headers=READ)
            assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"

    _poll(lambda: running_worker.exports + running_worker.failures >= 1, 30, "a metrics export")
