"""The terminal view of `up`: live counts read from the store, refreshed every second."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.broker import Broker
from behavioral_analytics.config import Settings
from behavioral_analytics.store import Store


def _render(
    config: Settings,
    store: Store,
    broker: Broker,
    api_url: str | None,
    rate: float,
    workers: int,
    log: object,
) -> Group:
    now = time.time()
    periods = Periods(config.timezone)
    minute, hour, day = periods.of(now)
    last_minutes = store.series("minute", periods.label("minute", now - 600), minute)
    hour_point = next(iter(store.series("hour", hour, hour)), None)
    day_point = next(iter(store.series("day", day, day)), None)
    freshness = store.freshness()

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("events today", str(day_point.total_events if day_point else 0))
    summary.add_row("events this hour", str(hour_point.total_events if hour_point else 0))
    summary.add_row("unique users today", str(day_point.unique_users if day_point else 0))
    summary.add_row("unique users this hour", str(hour_point.unique_users if hour_point else 0))
    summary.add_row("active users (5 min)", str(store.active_users(now - 300)))
    summary.add_row("backlog", str(broker.backlog() if broker.backlog() is not None else "-"))
    lag = freshness.lag_s
    summary.add_row("processing lag", f"{lag:.2f} s" if lag is not None else "-")
    summary.add_row("dead letters", str(store.count_dead_letters()))

    per_minute = Table(title="events per minute (last 10)", expand=False)
    types = sorted({t for p in last_minutes for t in p.events_by_type})
    per_minute.add_column("minute")
    per_minute.add_column("total", justify="right")
    for t in types:
        per_minute.add_column(t, justify="right")
    for point in last_minutes[-10:]:
        per_minute.add_row(
            point.period[-5:].replace("-", ":"),
            str(point.total_events),
            *(str(point.events_by_type.get(t, 0)) for t in types),
        )
    footer = (
        f"{workers} workers · traffic {rate:g} events/s · backend {config.backend} · "
        f"logs {log}" + (f" · dashboard {api_url}" if api_url else "") + " · Ctrl-C to stop"
    )
    return Group(Panel(summary, title="behavioral-analytics"), per_minute, footer)


def run_live_view(
    config: Settings,
    store: Store,
    broker: Broker,
    stop: threading.Event,
    **info: Any,
) -> None:
    with Live(_render(config, store, broker, **info), refresh_per_second=2) as live:
        while not stop.wait(1.0):
            live.update(_render(config, store, broker, **info))
