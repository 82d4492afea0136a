"""The Broker port: Pub/Sub semantics the worker relies on, whatever carries the messages.

Adapters live in `behavioral_analytics.brokers`: `local` (a SQLite file, the default) and
`pubsub` (Google Cloud Pub/Sub). Only `behavioral_analytics.wiring` builds one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Broker",
    "BrokerError",
    "DeadLetteredMessage",
    "Delivery",
    "OutageLog",
    "OutgoingMessage",
    "end_logged_by",
    "is_permanent",
    "logged_ends",
    "was_reported",
]

# Attributes a replay carries so that a message without an event_id or a timestamp keeps its
# identity (both stand in for missing fields, and both are part of the dedupe key).
ORIGINAL_MESSAGE_ID = "ba_original_message_id"
ORIGINAL_PUBLISH_TIME = "ba_original_publish_time"


class BrokerError(Exception):
    """The broker could not do what was asked (unreachable, misconfigured, …).

    `permanent` is true for an error retrying cannot cure (a subscription that does not
    exist): the worker stops with its message instead of pulling again."""

    permanent: bool = False

    def __init__(self, *args: object, permanent: bool | None = None) -> None:
        super().__init__(*args)
        if permanent is not None:
            self.permanent = permanent


def is_permanent(exc: BaseException) -> bool:
    """Whether `exc` is a broker error that retrying cannot cure (`BrokerError.permanent`)."""
    return isinstance(exc, BrokerError) and exc.permanent


def was_reported(exc: BaseException | None) -> bool:
    """Whether `exc` is a broker error the broker has logged already (its `reported`: Pub/Sub
    unreachable, `brokers.pubsub_reach`)."""
    return bool(getattr(exc, "reported", False))


def logged_ends(broker: Broker) -> int:
    """How many outage ends `broker` has logged itself (`Broker.outage_log`; 0 without one)."""
    return broker.outage_log.ends_logged if broker.outage_log else 0


def end_logged_by(broker: Broker, pull: bool = False) -> Callable[[BaseException | None], bool]:
    """A `StallWatch` call's `quiet` for a call to `broker`, so that an outage's end is logged
    once: by the broker if it logged an end meanwhile, is in an outage it logged (an answer to
    a request sent before one began does not end it), or reported the call's error; a pull's
    error, by the worker's feed loop."""
    ends = logged_ends(broker)

    def quiet(error: BaseException | None) -> bool:
        down = broker.outage_log is not None and broker.outage_log.down
        failed_pull = pull and error is not None
        return logged_ends(broker) != ends or down or was_reported(error) or failed_pull

    return quiet


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    ordering_key: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased message. Settle it with `ack_id` before its lease runs out."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: float
    delivery_attempt: int
    ordering_key: str | None = None

    @property
    def identity(self) -> str:
        """The id that stands in for a missing event_id: stable across redeliveries and replays."""
        return self.attributes.get(ORIGINAL_MESSAGE_ID) or self.message_id

    @property
    def first_published(self) -> float:
        """When the message was first published: stands in for a missing timestamp."""
        original = self.attributes.get(ORIGINAL_PUBLISH_TIME)
        if original:
            try:
                return float(original)
            except ValueError:
                pass
        return self.publish_time


@dataclass(frozen=True, slots=True)
class DeadLetteredMessage:
    """A message the broker gave up on after its maximum delivery attempts."""

    handle: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: float
    attempts: list[dict[str, Any]]
    reason: str


class OutageLog(Protocol):
    """What logs a broker's outages itself, and their ends, with more than the worker knows
    (Pub/Sub's `PubSubReach`: where it is, how long it was down)."""

    @property
    def ends_logged(self) -> int:
        """How many outage ends it has logged so far: the worker logs none of its own for an
        outage whose end it has logged."""
        ...

    @property
    def down(self) -> bool:
        """Whether an outage it logged is not over yet (it will log the end itself)."""
        ...


class Broker(abc.ABC):
    """Topics fan out to subscriptions; a subscription leases batches of messages.

    A leased message is redelivered when its lease expires without an ack (a crashed worker)
    or after a nack. After `max_delivery_attempts` it moves to the dead letters instead.
    """

    # What logs this broker's outages and their ends itself; None: the worker logs them.
    outage_log: OutageLog | None = None

    @abc.abstractmethod
    def init(self) -> list[str]:
        """Create the topic, subscription and dead-letter path if missing; say what was done."""

    @abc.abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish to the configured topic; return message ids once the publish is durable."""

    @abc.abstractmethod
    def pull(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Lease up to `max_messages`, waiting at most `timeout` seconds for the first."""

    @abc.abstractmethod
    def ack(self, ack_ids: Iterable[str]) -> None: ...

    @abc.abstractmethod
    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        """Give messages back for redelivery after a backoff, recording why they failed."""

    def give_back(self, ack_ids: Iterable[str]) -> None:
        """Return messages unprocessed rather than failed (the batches a stopping worker will
        not begin): redelivered as after a nack (after the retry backoff), each delivery still
        counted where the broker counts them (Pub/Sub does with a dead-letter policy, which
        `init` sets), but not recorded as a failure where that costs a write per message
        (Pub/Sub's failure log). By default, a nack with the reason "worker stopping"."""
        self.nack(ack_ids, "worker stopping")

    @abc.abstractmethod
    def extend(self, ack_ids: Iterable[str], seconds: float) -> None:
        """Push the lease deadline of messages still being worked on."""

    @abc.abstractmethod
    def pull_dead_letters(self, max_messages: int) -> list[DeadLetteredMessage]:
        """Messages the broker dead-lettered, for the drainer to record in the store."""

    @abc.abstractmethod
    def ack_dead_letters(self, handles: Iterable[str]) -> None: ...

    def backlog(self, through: int | None = None) -> int | None:
        """Messages not yet acked on the subscription, where the broker can tell cheaply (else
        None); with `through` (a `backlog_mark`), only those published up to that mark."""
        return None

    def backlog_mark(self) -> int | None:
        """A position in the subscription: every message published so far is at or before it.
        None where the broker cannot tell (then `worker --until-idle` waits for quiet)."""
        return None

    def stop_receiving(self) -> bool:
        """Stop taking new messages from the service, keeping what was already delivered for
        `pull` to hand out without waiting. True where the broker did so (Pub/Sub's streaming
        pull, whose buffered messages would otherwise be given back, each at the cost of a
        delivery attempt); False where nothing is received ahead of `pull` (the default)."""
        return False

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise BrokerError if the broker cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
