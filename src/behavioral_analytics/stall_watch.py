"""Outages are never silent: a watch over the calls the worker blocks in.

A call to the store or the broker that does not return (a frozen Firestore or Pub/Sub, a
locked SQLite file: the clients retry inside the call for a minute or more) produces no
error to log. So each such call is wrapped in `StallWatch.call`, and a watcher thread logs:

- a WARNING `"<port> not answering"` once a call has been blocked `warn_after_s` seconds
  (default 5), naming the call and what waits on it;
- a WARNING `"worker progress"` every `report_interval_s` while it stays blocked, with
  `blocked_on`, so progress lines keep coming and say why nothing moves;
- a WARNING `"<port> answering again"` when the call returns (or fails), with how long it
  was blocked, unless the caller says (`quiet`) that the end is logged elsewhere: by the port
  itself (Pub/Sub's "reachable again after N s", which says where and how long), or after a
  failure by the caller once a call succeeds.

Failures that do return (an error from the call) are the caller's to log; `recovered` logs
the line that says the port answers again after them. One end line per outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from behavioral_analytics.telemetry import log

__all__ = ["StallWatch"]


@dataclass(slots=True)
class _Blocked:
    port: str
    call: str
    detail: dict[str, Any]
    since: float
    warned: bool = False
    reported_at: float = 0.0


class StallWatch:
    """Watches blocking calls (see the module's docstring). `progress` gives the metrics a
    progress line carries; `start` the watcher thread, `stop` it."""

    def __init__(
        self,
        progress: Callable[[], dict[str, Any]],
        *,
        warn_after_s: float = 5.0,
        report_interval_s: float = 10.0,
        tick_s: float = 0.5,
    ) -> None:
        self.progress = progress
        self.warn_after_s = warn_after_s
        self.report_interval_s = report_interval_s
        self.tick_s = tick_s
        self._blocked: dict[int, _Blocked] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="ba-stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def call(
        self,
        port: str,
        call: str,
        quiet: Callable[[BaseException | None], bool] | None = None,
        **detail: Any,
    ) -> Iterator[None]:
        """Watch the enclosed call to `port` ("store" or "broker") named `call`. `quiet(error)`
        (`error`: what the call raised, or None): True when the end of a stall is logged
        elsewhere, so the watch logs no `answering again` of its own."""
        key = threading.get_ident()
        entry = _Blocked(port, call, detail, time.monotonic())
        with self._lock:
            self._blocked[key] = entry
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._lock:
                self._blocked.pop(key, None)
                warned = entry.warned
            if warned and not (quiet is not None and quiet(error)):
                log.warning(
                    f"{port} answering again",
                    extra={"call": call, "blocked_s": round(time.monotonic() - entry.since, 1)},
                )

    def recovered(self, port: str, call: str, failures: int) -> None:
        """Log that `port` answers `call` again after `failures` failed attempts."""
        log.warning(f"{port} answering again", extra={"call": call, "failures": failures})

    def _watch(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                entries = list(self._blocked.values())
            for entry in entries:
                blocked_s = round(now - entry.since, 1)
                if not entry.warned and blocked_s >= self.warn_after_s:
                    entry.warned = True
                    entry.reported_at = now
                    log.warning(
                        f"{entry.port} not answering",
                        extra={"call": entry.call, "blocked_s": blocked_s, **entry.detail},
                    )
                elif entry.warned and now - entry.reported_at >= self.report_interval_s:
                    entry.reported_at = now
                    log.warning(
                        "worker progress",
                        extra={
                            "blocked_on": f"{entry.port} {entry.call}",
                            "blocked_s": blocked_s,
                            "metrics": self.progress(),
                        },
                    )
