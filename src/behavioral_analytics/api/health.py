"""Passive health: what the API learnt from its own traffic, for `/readyz`.

A readiness probe that writes (a junk publish, a test document) costs money, pollutes the
data and still says nothing about the write that failed a second ago. So the collector
records the outcome of every publish here, and `/readyz` answers from it: a publish that
failed recently means not ready, one that succeeded recently means ready; only without
recent traffic does it ask the broker (a read, with a short timeout). Commits happen in
the workers: their health is read from the store's last-commit time and the backlog.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Outcome", "PassiveHealth"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call's outcome: when it ended (epoch seconds), whether it worked, and the error's
    class name when it did not (never its text, which can hold hosts or paths)."""

    at: float
    ok: bool
    error: str = ""


class PassiveHealth:
    """The latest publish outcome of this API process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._publish: Outcome | None = None

    def record_publish(self, at: float, error: BaseException | None = None) -> None:
        """Record a publish that ended at `at` (epoch seconds), failed with `error` if given."""
        outcome = Outcome(at, error is None, "" if error is None else type(error).__name__)
        with self._lock:
            if self._publish is None or at >= self._publish.at:
                self._publish = outcome

    @property
    def last_publish(self) -> Outcome | None:
        with self._lock:
            return self._publish
