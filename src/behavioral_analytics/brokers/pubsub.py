"""The broker on Google Cloud Pub/Sub (or its emulator).

Pull side: one streaming pull whose callback only queues the message; `pull()` hands queued
messages to the worker. Flow control holds at most about two worker batches, and the client
library extends the lease of every message it holds (queued or being worked on) until it is
acked or nacked, so a slow commit never loses its lease while a dead worker's messages come
back after the ack deadline. Acks happen only when the worker calls `ack()`, after its commit.

Pub/Sub counts every delivery, whether the message was nacked or its lease ran out, so
a message given back unprocessed costs a delivery attempt: `worker --until-idle` calls
`stop_receiving()` first and finishes everything the stream delivered (acks then go by plain
RPCs); only a stopping worker (`give_back`, the batches it will not begin) and `close()`
after a stop signal give messages back.

Pub/Sub attaches no reason to a dead-lettered message, so `nack()` records the reason in a
`FailureLog` (a Firestore collection in production) that `pull_dead_letters()` reads back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # no stub re-exports it

from behavioral_analytics.broker import (
    Broker,
    BrokerError,
    DeadLetteredMessage,
    Delivery,
    OutgoingMessage,
)
from behavioral_analytics.brokers.failure_log import (
    FailureLog,
    InMemoryFailureLog,
    failure_key,
)
from behavioral_analytics.brokers.pubsub_admin import (
    MAX_SUBSCRIPTION_RETENTION_DAYS,
    NEVER_EXPIRE,
    create_resources,
    duration,
    endpoint,
)
from behavioral_analytics.brokers.pubsub_messages import (
    SOURCE_SUBSCRIPTION,
    SyncMessage,
    dead_lettered,
    delivery,
)
from behavioral_analytics.brokers.pubsub_publish import publisher_client
from behavioral_analytics.brokers.pubsub_reach import (
    OUTAGE_ERRORS,
    PubSubReach,
    PubSubUnreachable,
    WatchedSubscriber,
)
from behavioral_analytics.telemetry import log

if TYPE_CHECKING:
    from google.cloud.pubsub_v1.subscriber.message import Message

__all__ = ["PubSubBroker", "SubscriptionMissing", "resource_path"]

# Seconds a publish waits past `publish_timeout_s`, by when the client library has given up.
_SETTLE_S = 1.0
# Seconds of each lease the client library takes or extends on a streamed message, and the
# stream's own ack deadline (the library's default is 60): a message Pub/Sub sends into a
# stream that is ending (a nacked one redelivered at once, say) is never read, and comes back
# only when this lease ends. 10 is the least Pub/Sub allows; the library renews the lease of
# every message it holds well before then, so a message in a live stream keeps its lease.
_STREAM_LEASE_S = 10


def resource_path(project: str, kind: str, name: str) -> str:
    """A short name or a full `projects/…/{kind}/…` path → the full path."""
    if name.startswith("projects/"):
        return name
    return f"projects/{project}/{kind}/{name}"


class SubscriptionMissing(BrokerError):
    """The subscription does not exist: retrying cannot help (`permanent`), run `init`."""

    permanent = True

    def __init__(self, subscription: str) -> None:
        super().__init__(
            f"subscription {subscription} does not exist: run `behavioral-analytics init` first"
        )


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# Seconds `_check_answers` waits for Pub/Sub to answer after a pull that got no answer.
_ANSWER_TIMEOUT_S = 5.0


class PubSubBroker(Broker):
    def __init__(
        self,
        project: str,
        *,
        topic: str = "user-events",
        subscription: str = "analytics-processor",
        dead_letter_topic: str = "user-events-dead-letter",
        dead_letter_subscription: str = "analytics-processor-dead-letter",
        ack_deadline_s: int = 60,
        max_delivery_attempts: int = 5,
        ordering: bool = False,
        retention_days: float = 7.0,
        min_backoff_s: float = 10.0,
        max_backoff_s: float = 600.0,
        max_outstanding: int = 2000,
        streaming: bool = True,
        publish_timeout_s: float = 10.0,
        failure_log: FailureLog | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
        subscriber: pubsub_v1.SubscriberClient | None = None,
    ) -> None:
        self.project = project
        self.topic = resource_path(project, "topics", topic)
        self.subscription = resource_path(project, "subscriptions", subscription)
        self.dead_letter_topic = resource_path(project, "topics", dead_letter_topic)
        self.dead_letter_subscription = resource_path(
            project, "subscriptions", dead_letter_subscription
        )
        self.ack_deadline_s = ack_deadline_s
        self.max_delivery_attempts = max_delivery_attempts
        self.ordering = ordering
        self.retention_days = retention_days
        # How long a publish waits for Pub/Sub to confirm: the collector answers 503 then, and
        # the client library has given up too (`pubsub_publish`).
        self.publish_timeout_s = publish_timeout_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_outstanding = max_outstanding
        self.streaming = streaming
        self.failure_log: FailureLog = failure_log or InMemoryFailureLog()
        self._publisher = publisher or publisher_client(ordering=ordering, wait_s=publish_timeout_s)
        # Every request the subscriber makes tells `reach` whether Pub/Sub answered: an outage
        # is logged once, its end too (see pubsub_reach), not again by the worker.
        self.reach = self.outage_log = PubSubReach.for_project(project, _short(self.subscription))
        self._subscriber = subscriber or WatchedSubscriber(self.reach)
        self._queue: queue.Queue[Message] = queue.Queue()
        self._held: dict[str, Message] = {}
        self._held_lock = threading.Lock()
        self._future: pubsub_v1.subscriber.futures.StreamingPullFuture | None = None
        self._start_lock = threading.Lock()
        self._dead_letter_keys: dict[str, str] = {}
        self._closed = False
        self._stop_leasing = threading.Event()
        self._leaser: threading.Thread | None = None
        # Once the stream has stopped, its messages are acked, nacked and extended with plain
        # RPCs: the client library drops requests made on a closed stream's messages.
        self._stream_lock = threading.Lock()
        self._stream_stopped = False

    # -- administration ---------------------------------------------------------------------

    def init(self) -> list[str]:
        done = create_resources(
            self._publisher,
            self._subscriber,
            topic=self.topic,
            subscription=self._subscription_spec(),
            dead_letter_topic=self.dead_letter_topic,
            dead_letter_subscription=self.dead_letter_subscription,
        )
        if self.retention_days > MAX_SUBSCRIPTION_RETENTION_DAYS:
            done.append(
                f"note: subscription retention is capped at {MAX_SUBSCRIPTION_RETENTION_DAYS:g} "
                f"days (asked {self.retention_days:g})"
            )
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            done.append(
                "note: the Pub/Sub service agent needs roles/pubsub.publisher on "
                f"{_short(self.dead_letter_topic)} and roles/pubsub.subscriber on "
                f"{_short(self.subscription)} for dead-lettering (Terraform grants both)"
            )
        return done

    def _subscription_spec(self) -> dict[str, Any]:
        retention = min(self.retention_days, MAX_SUBSCRIPTION_RETENTION_DAYS) * 86400
        return {
            "name": self.subscription,
            "topic": self.topic,
            "ack_deadline_seconds": self.ack_deadline_s,
            "message_retention_duration": duration(retention),
            "retry_policy": {
                "minimum_backoff": duration(self.min_backoff_s),
                "maximum_backoff": duration(self.max_backoff_s),
            },
            "dead_letter_policy": {
                "dead_letter_topic": self.dead_letter_topic,
                "max_delivery_attempts": self.max_delivery_attempts,
            },
            "enable_message_ordering": self.ordering,
            "expiration_policy": NEVER_EXPIRE,
        }

    # -- publishing -------------------------------------------------------------------------

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        futures = []
        for message in messages:
            kwargs: dict[str, Any] = dict(message.attributes)
            if self.ordering and message.ordering_key:
                kwargs["ordering_key"] = message.ordering_key
            futures.append(self._publisher.publish(self.topic, message.data, **kwargs))
        try:
            deadline = time.monotonic() + self.publish_timeout_s + _SETTLE_S
            return [
                future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures
            ]
        except Exception as exc:
            self._resume_ordering_keys(messages)
            raise BrokerError(f"cannot publish to {self.topic}: {self._why(exc)}") from exc

    def _resume_ordering_keys(self, messages: Sequence[OutgoingMessage]) -> None:
        """With ordering on, the library pauses an ordering key whose publish failed for good
        and fails each later publish of it at once until resumed: one failure held a person's
        events out (503) until the process restarted. The failed request's client retries it
        (docs/api.md); a key the library is still retrying is not paused, and stays so."""
        if not self.ordering:
            return
        for key in {message.ordering_key for message in messages if message.ordering_key}:
            with contextlib.suppress(ValueError, RuntimeError):  # not paused; a stopped client
                self._publisher.resume_publish(self.topic, key)

    def _why(self, exc: BaseException) -> str:
        """A publish failure as `Type (detail)`, never empty (a timed-out future says nothing)."""
        if isinstance(exc, gexc.NotFound):
            return "the topic does not exist: run `behavioral-analytics init` first"
        # A future not done in time (concurrent.futures.TimeoutError is TimeoutError), or the
        # library's retry out of time (`pubsub_publish`): no confirmation within the wait.
        if isinstance(exc, TimeoutError | gexc.RetryError):
            return (
                f"DeadlineExceeded (Pub/Sub at {endpoint()} did not answer in "
                f"{self.publish_timeout_s:g} s)"
            )
        detail = getattr(exc, "message", None) or str(exc) or f"no detail, Pub/Sub at {endpoint()}"
        return f"{type(exc).__name__} ({detail})"

    # -- the streaming pull -----------------------------------------------------------------

    def _ensure_streaming(self) -> None:
        future = self._future
        if future is not None and not future.done():
            return
        with self._start_lock:
            if self._closed:
                raise BrokerError("broker is closed")
            future = self._future
            if future is not None and future.done():
                error = future.exception()
                self._future = None
                if isinstance(error, gexc.NotFound):
                    raise SubscriptionMissing(self.subscription) from error
                raise BrokerError(f"streaming pull on {self.subscription} stopped: {error}")
            if future is None:
                self._future = self._subscriber.subscribe(
                    self.subscription,
                    callback=self._queue.put,
                    flow_control=pubsub_v1.types.FlowControl(
                        max_messages=self.max_outstanding,
                        max_lease_duration=3600,
                        max_duration_per_lease_extension=_STREAM_LEASE_S,
                    ),
                )

    def queued(self) -> int:
        """Messages the stream has delivered that `pull` has not handed out yet (their leases
        extended by the client library); 0 with synchronous pulls."""
        return self._queue.qsize()

    def pull(self, max_messages: int, timeout: float) -> list[Delivery]:
        if not self.streaming:
            return self._pull_sync(max_messages, timeout)
        if self._stream_stopped:  # only what the stream delivered before it stopped
            timeout = 0.0
        else:
            self._ensure_streaming()
        messages: list[Message] = []
        with contextlib.suppress(queue.Empty):
            messages.append(self._queue.get(timeout=max(0.0, timeout)))
            while len(messages) < max_messages:
                messages.append(self._queue.get_nowait())
        deliveries = []
        with self._held_lock:
            for message in messages:
                self._held[message.ack_id] = message
                deliveries.append(delivery(message))
        return deliveries

    # -- the synchronous pull (BA_PUBSUB_PULL=sync) -----------------------------------------

    def _start_leaser(self) -> None:
        if self._leaser is None:
            self._leaser = threading.Thread(target=self._lease_loop, daemon=True)
            self._leaser.start()

    def _pull_sync(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Unary pulls, with this broker extending the leases it holds."""
        self._start_leaser()
        try:
            response = self._subscriber.pull(
                request={"subscription": self.subscription, "max_messages": max_messages},
                timeout=max(1.0, timeout),
                retry=None,
            )
        except gexc.DeadlineExceeded:  # nothing to deliver, or no answer at all
            self._check_answers()
            return []
        except gexc.NotFound as exc:
            raise SubscriptionMissing(self.subscription) from exc
        except gexc.ServiceUnavailable as exc:  # the worker retries; the outage is logged
            raise PubSubUnreachable(f"Pub/Sub at {endpoint()} unavailable: {exc.message}") from exc
        except gexc.GoogleAPICallError as exc:
            raise BrokerError(f"pull from {self.subscription} failed: {exc}") from exc
        deliveries = []
        with self._held_lock:
            for item in response.received_messages:
                message = SyncMessage(item)
                self._held[item.ack_id] = message
                deliveries.append(delivery(message))
        return deliveries

    def _check_answers(self) -> None:
        """After a pull with no answer (an empty subscription, or a host that hangs, which
        `worker --until-idle` took for empty): a lease extension of no message, which Pub/Sub
        refuses at once ("No ack ids specified"), tells them apart. Raises PubSubUnreachable
        without an answer within `_ANSWER_TIMEOUT_S`."""
        try:
            self._subscriber.modify_ack_deadline(
                request={
                    "subscription": self.subscription,
                    "ack_ids": [],
                    "ack_deadline_seconds": int(self.ack_deadline_s),
                },
                timeout=_ANSWER_TIMEOUT_S,
                retry=None,
            )
        except OUTAGE_ERRORS as exc:
            raise PubSubUnreachable(self.reach.describe(exc)) from exc
        except gexc.GoogleAPICallError:
            return  # an answer: the refusal of an empty request

    def _lease_loop(self) -> None:
        every = max(1.0, self.ack_deadline_s / 3)
        while not self._stop_leasing.wait(every):
            try:
                self._modack(self._leased(), self.ack_deadline_s)
            except Exception:  # the thread lives on: the next round extends them again
                log.exception("changing leases failed", extra={"subscription": self.subscription})

    def _leased(self) -> list[str]:
        """Ack ids of the messages this broker holds: handed to the worker, or still queued."""
        with self._held_lock:
            return [*self._held, *(m.ack_id for m in list(self._queue.queue))]

    def _modack(self, ack_ids: list[str], seconds: int) -> None:
        """Set the leases of `ack_ids` to end `seconds` from now (0: deliverable again after the
        retry policy's backoff), 1,000 ids a request. A request that fails is logged, never
        raised (an outage by `reach`, once): a lease not extended runs out and its message is
        redelivered, then deduped; one not ended runs to its deadline first. (`RetryError`, the
        client library's retries giving up, is no `GoogleAPICallError`.)"""
        for start in range(0, len(ack_ids), 1000):
            chunk = ack_ids[start : start + 1000]
            try:
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": chunk,
                        "ack_deadline_seconds": seconds,
                    },
                    timeout=10,
                )
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
                if not isinstance(exc, OUTAGE_ERRORS):
                    log.warning(
                        "changing leases failed",
                        extra={"messages": len(chunk), "seconds": seconds, "error": str(exc)},
                    )

    def _take(self, ack_ids: Iterable[str]) -> list[Message]:
        with self._held_lock:
            return [m for a in ack_ids if (m := self._held.pop(a, None)) is not None]

    def ack(self, ack_ids: Iterable[str]) -> None:
        messages = self._take(ack_ids)
        with self._stream_lock:
            if self.streaming and not self._stream_stopped:
                for message in messages:
                    message.ack()
                return
        ids = [m.ack_id for m in messages]
        for start in range(0, len(ids), 1000):
            try:
                self._subscriber.acknowledge(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": ids[start : start + 1000],
                    },
                    timeout=30,
                )
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:  # redelivered, deduped
                if not isinstance(exc, OUTAGE_ERRORS):  # an outage is logged by `reach`
                    log.warning("ack failed", extra={"error": str(exc)})

    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        messages = self._take(ack_ids)
        if not messages:
            return
        now = time.time()
        source = _short(self.subscription)
        failures = {
            failure_key(source, m.data, dict(m.attributes)): {
                "message_id": m.message_id,
                "attempt": m.delivery_attempt or 0,
                "at": now,
                "outcome": "nack",
                "reason": reason,
            }
            for m in messages
        }
        try:
            self.failure_log.record(failures)
        except Exception as exc:
            log.warning("could not record delivery failures", extra={"error": str(exc)})
        self._return(messages)

    def give_back(self, ack_ids: Iterable[str]) -> None:
        """A nack that records no failure: no write to the failure log per message."""
        self._return(self._take(ack_ids))

    def _return(self, messages: Sequence[Message]) -> None:
        """Make `messages` deliverable again, after the subscription's retry backoff (each
        delivery still counts)."""
        if not messages:
            return
        with self._stream_lock:
            if self.streaming and not self._stream_stopped:
                for message in messages:
                    message.nack()
                return
        self._modack([m.ack_id for m in messages], 0)

    def extend(self, ack_ids: Iterable[str], seconds: float) -> None:
        seconds = max(10, min(600, int(seconds)))
        with self._held_lock:
            messages = [self._held[a] for a in ack_ids if a in self._held]
        with self._stream_lock:
            if self.streaming and not self._stream_stopped:
                for message in messages:
                    message.modify_ack_deadline(seconds)
                return
        self._modack([m.ack_id for m in messages], seconds)

    # -- dead letters -----------------------------------------------------------------------

    def pull_dead_letters(self, max_messages: int) -> list[DeadLetteredMessage]:
        try:
            response = self._subscriber.pull(
                request={
                    "subscription": self.dead_letter_subscription,
                    "max_messages": max_messages,
                },
                timeout=2.0,
                retry=None,
            )
        except gexc.DeadlineExceeded:  # an empty pull waits for its deadline
            return []
        except OUTAGE_ERRORS as exc:
            raise PubSubUnreachable(self.reach.describe(exc)) from exc
        except gexc.GoogleAPICallError as exc:
            raise BrokerError(f"pull from {self.dead_letter_subscription} failed: {exc}") from exc
        received = list(response.received_messages)
        keyed = []
        for item in received:
            message = item.message
            attributes = dict(message.attributes)
            source = attributes.get(SOURCE_SUBSCRIPTION, _short(self.subscription))
            keyed.append((item, failure_key(source, message.data, attributes)))
        try:
            recorded = self.failure_log.lookup(key for _, key in keyed)
        except Exception as exc:
            log.warning("could not read delivery failures", extra={"error": str(exc)})
            recorded = {}
        result = []
        for item, key in keyed:
            self._dead_letter_keys[item.ack_id] = key
            result.append(dead_lettered(item, recorded.get(key, [])))
        return result

    def ack_dead_letters(self, handles: Iterable[str]) -> None:
        handles = list(handles)
        if not handles:
            return
        try:
            self._subscriber.acknowledge(
                request={"subscription": self.dead_letter_subscription, "ack_ids": handles},
                timeout=30,
            )
        except OUTAGE_ERRORS as exc:
            raise PubSubUnreachable(self.reach.describe(exc)) from exc
        except gexc.GoogleAPICallError as exc:
            raise BrokerError(f"ack on {self.dead_letter_subscription} failed: {exc}") from exc
        keys = [k for h in handles if (k := self._dead_letter_keys.pop(h, None))]
        try:
            self.failure_log.forget(keys)
        except Exception as exc:
            log.warning("could not clear delivery failures", extra={"error": str(exc)})

    # -- lifecycle --------------------------------------------------------------------------

    def ping(self, timeout: float = 5.0) -> None:
        try:
            self._publisher.get_topic(request={"topic": self.topic}, timeout=timeout, retry=None)
        except gexc.NotFound as exc:
            raise BrokerError(f"topic {self.topic} not found (run init)") from exc
        except gexc.GoogleAPICallError as exc:
            raise BrokerError(f"Pub/Sub unreachable: {exc}") from exc

    def stop_receiving(self, timeout: float = 10.0) -> bool:
        """End the streaming pull, so that nothing more is delivered, and keep what it already
        delivered: `pull` hands that out without waiting, this broker extends its leases and
        acks it with plain RPCs. A worker that finishes it gives nothing back (each message
        given back, nacked or left to expire, costs a delivery attempt). False with the
        synchronous pull, which receives nothing ahead of `pull`."""
        if not self.streaming:
            return False
        with self._start_lock, self._stream_lock:
            self._stream_stopped = True
            future, self._future = self._future, None
        self._end_stream(future, timeout)
        self._modack(self._leased(), self.ack_deadline_s)
        self._start_leaser()
        return True

    def _end_stream(
        self, future: pubsub_v1.subscriber.futures.StreamingPullFuture | None, timeout: float
    ) -> None:
        """Cancel the stream and wait for its shutdown: requests made on its messages before
        then are sent (the library nacks only what it never handed to the callback)."""
        if future is not None:
            future.cancel()
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the streaming pull, then give back what the worker never took (after a stop
        signal; `worker --until-idle` takes everything first, see `stop_receiving`)."""
        with self._start_lock, self._stream_lock:
            self._closed = self._stream_stopped = True
            future, self._future = self._future, None
        self._stop_leasing.set()
        self._end_stream(future, timeout)
        unclaimed: list[Message] = []
        with contextlib.suppress(queue.Empty):
            while True:
                unclaimed.append(self._queue.get_nowait())
        if unclaimed:
            # The stream is gone, so its messages are nacked with a plain RPC.
            log.info(
                "gave back messages the worker did not take",
                extra={"count": len(unclaimed), "subscription": self.subscription},
            )
            try:
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": [m.ack_id for m in unclaimed],
                        "ack_deadline_seconds": 0,
                    },
                    timeout=timeout,
                    retry=None,
                )
            except gexc.GoogleAPICallError as exc:
                log.warning(
                    "could not give back the messages the worker did not take: they come back "
                    "when their lease ends",
                    extra={"count": len(unclaimed), "error": str(exc)},
                )
        with contextlib.suppress(Exception):
            self._publisher.stop()
        with contextlib.suppress(Exception):
            self._subscriber.close()
