"""Per-write-key token buckets: `rate` events per second, bursts of one second's worth.

A request is admitted while its key's bucket is not empty and is charged for all of its
events, so the bucket may go into debt: a batch larger than the burst still gets through,
and the key then waits until the debt is paid. The long-run rate is `rate` either way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)

    def acquire(self, key: str, events: int) -> float:
        """Charge `events` to `key`. Return 0 if admitted, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - updated) * self.rate)
            if tokens <= 0:
                self._buckets[key] = (tokens, now)
                return max((1e-9 - tokens) / self.rate, 0.001)
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._forget_full_buckets(now)
            self._buckets[key] = (tokens - events, now)
            return 0.0

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))

    def _forget_full_buckets(self, now: float) -> None:
        # A bucket that has refilled holds no state worth keeping.
        for key, (tokens, updated) in list(self._buckets.items()):
            if tokens + (now - updated) * self.rate >= self.burst:
                del self._buckets[key]
