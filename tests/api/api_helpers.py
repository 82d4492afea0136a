"""Constants and helpers shared by the API tests (imported by conftest and the test modules)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

from behavioral_analytics.aggregation import Periods
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


def today_from(ago_s: float, timezone: str, into_day_s: float) -> float:
    """`ago_s` seconds before now, moved forward to `into_day_s` seconds into today (the day of
    now in `timezone`) when it would fall earlier: events dated from it count as today's
    whatever the hour (10 minutes back put them yesterday in a day's first 10 minutes, and a
    test waiting for today's figures timed out). Past `into_day_s` in a day it is in the past;
    before that `wait_past` waits for it, or for the latest event dated from it."""
    clear_of_day_end(timezone)
    periods = Periods(timezone)
    now = time.time()
    return max(now - ago_s, periods.start_of("day", periods.label("day", now)) + into_day_s)


# Longer than a browser test takes beside the rest of the suite on CI's two cores.
DAY_END_MARGIN_S = 150.0


def clear_of_day_end(timezone: str, margin_s: float = DAY_END_MARGIN_S) -> None:
    """Sleeps past midnight in `timezone` when the day ends within `margin_s` seconds, so that a
    test reading today's figures ends on the day its events were dated in (a dashboard test
    begun at 23:59:50 found today's top types empty at 00:00:10 and timed out)."""
    periods = Periods(timezone)
    now = time.time()
    later = periods.label("day", now + margin_s)
    if later != periods.label("day", now):
        wait_past(periods.start_of("day", later))


def wait_past(moment: float) -> None:
    """Sleeps until `moment` has passed (in a day's first minutes only, when `today_from`
    moved a moment forward past now; else at once)."""
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


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
