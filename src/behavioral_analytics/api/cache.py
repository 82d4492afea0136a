"""A short-lived read cache with single flight: many viewers, one store read per key per TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["TTLCache"]

T = TypeVar("T")


@dataclass(slots=True)
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class TTLCache:
    """`get(key, load)` returns a value at most `ttl_s` old. Concurrent misses of one key wait for
    the single caller that loads it (errors are shared with the waiters, never cached).

    Thread-safe; loaders are plain blocking functions (store reads), run by the caller's thread.
    A TTL of 0 disables caching but keeps the single flight.
    """

    def __init__(
        self,
        ttl_s: float = 1.0,
        *,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._flights: dict[Hashable, _Flight] = {}

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > self._clock():
                # the cache holds any value: its callers know the type they stored
                return entry[1]  # type: ignore[no-any-return]
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            # a flight carries any value: its callers know the type they stored
            return flight.value  # type: ignore[no-any-return]
        try:
            flight.value = load()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
                if flight.error is None and self.ttl_s > 0:
                    if len(self._entries) >= self.max_entries:
                        self._evict()
                    self._entries[key] = (self._clock() + self.ttl_s, flight.value)
            flight.done.set()
        # a flight carries any value: its callers know the type they stored
        return flight.value  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        now = self._clock()
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
