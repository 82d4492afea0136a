"""Whether Pub/Sub answers the worker: an outage is logged once, not once per retry.

The worker's service account holds only roles/pubsub.subscriber, so there is no "ping" (a
`get_topic` needs the viewer role). What the subscriber does see goes through
`WatchedSubscriber`, the subscriber client the broker uses: every response or error of the
streaming pull (the client library reopens it after each error, for ever), of the acks and
lease extensions (the library's and the broker's), and of the unary pulls (the synchronous
pull, the dead-letter drain). `PubSubReach` turns them into three kinds of line:

- a WARNING `"Pub/Sub unreachable: ..."` when the outage begins, naming where Pub/Sub is (the
  emulator's host, or the service and the project), the subscription, the error in one line
  and that the worker keeps retrying;
- a WARNING `"Pub/Sub still unreachable after N s: ..."` at most every `reminder_s` seconds
  (60) while failures go on, `outage_s` the outage's duration in seconds;
- an INFO `"Pub/Sub reachable again after N s (at WHERE, subscription S)"` at the first
  success after it (of a request sent after the outage began: an ack sent before may still
  get its answer as the connection breaks), counted in `ends_logged` (the broker's
  `outage_log`: the worker then logs no end of its own, `broker answering again`, for the
  same outage).

Pub/Sub ends a healthy streaming pull now and then with UNAVAILABLE (the library reopens it at
once), so a stream error alone starts no outage: another failure has to follow it within
`quiet_s` seconds (30) with no success between. A unary request that fails starts one at once.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # no stub re-exports it

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.telemetry import log

__all__ = ["OUTAGE_ERRORS", "PubSubReach", "PubSubUnreachable", "WatchedSubscriber"]

# Errors that say Pub/Sub did not answer (or not in time), as opposed to an answer (NotFound,
# PermissionDenied, InvalidArgument: the service is there).
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.GatewayTimeout,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.RetryError,  # the client library's own retries gave up (on one of the above)
    TimeoutError,
)


class PubSubUnreachable(BrokerError):
    """A request failed because Pub/Sub did not answer. `PubSubReach` has logged the outage
    (`reported`), so the caller does not log it again; the worker retries it."""

    reported = True


class PubSubReach:
    """The outage state of one broker's Pub/Sub, and its log lines (see the module's
    docstring). Thread-safe: the client library's threads report through it.

    `where`: the emulator's host, or `pubsub.googleapis.com (project P)`; `subscription`: the
    worker's; `reminder_s`: seconds between reminder lines; `quiet_s`: seconds after which a
    lone stream error is forgotten; `clock`: monotonic seconds."""

    def __init__(
        self,
        where: str,
        subscription: str,
        *,
        reminder_s: float = 60.0,
        quiet_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.subscription = subscription
        self.reminder_s = reminder_s
        self.quiet_s = quiet_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the first failure of the run
        self._since_wall = 0.0
        self._last_failure = 0.0
        self._reported_at: float | None = None  # when the outage was last logged; None: not yet
        self.failures = 0  # failed requests in the current run of failures
        self.ends_logged = 0  # "reachable again" lines logged

    @classmethod
    def for_project(cls, project: str, subscription: str, **options: Any) -> PubSubReach:
        """The reach of Pub/Sub as the clients find it: the emulator at PUBSUB_EMULATOR_HOST,
        or the service, for `project`."""
        host = os.environ.get("PUBSUB_EMULATOR_HOST")
        where = host or f"pubsub.googleapis.com (project {project})"
        return cls(where, subscription, **options)

    @property
    def down(self) -> bool:
        """True while an outage is logged and not yet over."""
        return self._reported_at is not None

    def outage_s(self) -> float:
        """Seconds since the current run of failures began; 0.0 when Pub/Sub answers."""
        since = self._since
        return 0.0 if since is None else self._clock() - since

    def describe(self, exc: BaseException, outage_s: float | None = None) -> str:
        """The outage in one line, the words of the log: where, the subscription, the error,
        and (`outage_s`, seconds) how long it has lasted."""
        lasted = "" if outage_s is None else f"still unreachable after {outage_s:.0f} s"
        return (
            f"Pub/Sub {lasted or 'unreachable'} at {self.where} (subscription "
            f"{self.subscription}): {one_line(exc)}; retrying"
        )

    def failed(self, call: str, exc: BaseException, *, routine: bool = False) -> None:
        """`call` failed with `exc`. An error that does not say Pub/Sub is unreachable (see
        `OUTAGE_ERRORS`) is an answer, so counts as `answered`. `routine`: an error that a
        healthy Pub/Sub also gives now and then (a stream's end)."""
        if not isinstance(exc, OUTAGE_ERRORS):
            self.answered(call)
            return
        now = self._clock()
        with self._lock:
            stale = now - self._last_failure > self.quiet_s
            if self._since is not None and self._reported_at is None and stale:
                self._since = None  # a lone stream error long ago: forgotten
            if self._since is None:
                self._since, self._since_wall, self.failures = now, time.time(), 0
            self.failures += 1
            self._last_failure = now
            if self._reported_at is None:
                if routine and self.failures < 2:
                    return
                lasted = None
            elif now - self._reported_at >= self.reminder_s:
                lasted = now - self._since
            else:
                return
            self._reported_at = now
            extra = self._extra(call, now)
        line = self.describe(exc, None if lasted is None else extra["outage_s"])
        log.warning(line, extra={**extra, "error": one_line(exc)})

    def now(self) -> float:
        """The reach's clock (monotonic seconds), to date a request's start for `answered`."""
        return self._clock()

    def answered(self, call: str, sent_at: float | None = None) -> None:
        """`call` got an answer from Pub/Sub: ends the outage (one INFO line if it was logged).
        A request sent (`sent_at`, the reach's clock) before the outage's first failure says
        nothing of now: its answer may have been on its way as the connection broke."""
        if self._since is None:  # the common case, without the lock
            return
        now = self._clock()
        with self._lock:
            if self._since is None:
                return
            if sent_at is not None and sent_at < self._since:
                return
            reported, extra = self._reported_at is not None, self._extra(call, now)
            self._since = self._reported_at = None
            self.failures = 0
            self.ends_logged += reported
        if reported:
            log.info(
                f"Pub/Sub reachable again after {extra['outage_s']:.0f} s (at {self.where}, "
                f"subscription {self.subscription})",
                extra=extra,
            )

    def _extra(self, call: str, now: float) -> dict[str, Any]:
        since = self._since if self._since is not None else now
        return {
            "pubsub": self.where,
            "subscription": self.subscription,
            "call": call,
            "since": datetime.fromtimestamp(self._since_wall, UTC).isoformat(timespec="seconds"),
            "outage_s": round(now - since, 1),
            "failures": self.failures,
        }


def one_line(exc: BaseException) -> str:
    """`Type (detail)` on one line, at most 300 characters; a RetryError as its cause."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        exc = exc.cause
    detail = re.sub(r"\s+", " ", str(getattr(exc, "message", None) or exc)).strip()
    text = f"{type(exc).__name__} ({detail or 'no detail'})"
    return text if len(text) <= 300 else text[:299] + "…"


class WatchedSubscriber(pubsub_v1.SubscriberClient):  # type: ignore[misc]  # untyped base
    """The subscriber client, telling `reach` how each request went: the streaming pull's
    responses and errors, the acks, the lease extensions and the unary pulls (a pull that times
    out is an empty answer, so it tells nothing)."""

    def __init__(self, reach: PubSubReach, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reach = reach

    def streaming_pull(self, requests: Any = None, **kwargs: Any) -> Any:
        try:
            call = super().streaming_pull(requests, **kwargs)
        except gexc.GoogleAPICallError as exc:
            self.reach.failed("streaming pull", exc, routine=True)
            raise
        return WatchedStream(call, self.reach)

    def acknowledge(self, *args: Any, **kwargs: Any) -> Any:
        return self._watched("acknowledge", super().acknowledge, args, kwargs)

    def modify_ack_deadline(self, *args: Any, **kwargs: Any) -> Any:
        return self._watched("modify_ack_deadline", super().modify_ack_deadline, args, kwargs)

    def pull(self, *args: Any, **kwargs: Any) -> Any:
        return self._watched("pull", super().pull, args, kwargs)

    def _watched(
        self, call: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        sent_at = self.reach.now()
        try:
            result = method(*args, **kwargs)
        except gexc.DeadlineExceeded as exc:
            if call != "pull":  # a pull's long poll ends so when nothing comes
                self.reach.failed(call, exc)
            raise
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            self.reach.failed(call, exc)
            raise
        self.reach.answered(call, sent_at)
        return result


class WatchedStream:
    """A streaming pull's call, telling `reach` of each response and of the error that ends it
    (the stream ended by the broker, Cancelled, tells nothing). The rest is the call's."""

    def __init__(self, call: Any, reach: PubSubReach) -> None:
        self.call = call
        self.reach = reach

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            response = next(self.call)
        except gexc.Cancelled:
            raise
        except gexc.GoogleAPICallError as exc:
            self.reach.failed("streaming pull", exc, routine=True)
            raise
        self.reach.answered("streaming pull")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.call, name)
