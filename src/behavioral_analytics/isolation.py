"""Which redelivered messages are committed together: the schedule that isolates a message
that kills the worker's process (out of memory, a native crash), which cannot be judged
in-process as a merely bad one is.

On its second delivery a message is committed in a run of `RETRY_CHUNK` (message-id order);
from the third on, alone, in message-id order on even attempts and the reverse on odd ones. A
crash loop on one message then commits, on the second delivery, the runs before the killer's;
on the third (reverse), everything after the killer; on the fourth (forward), its run-mates
before it: with Pub/Sub's minimum of 5 attempts (our default) only the killer reaches the dead
letters, and a single crash costs the redelivered messages runs of 100, not one commit each.
Attempts come from the broker: the local broker counts every lease; Pub/Sub sets
`delivery_attempt` only on a subscription with a dead-letter policy (`init` creates one), and
without it every delivery looks like a first one, so no isolation happens.
"""

from __future__ import annotations

from collections.abc import Sequence

from behavioral_analytics.broker import Delivery

__all__ = ["RETRY_CHUNK", "isolation_order", "isolation_units"]

RETRY_CHUNK = 100  # messages committed together on their second delivery


def isolation_order(deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Redelivered messages in the order they are committed: by message id, reversed when the
    highest attempt among them is odd (see the module's docstring)."""
    ordered = sorted(deliveries, key=lambda d: d.message_id)
    if max((d.delivery_attempt for d in deliveries), default=0) % 2:
        ordered.reverse()
    return ordered


def isolation_units(redelivered: Sequence[Delivery]) -> list[Sequence[Delivery]]:
    """What is committed together among redelivered messages: on their second delivery, runs of
    `RETRY_CHUNK` in `isolation_order`; from the third on, each alone, in `isolation_order`."""
    second = isolation_order([d for d in redelivered if d.delivery_attempt == 2])
    later = isolation_order([d for d in redelivered if d.delivery_attempt > 2])
    chunks = [second[i : i + RETRY_CHUNK] for i in range(0, len(second), RETRY_CHUNK)]
    return [*chunks, *([d] for d in later)]
