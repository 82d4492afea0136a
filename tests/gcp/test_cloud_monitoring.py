"""The Cloud Monitoring exporter with a fake client and a driven clock (no network)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict

from google.cloud import monitoring_v3

from behavioral_analytics.exporters.cloud_monitoring import METRIC_PREFIX, CloudMonitoringExporter
from behavioral_analytics.telemetry import WorkerMetrics


class FakeClient:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[list[dict]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def create_time_series(self, *, name: str, time_series: list[dict], timeout: float) -> None:
        assert name == "projects/demo"
        assert len(time_series) <= 200
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise RuntimeError("503 unavailable")
            self.calls.append(time_series)


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_320_000.0

    def __call__(self) -> float:
        return self.now


def test_at_most_one_point_per_series_per_10_s_while_10000_events_flow() -> None:
    client, clock, metrics = FakeClient(fail_first=1), Clock(), WorkerMetrics()
    exporter = CloudMonitoringExporter(
        "demo", client=client, instance="w-1", clock=clock, poll_s=0.001
    )
    exporter.start(metrics)
    types = ("page_view", "purchase", "search", "checkout.step_2")
    for batch in range(100):  # 100 batches of 100 events, one every 0.7 s of driven time
        metrics.record_batch(
            {t: 25 for t in types},
            {"not_json": 1},
            2,
            0.004 * (batch % 7),
            lag_s=1.5,
            forgotten=batch % 2,
        )
        clock.now += 0.7
        time.sleep(0.003)  # let the exporter thread look at the clock
    clock.now += 10
    time.sleep(0.05)
    exporter.close()

    points: dict[tuple, list[float]] = defaultdict(list)
    for request in client.calls:
        for item in request:
            series = monitoring_v3.TimeSeries(**item)  # a shape the real client accepts
            assert series.resource.type == "generic_task"
            assert series.resource.labels["task_id"] == "w-1"
            key = (series.metric.type, tuple(sorted(series.metric.labels.items())))
            end = series.points[0].interval.end_time
            points[key].append(end.timestamp())
    assert points, "nothing exported"
    for key, ends in points.items():
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        assert all(gap >= 10 - 1e-6 for gap in gaps), (key, gaps)
    # 80 s of traffic: about 8 exports, never one per batch (100) or per event (10,000).
    assert 5 <= len(client.calls) <= 10
    assert exporter.failures == 1  # the first failed, logged, and the next tick caught up
    kinds = {t.removeprefix(METRIC_PREFIX) for t, _ in points}
    assert kinds == {
        "events_processed",
        "events_rejected",
        "duplicates",
        "forgotten",
        "batches",
        "commit_latency",
        "end_to_end_lag",
    }
    final = [monitoring_v3.TimeSeries(**i) for i in client.calls[-1]]
    processed = {
        dict(s.metric.labels)["event_type"]: s.points[0].value.int64_value
        for s in final
        if s.metric.type.endswith("events_processed")
    }
    assert processed == {t: 2500 for t in types}
    dropped = {
        s.metric.type.removeprefix(METRIC_PREFIX): s.points[0].value.int64_value
        for s in final
        if s.metric.type.endswith(("duplicates", "forgotten"))
    }
    assert dropped == {"duplicates": 200, "forgotten": 50}
    latency = next(s for s in final if s.metric.type.endswith("commit_latency"))
    assert latency.points[0].value.distribution_value.count == 100


def test_export_failure_never_raises() -> None:
    client = FakeClient(fail_first=100)
    clock = Clock()
    exporter = CloudMonitoringExporter("demo", client=client, instance="w", clock=clock)
    metrics = WorkerMetrics()
    exporter._metrics = metrics
    metrics.record_batch({"a": 1}, {}, 0, 0.01, None)
    clock.now += 11
    assert exporter.export_if_due()
    assert exporter.failures == 1 and not client.calls
