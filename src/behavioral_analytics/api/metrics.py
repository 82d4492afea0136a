"""Prometheus metrics of the API process: what it ingests, what it rejects, how long publishing
takes, plus the read model's freshness and backlog sampled from the ports at scrape time.

The worker's own counters (processed, duplicates, commit latency) live in the worker process
and go to Cloud Monitoring or the worker's logs; the API does not run the worker.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from behavioral_analytics.telemetry import LATENCY_BUCKETS

__all__ = ["ApiMetrics"]

# Event types come from clients: past this many distinct ones, the rest share one label.
MAX_EVENT_TYPE_LABELS = 100
OTHER = "__other__"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_accepted = Counter(
            "ba_api_events_accepted",
            "Events published to the broker, by type",
            ["event_type"],
            registry=r,
        )
        self.events_rejected = Counter(
            "ba_api_events_rejected",
            "Events rejected by the collector, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "ba_api_ingest_requests",
            "Ingest requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "ba_api_publish_latency_seconds",
            "Time for the broker to confirm a request's publish (the collector's commit)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_failures = Counter(
            "ba_api_publish_failures", "Publishes the broker refused (answered 503)", registry=r
        )
        self.dead_letter_failures = Counter(
            "ba_api_dead_letter_failures",
            "Rejected events that could not be recorded in the dead letters (logged)",
            registry=r,
        )
        self.worker_lag = Gauge(
            "ba_worker_lag_seconds",
            "Processing lag of the last committed batch (processed_at - event time), from the "
            "store",
            registry=r,
        )
        self.newest_event_age = Gauge(
            "ba_newest_event_age_seconds",
            "Now minus the event time of the newest processed event",
            registry=r,
        )
        self.last_commit_age = Gauge(
            "ba_last_commit_age_seconds",
            "Seconds since a worker last committed a batch",
            registry=r,
        )
        self.dead_letters = Gauge("ba_dead_letters", "Dead letters in the store", registry=r)
        self.backlog = Gauge(
            "ba_broker_backlog_messages",
            "Messages not yet acked (where the broker can tell)",
            registry=r,
        )
        self._lock = threading.Lock()
        self._type_labels: set[str] = set()
        # The counter of each labelled event type (`labels()` costs microseconds per call).
        self._accepted_by_label: dict[str, Any] = {}

    def record_ingest(self, accepted_by_type: Tally[str], rejected_by_reason: Tally[str]) -> None:
        for event_type, count in accepted_by_type.items():
            counter = self._accepted_by_label.get(event_type)
            if counter is None:
                label = self._type_label(event_type)
                counter = self.events_accepted.labels(label)
                if label == event_type:  # bounded: at most MAX_EVENT_TYPE_LABELS of them
                    self._accepted_by_label[event_type] = counter
            counter.inc(count)
        for reason, count in rejected_by_reason.items():
            self.events_rejected.labels(reason).inc(count)

    def _type_label(self, event_type: str) -> str:
        if event_type in self._type_labels:
            return event_type
        with self._lock:
            if len(self._type_labels) < MAX_EVENT_TYPE_LABELS:
                self._type_labels.add(event_type)
                return event_type
        return OTHER
