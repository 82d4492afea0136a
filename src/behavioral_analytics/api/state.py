"""What every route of one app shares: the ports, the settings and the per-process helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.api.auth import KeyPolicy
from behavioral_analytics.api.cache import TTLCache
from behavioral_analytics.api.health import PassiveHealth
from behavioral_analytics.api.metrics import ApiMetrics
from behavioral_analytics.api.publisher import GroupPublisher
from behavioral_analytics.api.ratelimit import RateLimiter
from behavioral_analytics.broker import Broker
from behavioral_analytics.dimensions import Derive
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Freshness, Store

__all__ = ["ApiState", "freshness_body"]

T = TypeVar("T")


@dataclass(slots=True)
class ApiState:
    settings: Settings
    broker: Broker
    store: Store
    policy: KeyPolicy
    limiter: RateLimiter
    cache: TTLCache
    metrics: ApiMetrics
    periods: Periods
    publisher: GroupPublisher
    clock: Callable[[], float] = time.time
    health: PassiveHealth = field(default_factory=PassiveHealth)
    # Sets each accepted event's `$derived` (wiring builds it); None: the collector derives none.
    derive: Derive | None = None
    # Set by `config_watch` when the configuration recorded with the data changed: the line
    # that says how. `stop` stops the server (`wiring.build_server` sets it).
    config_changed: str | None = None
    stop: Callable[[], None] | None = None

    def read_key(self, request: Request) -> None:
        """The read routes' dependency (`Depends(state.read_key)` on their routers): 401 unless
        the request holds a read key, before FastAPI checks the route's parameters (a router's
        dependencies come first), so that a request without a key gets 401, not a 422 about
        them."""
        self.policy.require_read(request)

    async def read(self, key: Any, load: Callable[[], T]) -> T:
        """A store read through the shared TTL cache, off the event loop."""
        return await run_in_threadpool(self.cache.get, key, load)

    async def freshness(self) -> dict[str, Any]:
        fresh = await self.read(("freshness",), self.store.freshness)
        return freshness_body(fresh, self.clock())


def freshness_body(fresh: Freshness, now: float) -> dict[str, Any]:
    """The store's freshness, plus how long ago a worker last committed."""
    body = fresh.to_dict()
    body["as_of"] = now
    body["since_last_commit_s"] = (
        None if fresh.last_commit_at is None else max(0.0, now - fresh.last_commit_at)
    )
    return body
