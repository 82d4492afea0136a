"""JSON logs (one object a line, with `severity`, as Cloud Logging reads them) and the worker's
counters. Counters are kept in process and exported per batch, never per event."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
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
    "mask_address",
    "scrub_path",
]

log = logging.getLogger("behavioral_analytics")

_RESERVED = frozenset(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object a line. The server's access lines (`uvicorn.access`, on at DEBUG) are
    scrubbed: the client's address masked as `mask_address` does, and the values of query
    parameters that can hold a key (`scrub_path`) replaced, so no log line holds either."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            address, method, path, version, status = args
            message = record.msg % (
                mask_address(str(address)),
                method,
                scrub_path(str(path)),
                version,
                status,
            )
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "message": message,
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_SECRET_PARAMETER = re.compile(r"(?i)([?&][^=&#]*(?:key|token|secret|password)[^=&#]*=)[^&#]*")
_KEY_IN_PATH = re.compile(r"^(/v1/projects/)[^/?#]+")


def scrub_path(path: str) -> str:
    """`path` with the values of query parameters named like a key, token, secret or password
    replaced by `REDACTED` (the dashboard's old `/?key=` links carried the read key), and so
    the write key in analytics.js's `/v1/projects/{writeKey}/settings`."""
    return _KEY_IN_PATH.sub(r"\1REDACTED", _SECRET_PARAMETER.sub(r"\1REDACTED", path))


def mask_address(address: str) -> str:
    """A client address (`ip`, `ip:port` or `[ip]:port`) with the IP masked as the collector
    truncates IPs: IPv4 to its /24, IPv6 to its /48; the port dropped. Text that holds no IP
    address is returned as it is."""
    host = address
    if address.startswith("["):
        host = address[1:].partition("]")[0]
    elif address.count(":") == 1:
        host = address.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return address
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


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
    # Events dated before a `forget` tombstone of their person: dropped, counted apart.
    forgotten: int = 0
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
            "forgotten": self.forgotten,
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
        self._forgotten = 0
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
        forgotten: int = 0,
    ) -> None:
        index = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if commit_latency_s <= bound),
            len(LATENCY_BUCKETS),
        )
        with self._lock:
            self._processed.update(processed_by_type)
            self._rejected.update(rejected_by_reason)
            self._duplicates += duplicates
            self._forgotten += forgotten
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
                forgotten=self._forgotten,
            )


class MetricsExporter(Protocol):
    """Sends a worker's metrics somewhere on its own schedule, off the processing path."""

    def start(self, metrics: WorkerMetrics) -> None: ...

    def close(self) -> None: ...
