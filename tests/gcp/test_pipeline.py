"""Broker + worker + store against the emulators, in process."""

from __future__ import annotations

import threading
import time
from typing import Any

from google.cloud import firestore

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.store import TransientStoreError
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.telemetry import WorkerMetrics
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import build_broker, build_store, worker_options
from behavioral_analytics.worker import Worker

from .helpers import data, recipe_payload


def _run_worker(worker: Worker, until: Any, timeout_s: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.25)
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_recipe_messages_yield_recipe_documents(settings_for) -> None:
    settings = settings_for()
    broker = build_broker(settings)
    broker.init()
    store = build_store(settings)
    now = time.time()
    sample = {
        "event_id": "evt_482913",
        "user_id": "user_1",
        "event_type": "purchase",
        "timestamp": now - 5,
        "session_id": "sess_5821",
        "properties": {
            "page_url": "/page/7",
            "referrer": "google.com",
            "device_type": "mobile",
            "user_agent": "BehavioralAnalytics/1.0",
            "amount": 99.5,
            "currency": "USD",
        },
    }
    # A distinct event that happens to share the weak evt_ id: both count.
    twin = {**sample, "event_type": "page_view", "timestamp": now - 4}
    others = [recipe_payload(i, ts=now - 3) for i in range(20)]
    broker.publish([OutgoingMessage(data(p)) for p in (sample, twin, *others)])
    worker = Worker(
        broker,
        store,
        options=worker_options(settings, flush_interval_s=0.3),
        metrics=WorkerMetrics(),
    )
    _run_worker(worker, lambda: store.count_events() >= 22, 30)
    broker.close()

    db = firestore.Client(project=settings.project, database=settings.firestore_database)
    aggregates = db.collection("analytics_aggregates")
    user = aggregates.document("user_user_1").get().to_dict()
    assert user["total_events"] == 2 + sum(p["user_id"] == "user_1" for p in others)
    assert user["events_by_type"]["purchase"] >= 1
    assert {"first_seen", "last_activity", "last_updated"} <= set(user)
    periods = Periods()
    hour, day = periods.label("hour", now - 5), periods.label("day", now - 5)
    hourly = aggregates.document(f"hourly_{hour}").get().to_dict()
    daily = aggregates.document(f"daily_{day}").get().to_dict()
    for doc in (hourly, daily):
        assert doc["total_events"] == 22
        assert doc["events_by_type"]["purchase"] >= 1
        assert doc["unique_users"] >= 1
        assert "last_updated" in doc
    # The recipe's own query.
    found = {
        snap.id
        for snap in aggregates.where(filter=firestore.FieldFilter("period", ">=", day)).stream()
    }
    assert {f"hourly_{hour}", f"daily_{day}"} <= found
    raw = db.collection("user_events").where(
        filter=firestore.FieldFilter("event_id", "==", "evt_482913")
    )
    docs = [snap.to_dict() for snap in raw.stream()]
    assert len(docs) == 2
    assert docs[0]["properties"]["amount"] == 99.5
    assert {"timestamp", "received_at", "processed_at", "latency", "expire_at"} <= set(docs[0])
    assert verify(store, periods, now=now, retention_s=None).ok


class _PoisonStore:
    """Fails every commit that holds a `poison` event, like a store that keeps timing out."""

    def __init__(self, inner: FirestoreStore) -> None:
        self.inner = inner

    def commit(self, events, dead_letters=(), *, give_up=None):
        if any(e.event_type == "poison" for e in events):
            raise TransientStoreError("deadline exceeded writing the poison event")
        return self.inner.commit(events, dead_letters, give_up=give_up)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_message_that_always_fails_is_dead_lettered_with_its_reason(settings_for) -> None:
    settings = settings_for(max_delivery_attempts=5)
    broker = build_broker(settings)
    broker.init()
    store = build_store(settings)
    now = time.time()
    poison = {**recipe_payload(1, ts=now), "event_type": "poison"}
    good = [recipe_payload(i, ts=now) for i in range(2, 12)]
    broker.publish([OutgoingMessage(data(p)) for p in (poison, *good)])
    worker = Worker(
        broker,
        _PoisonStore(store),  # type: ignore[arg-type]
        options=worker_options(settings, flush_interval_s=0.2, drain_interval_s=1.0),
        metrics=WorkerMetrics(),
    )
    _run_worker(worker, lambda: store.count_dead_letters() >= 1, 120)
    broker.close()
    [dead] = store.dead_letters().items
    assert dead.source == "broker"
    assert "TransientStoreError" in dead.reason
    assert "poison" in dead.reason
    assert len(dead.attempts) >= 5  # one recorded failure per delivery
    assert b'"poison"' in dead.data
    assert store.count_events() == 10  # its batch mates went through
