"""Pub/Sub's messages as the broker port's values: a delivery (from the streaming or the unary
pull) and a dead-lettered copy, whose source attributes Pub/Sub sets when it dead-letters."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from behavioral_analytics.broker import DeadLetteredMessage, Delivery
from behavioral_analytics.brokers.failure_log import DEAD_LETTER_ATTRIBUTE_PREFIX

if TYPE_CHECKING:
    from google.cloud.pubsub_v1.subscriber.message import Message

__all__ = ["SOURCE_SUBSCRIPTION", "SyncMessage", "dead_lettered", "delivery"]

SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
SOURCE_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
SOURCE_DELIVERIES = "CloudPubSubDeadLetterSourceDeliveryCount"


class SyncMessage:
    """A message from a unary pull, shaped like the streaming pull's Message."""

    def __init__(self, item: Any) -> None:
        message = item.message
        self.ack_id: str = item.ack_id
        self.message_id: str = message.message_id
        self.data: bytes = message.data
        self.attributes = message.attributes
        self.publish_time = message.publish_time
        self.delivery_attempt: int | None = item.delivery_attempt or None
        self.ordering_key: str = message.ordering_key


def delivery(message: Message) -> Delivery:
    return Delivery(
        ack_id=message.ack_id,
        message_id=message.message_id,
        data=message.data,
        attributes=dict(message.attributes),
        publish_time=message.publish_time.timestamp(),
        # None without a dead-letter policy: Pub/Sub does not count then.
        delivery_attempt=message.delivery_attempt or 0,
        ordering_key=message.ordering_key or None,
    )


def dead_lettered(item: Any, attempts: list[dict[str, Any]]) -> DeadLetteredMessage:
    """The dead-lettered copy, with its delivery count from one source (the attribute Pub/Sub
    sets) in both the default reason and the last entry of `attempts`."""
    message = item.message
    attributes = dict(message.attributes)
    deliveries: int | None = None
    with contextlib.suppress(KeyError, ValueError):
        deliveries = int(attributes[SOURCE_DELIVERIES])
    publish_time = message.publish_time.timestamp()
    with contextlib.suppress(KeyError, ValueError):
        publish_time = datetime.fromisoformat(attributes[SOURCE_PUBLISH_TIME]).timestamp()
    original = {
        k: v for k, v in attributes.items() if not k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)
    }
    reasons = [a["reason"] for a in attempts if a.get("reason")]
    count = f"{deliveries} deliveries" if deliveries else "the maximum of deliveries"
    reason = reasons[-1] if reasons else f"max_delivery_attempts: {count}, no ack"
    message_id = next(
        (a["message_id"] for a in reversed(attempts) if a.get("message_id")), message.message_id
    )
    return DeadLetteredMessage(
        handle=item.ack_id,
        message_id=message_id,
        data=message.data,
        attributes=original,
        publish_time=publish_time,
        attempts=[*attempts, {"deliveries": deliveries, "outcome": "dead_lettered"}],
        reason=reason,
    )
