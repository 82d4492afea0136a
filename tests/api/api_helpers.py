"""Constants and helpers shared by the API tests (imported by conftest and the test modules)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

from behavioral_analytics.broker import Broker
from behavioral_analytics.settings import Settings, load_settings
from behavioral_analytics.store import Store
from behavioral_analytics.telemetry import WorkerMetrics
from behavioral_analytics.wiring import worker_options
from behavioral_analytics.worker import Worker

WRITE_KEY = "wk_test_7f3a"
READ_KEY = "rk_test_91c2"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


WRITE = {"X-Write-Key": WRITE_KEY}
READ = {"Authorization": f"Bearer {READ_KEY}"}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "backend": "local",
        "api_host": "127.0.0.1",
        "write_keys": WRITE_KEY,
        "read_keys": READ_KEY,
        "rate_limit": 100_000,
        "flush_interval_s": 0.05,
    }
    values.update(overrides)
    return load_settings(**values)


def run_worker(broker: Broker, store: Store, settings: Settings) -> None:
    """Process everything published so far, then return."""
    options = worker_options(settings, idle_after_s=0.3, flush_interval_s=0.05)
    Worker(broker, store, options=options, metrics=WorkerMetrics()).run(
        threading.Event(), until_idle=True
    )


def recipe_event(
    n: int = 1, *, user: str = "user_1", event_type: str = "page_view", **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"evt_{n:06d}",
        "user_id": user,
        "event_type": event_type,
        "timestamp": time.time() - 1,
        "session_id": "sess_1",
        "properties": {"page_url": f"/page/{n}", "device_type": "mobile"},
    }
    event.update(extra)
    return event
