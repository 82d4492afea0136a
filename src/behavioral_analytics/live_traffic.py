"""Demo traffic for `up`: the load generator's model (`loadgen`) played in real time.

The generator's simulated clock runs at the wall clock's pace, so a session lasts the minutes
the model gives it (a gap of `mean_gap_s` between events) instead of being squeezed into the
instant its events are published. A target rate is reached with many users, each as idle
between sessions as the model says: `users = human rate * cycle / events per session`, the
cycle being the inactivity timeout, the idle time and a session's span. The first
`warmup_s` of simulated time are skipped, so the demo opens on a site already in use (sessions
in progress) rather than ramping up from nothing.

Pure: no I/O, no clock; the caller stamps and sends each event when its offset is due.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from behavioral_analytics.loadgen import (
    FUNNEL,
    GeneratorConfig,
    expected_session_events,
    iter_messages,
    with_seed,
)

__all__ = ["LiveTraffic", "describe", "live_traffic", "scheduled_events"]


@dataclass(frozen=True, slots=True)
class LiveTraffic:
    """A paced run of the generator: `config` (seeded) aimed at `rate` events/s, skipping the
    first `warmup_s` simulated seconds."""

    config: GeneratorConfig
    rate: float
    warmup_s: float


def live_traffic(rate: float, seed: int | None = None) -> LiveTraffic:
    """The generator's default model sized for `rate` events/s (> 0), with `seed` (a fresh
    one when None, so the run can be repeated). Raises ValueError for a rate ≤ 0."""
    if not rate > 0:
        raise ValueError("the demo traffic's rate must be positive")
    base = GeneratorConfig(events=None, duplicate_rate=0, late_rate=0, malformed_rate=0)
    per_session = expected_session_events(base)
    session_span_s = (per_session - 1) * base.mean_gap_s
    cycle_s = base.session_timeout_s + 1 + base.mean_idle_s + session_span_s
    human_rate = rate * (1 - base.bot_rate)
    users = max(1, math.ceil(human_rate * cycle_s / per_session))
    config = with_seed(replace(base, users=users))
    return LiveTraffic(config, rate, warmup_s=2 * session_span_s)


def describe(traffic: LiveTraffic) -> str:
    """The run's parameters and seed on one line, so that a measurement can be repeated."""
    cfg = traffic.config
    steps = " → ".join(FUNNEL)
    rates = "/".join(f"{rate:.0%}" for rate in cfg.funnel_rates)
    return (
        f"demo traffic: {traffic.rate:g} events/s from {cfg.users} simulated users, seed "
        f"{cfg.seed}; sessions: {cfg.mean_page_views:g} page views, {cfg.mean_gap_s:g} s "
        f"between events, {cfg.mean_idle_s:g} s idle after the {cfg.session_timeout_s:g} s "
        f"timeout; funnel {steps} continuing at {rates}; crawlers {cfg.bot_rate:.0%}"
    )


def scheduled_events(traffic: LiveTraffic) -> Iterator[tuple[float, dict[str, Any]]]:
    """Endless `(offset_s, payload)` in time order: offset_s is when, in seconds from the start
    of the demo, the event happens and is sent. The payload's `timestamp` is the offset; the
    caller replaces it with the wall-clock time it stands for."""
    for message in iter_messages(replace(traffic.config, start=0.0)):
        offset_s = message.sent_at - traffic.warmup_s
        if offset_s < 0:
            continue
        payload = message.payload()
        payload["timestamp"] = offset_s
        yield offset_s, payload
