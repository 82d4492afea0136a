"""The broker's dead letters as the store records them: what `Worker.drain_dead_letters` moves
from the broker (a message that reached `BA_MAX_DELIVERY_ATTEMPTS`) into the store's dead
letters, where `dlq` shows and replays them."""

from __future__ import annotations

from behavioral_analytics.broker import (
    ORIGINAL_MESSAGE_ID,
    ORIGINAL_PUBLISH_TIME,
    DeadLetteredMessage,
)
from behavioral_analytics.store import NewDeadLetter

__all__ = ["to_dead_letter"]


def to_dead_letter(message: DeadLetteredMessage) -> NewDeadLetter:
    """The store's record of a message the broker dead-lettered: its detail states the delivery
    count the broker's own entries give (Pub/Sub's `deliveries`, the local broker's last
    `attempt`), the count its reason states too when it has no recorded one."""
    counts = [
        int(n)
        for a in message.attempts
        for n in (a.get("deliveries"), a.get("attempt"))
        if isinstance(n, int | str) and str(n).isdigit()
    ]
    return NewDeadLetter(
        reason=message.reason,
        detail=f"the broker gave up after {max(counts, default=0) or 'the maximum of'} "
        "delivery attempts",
        data=message.data,
        message_id=message.attributes.get(ORIGINAL_MESSAGE_ID) or message.message_id,
        attributes=message.attributes,
        source="broker",
        received_at=float(message.attributes.get(ORIGINAL_PUBLISH_TIME) or message.publish_time),
        attempts=message.attempts,
    )
