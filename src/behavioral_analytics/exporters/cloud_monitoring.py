"""Worker metrics to Cloud Monitoring as custom metrics, off the processing path.

The worker only updates in-process counters (`WorkerMetrics`). A background thread takes a
snapshot every `interval_s` (10 s: Cloud Monitoring accepts at most one point per series per
~10 s) and writes every series of this instance in requests of at most 200 series. A failed
export is logged and the next tick sends the then-current cumulative values, so nothing is lost.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from google.api import distribution_pb2, metric_pb2

from behavioral_analytics.telemetry import LATENCY_BUCKETS, MetricsSnapshot, WorkerMetrics, log

__all__ = [
    "METRIC_PREFIX",
    "CloudMonitoringExporter",
    "build_time_series",
    "instance_id",
    "job_from_env",
    "labels_from_env",
    "location_from_env",
    "metadata_value",
    "on_cloud_run",
]

METRIC_PREFIX = "custom.googleapis.com/behavioral_analytics/"
MAX_SERIES_PER_REQUEST = 200
_CUMULATIVE = metric_pb2.MetricDescriptor.MetricKind.CUMULATIVE
_GAUGE = metric_pb2.MetricDescriptor.MetricKind.GAUGE
_INT64 = metric_pb2.MetricDescriptor.ValueType.INT64
_DOUBLE = metric_pb2.MetricDescriptor.ValueType.DOUBLE
_DISTRIBUTION = metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION


# One per process: on Cloud Run every instance has hostname "localhost" and PID 1, so those
# alone would make the series of two instances collide.
_PROCESS_TOKEN = uuid.uuid4().hex[:12]
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/"


def instance_id(metadata_instance: str | None = None, *, pid: int | None = None) -> str:
    """Names this worker process in the `task_id` label: `{instance}-{pid}`.

    `metadata_instance` is the instance id from the metadata server
    (`metadata_value("instance/id")`, unique per Cloud Run instance); without it (off Cloud
    Run) the hostname plus a random per-process token. The pid tells apart the processes of
    one instance (`worker --processes N`).
    """
    pid = os.getpid() if pid is None else pid
    base = metadata_instance or f"{socket.gethostname()}-{_PROCESS_TOKEN}"
    return f"{base}-{pid}"


def on_cloud_run(env: Mapping[str, str]) -> bool:
    """True inside a Cloud Run service, job or worker pool (each sets its own variable)."""
    return any(k in env for k in ("CLOUD_RUN_WORKER_POOL", "K_SERVICE", "CLOUD_RUN_JOB"))


def metadata_value(path: str, timeout_s: float = 1.0) -> str | None:
    """A value of the metadata server (`instance/id`, `instance/region`), or None when it does
    not answer. Call it only where `on_cloud_run` is true: elsewhere the lookup waits for
    `timeout_s` (Google's metadata server protocol: header `Metadata-Flavor: Google`)."""
    request = urllib.request.Request(METADATA_URL + path, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read().decode().strip() or None
    except (OSError, ValueError):
        return None


def job_from_env(env: Mapping[str, str]) -> str:
    """The `job` label: the worker pool's name as Cloud Run injects it (CLOUD_RUN_WORKER_POOL;
    worker pools set neither K_SERVICE nor WORKER_POOL_NAME), else WORKER_POOL_NAME (set by
    Terraform and deploy.sh), else K_SERVICE (a service), else "behavioral-processor". The
    dashboard and alerts filter on it (infrastructure-manager/modules/.../monitoring/)."""
    for key in ("CLOUD_RUN_WORKER_POOL", "WORKER_POOL_NAME", "K_SERVICE"):
        if env.get(key):
            return env[key]
    return "behavioral-processor"


def location_from_env(env: Mapping[str, str], metadata_region: str | None = None) -> str:
    """The `location` label: REGION (set by Terraform and deploy.sh) or CLOUD_RUN_REGION, else
    the region of `metadata_region` (`metadata_value("instance/region")`, which reads
    `projects/NUMBER/regions/REGION`), else "global"."""
    region = env.get("REGION") or env.get("CLOUD_RUN_REGION")
    if not region and metadata_region:
        region = metadata_region.rsplit("/", 1)[-1]
    return region or "global"


def _timestamp(epoch: float) -> dict[str, int]:
    seconds = int(epoch)
    return {"seconds": seconds, "nanos": int((epoch - seconds) * 1e9)}


def _int_series(
    name: str, labels: dict[str, str], value: int, interval: dict[str, Any]
) -> dict[str, Any]:
    return {
        "metric": {"type": METRIC_PREFIX + name, "labels": labels},
        "metric_kind": _CUMULATIVE,
        "value_type": _INT64,
        "points": [{"interval": interval, "value": {"int64_value": value}}],
    }


def build_time_series(
    snap: MetricsSnapshot, instance: str, start: float, end: float
) -> list[dict[str, Any]]:
    """One point per series of this instance (resource added by the caller)."""
    cumulative = {"start_time": _timestamp(start), "end_time": _timestamp(end)}
    series = [
        _int_series("events_processed", {"event_type": t, "instance": instance}, n, cumulative)
        for t, n in sorted(snap.processed_by_type.items())
    ]
    series += [
        _int_series("events_rejected", {"reason": r, "instance": instance}, n, cumulative)
        for r, n in sorted(snap.rejected_by_reason.items())
    ]
    series.append(_int_series("duplicates", {"instance": instance}, snap.duplicates, cumulative))
    # Events dropped because a `forget` tombstone covers them (`CommitResult.forgotten`).
    series.append(_int_series("forgotten", {"instance": instance}, snap.forgotten, cumulative))
    series.append(_int_series("batches", {"instance": instance}, snap.batches, cumulative))
    if snap.commit_latency_count:
        mean_ms = 1000 * snap.commit_latency_sum_s / snap.commit_latency_count
        series.append(
            {
                "metric": {
                    "type": METRIC_PREFIX + "commit_latency",
                    "labels": {"instance": instance},
                },
                "metric_kind": _CUMULATIVE,
                "value_type": _DISTRIBUTION,
                "unit": "ms",
                "points": [
                    {
                        "interval": cumulative,
                        "value": {
                            "distribution_value": distribution_pb2.Distribution(
                                count=snap.commit_latency_count,
                                mean=mean_ms,
                                bucket_options=distribution_pb2.Distribution.BucketOptions(
                                    explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(
                                        bounds=[1000 * b for b in LATENCY_BUCKETS]
                                    )
                                ),
                                bucket_counts=list(snap.commit_latency_buckets),
                            )
                        },
                    }
                ],
            }
        )
    if snap.lag_s is not None:
        series.append(
            {
                "metric": {
                    "type": METRIC_PREFIX + "end_to_end_lag",
                    "labels": {"instance": instance},
                },
                "metric_kind": _GAUGE,
                "value_type": _DOUBLE,
                "unit": "s",
                "points": [
                    {
                        "interval": {"end_time": _timestamp(end)},
                        "value": {"double_value": snap.lag_s},
                    }
                ],
            }
        )
    return series


class CloudMonitoringExporter:
    def __init__(
        self,
        project: str,
        *,
        client: Any = None,
        location: str = "global",
        job: str = "behavioral-processor",
        instance: str | None = None,
        interval_s: float = 10.0,
        poll_s: float = 1.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None:
            from google.cloud import monitoring_v3

            client = monitoring_v3.MetricServiceClient()
        self.client = client
        self.project = project
        self.instance = instance or instance_id()
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self._clock = clock
        self.resource = {
            "type": "generic_task",
            "labels": {
                "project_id": project,
                "location": location,
                "namespace": "behavioral-analytics",
                "job": job,
                "task_id": self.instance,
            },
        }
        self._metrics: WorkerMetrics | None = None
        self._start_time = clock()
        self._last_export: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.exports = 0
        self.failures = 0

    def start(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self._start_time = self._clock()
        self._thread = threading.Thread(target=self._run, name="cloud-monitoring", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.export_if_due()

    def export_if_due(self) -> bool:
        now = self._clock()
        due = self._last_export is None or now - self._last_export >= self.interval_s
        if due and now - self._start_time >= self.interval_s:
            self.export(now)
            return True
        return False

    def export(self, now: float | None = None) -> None:
        """Write every series once; log (never raise) a failure, to be retried next tick."""
        if self._metrics is None:
            return
        now = self._clock() if now is None else now
        self._last_export = now
        series = build_time_series(self._metrics.snapshot(), self.instance, self._start_time, now)
        for item in series:
            item["resource"] = self.resource
        for start in range(0, len(series), MAX_SERIES_PER_REQUEST):
            try:
                self.client.create_time_series(
                    name=f"projects/{self.project}",
                    time_series=series[start : start + MAX_SERIES_PER_REQUEST],
                    timeout=self.timeout_s,
                )
                self.exports += 1
            except Exception as exc:  # metrics never stop the worker
                self.failures += 1
                log.warning(
                    "metrics export to Cloud Monitoring failed; retrying next tick",
                    extra={"error": str(exc)[:500], "series": len(series)},
                )
                return

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and flush once more, unless the last point is under 5 s old (Cloud
        Monitoring would refuse it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        now = self._clock()
        recent = self._last_export is not None and now - self._last_export < 5.0
        if not recent and now - self._start_time >= 1.0:
            self.export(now)


def labels_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The (location, job) labels of this process's series, from Cloud Run's environment.

    `env` defaults to `os.environ`. Falls back to ("global", "behavioral-processor").
    """
    env = os.environ if env is None else env
    return location_from_env(env), job_from_env(env)
