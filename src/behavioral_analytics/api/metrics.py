"""Prometheus metrics of the API process: what it ingests, what it rejects, how long publishing
takes, plus the read model's freshness and backlog sampled from the ports at scrape time.

The worker's own counters (processed, duplicates, commit latency) live in the worker process
and go to Cloud Monitoring or the worker's logs; the API does not run the worker.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from behavioral_analytics.api.responses import app_path
from behavioral_analytics.telemetry import LATENCY_BUCKETS

__all__ = ["ApiMetrics", "IngestAnswers", "counting_endpoint"]

# Set in the request's scope by an ingest endpoint, which counts its own answer.
_COUNTED = "behavioral_analytics.ingest_counted"

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
        self.requests_refused = Counter(
            "ba_api_requests_refused",
            "Ingest requests refused whole for what they hold (400, 413), by route and reason",
            ["route", "reason"],
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


Endpoint = Callable[[Request], Awaitable[Response]]


def counting_endpoint(endpoint: Endpoint) -> Endpoint:
    """`endpoint` (an ingest endpoint, which counts its answer in `ApiMetrics.requests`
    itself), marking its requests so that `IngestAnswers` does not count them again."""

    async def marked(request: Request) -> Response:
        request.scope[_COUNTED] = True
        return await endpoint(request)

    return marked


class IngestAnswers:
    """ASGI middleware counting in `ba_api_ingest_requests` the answers on ingest paths that no
    ingest endpoint gave: the open-mode guard's 403 and 415, a 405 for another method, a 500
    from an error on the way. `routes` maps each ingest path to its `route` label. CORS
    preflights (OPTIONS) ask for permission to send and are not counted, nor are GET and HEAD
    requests on the paths in `reads`, which also serve reads."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        routes: Mapping[str, str],
        reads: Collection[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = dict(routes)
        self.reads = frozenset(reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        method = scope.get("method")
        if scope["type"] == "http" and method != "OPTIONS":
            path = app_path(scope)
            route = self.routes.get(path)
            if method in ("GET", "HEAD") and path in self.reads:
                route = None
        if route is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not scope.get(_COUNTED):
                self.metrics.requests.labels(route, str(status)).inc()
