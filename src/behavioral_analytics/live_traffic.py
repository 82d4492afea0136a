"""Demo traffic for `up`: the load generator's model (`loadgen`) played in real time.

The generator's simulated clock runs at the wall clock's pace, so a session lasts the minutes
the model gives it (a gap of `mean_gap_s` between events) instead of being squeezed into the
instant its events are published. A target rate is reached with many users, each as idle
between sessions as the model says: `users = human rate * cycle / events per session`, the
cycle being the inactivity timeout, the idle time and a session's span. The generator plans
each user's next session ahead, so memory grows with the users: above MAX_USERS, the model is
sized for a lower rate and its clock runs faster (the description says how much), so sessions
look that much shorter. The first `warmup_s` of simulated time are skipped, so the demo opens
on a site already in use (sessions in progress) rather than ramping up from nothing.

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

__all__ = ["MAX_USERS", "LiveTraffic", "describe", "live_traffic", "scheduled_events"]

# Simulated users held at once (about 100 MB).
MAX_USERS = 25_000


@dataclass(frozen=True, slots=True)
class LiveTraffic:
    """A paced run of the generator: `config` (seeded) aimed at `rate` events/s, skipping the
    first `warmup_s` simulated seconds, its simulated clock running `speedup` times faster
    than the wall clock (1 unless the rate needs more than MAX_USERS users)."""

    config: GeneratorConfig
    rate: float
    warmup_s: float
    speedup: float = 1.0


def live_traffic(rate: float, seed: int | None = None) -> LiveTraffic:
    """The generator's default model sized for `rate` events/s (> 0), with `seed` (a fresh
    one when None, so the run can be repeated). Raises ValueError for a rate <= 0."""
    if not rate > 0:
        raise ValueError("the demo traffic's rate must be positive")
    # Demo users of their own (`demo_1` …): the README's walkthrough and the recipe's scripts
    # send `user_N` to the same data folder, and their numbers must stay theirs.
    base = GeneratorConfig(
        events=None, user_prefix="demo_", duplicate_rate=0, late_rate=0, malformed_rate=0
    )
    users, span_s = _users_for(base, rate)
    speedup = max(1.0, users / MAX_USERS)
    if speedup > 1.0:
        users, span_s = _users_for(base, rate / speedup)
    config = with_seed(replace(base, users=users, seed=seed))
    return LiveTraffic(config, rate, warmup_s=2 * span_s, speedup=speedup)


def _users_for(config: GeneratorConfig, rate: float) -> tuple[int, float]:
    """Users that give `rate` events/s under `config`'s model, and a session's mean span (s)."""
    per_session = expected_session_events(config)
    span_s = (per_session - 1) * config.mean_gap_s
    cycle_s = config.session_timeout_s + 1 + config.mean_idle_s + span_s
    human_rate = rate * (1 - config.bot_rate)
    return max(1, math.ceil(human_rate * cycle_s / per_session)), span_s


def describe(traffic: LiveTraffic) -> str:
    """The run's parameters and seed on one line, so that a measurement can be repeated."""
    cfg = traffic.config
    steps = " → ".join(FUNNEL)
    rates = "/".join(f"{rate:.0%}" for rate in cfg.funnel_rates)
    return (
        f"demo traffic: {traffic.rate:g} events/s from {cfg.users} simulated users, seed "
        f"{cfg.seed}; sessions: {cfg.mean_page_views:.3g} page views, {cfg.mean_gap_s:.3g} s "
        f"between events, {cfg.mean_idle_s:g} s idle after the {cfg.session_timeout_s:g} s "
        f"timeout; funnel {steps} continuing at {rates}; crawlers {cfg.bot_rate:.0%}"
        + (
            f"; simulated time runs {traffic.speedup:.3g}x faster than the clock (above "
            f"{MAX_USERS} users)"
            if traffic.speedup > 1
            else ""
        )
    )


def scheduled_events(
    traffic: LiveTraffic, started_at: float = 0.0
) -> Iterator[tuple[float, dict[str, Any]]]:
    """Endless `(offset_s, payload)` in time order: offset_s is when, in seconds from the start
    of the demo, the event happens and is sent. The payload's `timestamp` is the offset; the
    caller replaces it with the wall-clock time it stands for. `started_at` (epoch seconds:
    when the demo started) makes the session ids this run's own (`loadgen`'s run-scoped ids),
    so a demo started again with the same seed does not join its sessions to the last run's."""
    for message in iter_messages(replace(traffic.config, start=started_at)):
        simulated_s = message.sent_at - started_at - traffic.warmup_s
        if simulated_s < 0:
            continue
        offset_s = simulated_s / traffic.speedup
        payload = message.payload()
        payload["timestamp"] = offset_s
        yield offset_s, payload
