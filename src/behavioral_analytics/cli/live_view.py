"""The terminal view of `up`: live counts read from the store, refreshed every second, and the
demo traffic as achieved (events/s over the last `RATE_WINDOW_S`, publish errors) beside its
target, so a stalled or failing publisher shows on the screen rather than only in the log."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich import get_console
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.broker import Broker
from behavioral_analytics.cli.tables import TextTable
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store

__all__ = ["RATE_WINDOW_S", "TrafficStats", "counted_by", "run_live_view"]

RATE_WINDOW_S = 10.0


class TrafficStats:
    """What the demo publisher achieved; thread-safe (the publisher writes, the view reads).

    `target_rate` is events/s; `description` is the generator's parameters and seed."""

    def __init__(
        self,
        target_rate: float,
        description: str | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.target_rate = target_rate
        self.description = description
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()
        self._started = clock()
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None

    def published(self, count: int) -> None:
        with self._lock:
            self.sent += count
            self._recent.append((self._clock(), count))

    def failed(self, count: int, error: str) -> None:
        with self._lock:
            self.errors += count
            self.last_error = error

    def rate(self) -> float:
        """Events/s published over the last RATE_WINDOW_S seconds (or since the start)."""
        now = self._clock()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            sent = sum(count for _, count in self._recent)
        span = min(RATE_WINDOW_S, now - self._started)
        return sent / span if span > 0 else 0.0

    def line(self) -> Text:
        """One line: achieved rate, target, errors (in red, with the last one)."""
        line = Text(
            f"traffic {self.rate():.1f} events/s achieved (target {self.target_rate:g}) · "
            f"{self.sent} sent · "
        )
        errors = f"publish errors {self.errors}"
        if not self.errors:
            return line.append(errors)
        return line.append(errors, "red").append(f" (last: {(self.last_error or '')[:120]})")


def _render(
    config: Settings,
    store: Store,
    broker: Broker,
    api_url: str | None,
    traffic: TrafficStats | None,
    workers: int,
    log: Path,
) -> Group:
    now = time.time()
    periods = Periods(config.timezone)
    minute, hour, day = periods.of(now)
    last_minutes = store.series("minute", periods.label("minute", now - 600), minute)
    hour_point = next(iter(store.series("hour", hour, hour)), None)
    day_point = next(iter(store.series("day", day, day)), None)
    freshness = store.freshness()

    summary = TextTable.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("events today", str(day_point.total_events if day_point else 0))
    summary.add_row("events this hour", str(hour_point.total_events if hour_point else 0))
    summary.add_row("unique users today", str(day_point.unique_users if day_point else 0))
    summary.add_row("unique users this hour", str(hour_point.unique_users if hour_point else 0))
    summary.add_row("active users (5 min)", str(store.active_users(now - 300)))
    backlog = broker.backlog()
    summary.add_row("backlog", str(backlog) if backlog is not None else "-")
    lag = freshness.lag_s
    summary.add_row("processing lag", f"{lag:.2f} s" if lag is not None else "-")
    summary.add_row("dead letters", str(store.count_dead_letters()))

    per_minute = TextTable(title=f"events per minute (last 10, {config.timezone})", expand=False)
    types = sorted({t for p in last_minutes[-10:] for t in p.events_by_type})
    # A column per event type when they fit the terminal, else one column of "type n" pairs.
    by_column = sum(len(cell) + 3 for cell in ["minute", "total", *types]) < get_console().width
    per_minute.add_column("minute", no_wrap=True)
    per_minute.add_column("total", justify="right")
    for t in types if by_column else ["by type"]:
        per_minute.add_column(t, justify="right" if by_column else "left", overflow="fold")
    for point in last_minutes[-10:]:
        counts = point.events_by_type
        per_minute.add_row(
            point.period[-5:].replace("-", ":"),
            str(point.total_events),
            *(
                [str(counts.get(t, 0)) for t in types]
                if by_column
                else [", ".join(f"{t} {n}" for t, n in sorted(counts.items()) if n)]
            ),
        )
    lines: list[Any] = [Panel(summary, title="behavioral-analytics"), per_minute]
    if traffic is not None:
        lines.append(traffic.line())
        if traffic.description:
            lines.append(Text(traffic.description))
    else:
        lines.append("no demo traffic (--rate 0)")
    lines.append(
        Text(
            f"{workers} workers · backend {config.backend} · data {config.data_dir} · logs {log}"
            + (f" · dashboard {api_url}" if api_url else "")
            + " · Ctrl-C to stop"
        )
    )
    return Group(*lines)


def counted_by(config: Settings, store: Store) -> Settings:
    """`config` with the time zone `store` recorded, whatever the shell's `BA_TIMEZONE` says
    (the workers count by the recorded one: a different one set stops them), or as it is
    where nothing is recorded yet."""
    recorded = store.recorded_config()
    return config if recorded is None else config.model_copy(update={"timezone": recorded.timezone})


def run_live_view(
    config: Settings,
    store: Store,
    broker: Broker,
    stop: threading.Event,
    **info: Any,
) -> None:
    """Redraw the view every second until `stop` is set. `info`: api_url, traffic
    (TrafficStats or None), workers, log (the log file's path)."""
    config = counted_by(config, store)
    with Live(_render(config, store, broker, **info), refresh_per_second=2) as live:
        try:
            # Sleeping, not Event.wait: a Ctrl-C landing inside a condition wait can leave its
            # lock released twice ("release unlocked lock") instead of interrupting cleanly.
            next_at = time.monotonic() + 1.0
            while not stop.is_set():
                time.sleep(0.1)
                if time.monotonic() >= next_at:
                    live.update(_render(config, store, broker, **info))
                    next_at += 1.0
        finally:
            # The screen left behind after Ctrl-C shows the last figures, not a second-old frame.
            live.update(_render(config, store, broker, **info))
