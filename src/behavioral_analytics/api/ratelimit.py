"""Token buckets per write key and client address: `rate` events per second, bursts of one
second's worth.

A request is admitted while its bucket is not empty and is charged for all of its events, so
the bucket may go into debt: a batch larger than the burst still gets through, and its sender
then waits until the debt is paid. The long-run rate is `rate` either way.

A bucket is a write key's *from one address* (`bucket_of`): a browser's write key ships in
every page, so one client that floods it (even with events that are all refused) slows only
itself, not the key's other clients. Behind proxies the address is the client's only with
`BA_TRUSTED_PROXY_HOPS` set (else every client shares the proxy's bucket).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "bucket_of"]


def bucket_of(write_key: str, address: str | None) -> str:
    """The bucket a request is charged to: its write key's ('' with writes open) from its
    client's address (None: unknown, one bucket for all such); an IPv6 address by its /64,
    which one subscriber's network holds whole."""
    if address is not None and ":" in address:
        with contextlib.suppress(ValueError):
            address = str(ipaddress.ip_network(f"{address}/64", strict=False))
    return f"{write_key}\x1f{address or ''}"


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
        self._swept_at = -math.inf

    def acquire(self, key: str, events: int, shared: str | None = None) -> float:
        """Charge `events` to bucket `key`. Return 0 if admitted, else the seconds to wait.

        A new bucket while `max_keys` are held (none of them refilled, at the last look, at
        most a second ago) is not made: `events` go to bucket `shared` instead when given (the
        write key's for every address), so that many addresses cannot grow the table, nor
        escape the limit, without end."""
        now = self._clock()
        with self._lock:
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                if now - self._swept_at >= 1.0:
                    self._forget_full_buckets(now)
                    self._swept_at = now
                if len(self._buckets) >= self._max_keys and shared is not None:
                    key = shared
            tokens, updated = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - updated) * self.rate)
            if tokens <= 0:
                self._buckets[key] = (tokens, now)
                return max((1e-9 - tokens) / self.rate, 0.001)
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
