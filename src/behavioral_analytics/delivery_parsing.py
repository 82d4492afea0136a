"""A batch of broker deliveries parsed for a commit: the events, and a dead letter with its
reason for every message the core cannot take.

Every message is judged alone (`named_calls.judged`): one whose parsing raises becomes a dead
letter (`unprocessable`, the exception's type and message) beside its batch-mates, never their
loss. A too-large message is kept cut to the limit, so that it can be inspected and replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from behavioral_analytics.broker import Delivery
from behavioral_analytics.events import UNPROCESSABLE, Event, Limits, Rejection
from behavioral_analytics.named_calls import judged
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.telemetry import log

__all__ = ["parse_deliveries"]


def parse_deliveries(
    deliveries: Sequence[Delivery],
    *,
    limits: Limits,
    enrich: Callable[[Event], object],
    now: Callable[[], float],
) -> tuple[list[Event], list[NewDeadLetter], dict[str, int]]:
    """The events of `deliveries` (each enriched in place by `enrich`), in order; the dead
    letters of the rest, their attempt dated by `now()` (epoch seconds); and the count of the
    rest by rejection reason. Raises nothing a message causes."""
    events: list[Event] = []
    dead_letters: list[NewDeadLetter] = []
    rejected: Counter[str] = Counter()
    for delivery in deliveries:
        parsed: Event | Rejection
        try:
            parsed = judged(
                delivery.data,
                message_id=delivery.identity,
                received_at=delivery.first_published,
                limits=limits,
            )
            if isinstance(parsed, Event):
                enrich(parsed)
        except Exception as exc:  # one message's fault must not sink its batch
            log.error(
                "message could not be parsed",
                extra={"message_id": delivery.message_id, "error": type(exc).__name__},
            )
            parsed = Rejection(UNPROCESSABLE, f"{type(exc).__name__}: {exc}"[:500])
        if isinstance(parsed, Event):
            events.append(parsed)
        else:
            rejected[parsed.reason] += 1
            dead_letters.append(
                NewDeadLetter(
                    reason=parsed.reason,
                    detail=parsed.detail,
                    data=delivery.data[: limits.max_message_bytes],  # too_large: cut
                    message_id=delivery.identity,
                    attributes=delivery.attributes,
                    source="worker",
                    received_at=delivery.first_published,
                    attempts=[{"attempt": delivery.delivery_attempt, "at": now()}],
                )
            )
    return events, dead_letters, dict(rejected)
