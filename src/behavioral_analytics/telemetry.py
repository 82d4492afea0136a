"""JSON logs (one object a line, with `severity`, as Cloud Logging reads them) and the worker's
counters. Counters are kept in process and exported per batch, never per event."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "JsonFormatter",
    "MetricsExporter",
    "MetricsSnapshot",
    "WorkerMetrics",
    "configure_logging",
    "log",
]

log = logging.getLogger("behavioral_analytics")

_RESERVED = frozenset(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("behavioral_analytics")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# Commit latency histogram buckets, in seconds (shared by Prometheus and Cloud Monitoring).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class MetricsSnapshot:
    processed_by_type: dict[str, int]
    rejected_by_reason: dict[str, int]
    duplicates: int
    batches: int
    commit_failures: int
    dead_letters_drained: int
    commit_latency_buckets: list[int]  # cumulative-free counts per LATENCY_BUCKETS (+ overflow)
    commit_latency_sum_s: float
    commit_latency_count: int
    lag_s: float | None
    taken_at: float = field(default_factory=time.time)

    @property
    def processed(self) -> int:
        return sum(self.processed_by_type.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "processed_by_type": self.processed_by_type,
            "rejected": self.rejected,
            "rejected_by_reason": self.rejected_by_reason,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "commit_failures": self.commit_failures,
            "dead_letters_drained": self.dead_letters_drained,
            "commit_latency_avg_ms": (
                round(1000 * self.commit_latency_sum_s / self.commit_latency_count, 3)
                if self.commit_latency_count
                else None
            ),
            "lag_s": self.lag_s,
        }


class WorkerMetrics:
    """Cumulative counters of one worker process. Thread-safe; updated once per batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processed: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._duplicates = 0
        self._batches = 0
        self._commit_failures = 0
        self._drained = 0
        self._latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._lag: float | None = None

    def record_batch(
        self,
        processed_by_type: dict[str, int],
        rejected_by_reason: dict[str, int],
        duplicates: int,
        commit_latency_s: float,
        lag_s: float | None,
    ) -> None:
        index = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if commit_latency_s <= bound),
            len(LATENCY_BUCKETS),
        )
        with self._lock:
            self._processed.update(processed_by_type)
            self._rejected.update(rejected_by_reason)
            self._duplicates += duplicates
            self._batches += 1
            self._latency_buckets[index] += 1
            self._latency_sum += commit_latency_s
            self._latency_count += 1
            if lag_s is not None:
                self._lag = lag_s

    def record_commit_failure(self) -> None:
        with self._lock:
            self._commit_failures += 1

    def record_drained(self, count: int) -> None:
        with self._lock:
            self._drained += count

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                processed_by_type=dict(self._processed),
                rejected_by_reason=dict(self._rejected),
                duplicates=self._duplicates,
                batches=self._batches,
                commit_failures=self._commit_failures,
                dead_letters_drained=self._drained,
                commit_latency_buckets=list(self._latency_buckets),
                commit_latency_sum_s=self._latency_sum,
                commit_latency_count=self._latency_count,
                lag_s=self._lag,
            )


class MetricsExporter(Protocol):
    """Sends a worker's metrics somewhere on its own schedule, off the processing path."""

    def start(self, metrics: WorkerMetrics) -> None: ...

    def close(self) -> None: ...
