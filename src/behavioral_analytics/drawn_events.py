"""A person's event as the load generator draws it, made into its payload only when sent.

The generator (`loadgen`) plans each person's next session before that person's first event,
so a run with many people holds millions of planned events at once (for 650,000 people, about
5 million). A planned event keeps the values drawn for it (`DrawnEvent`: about a quarter of the
memory its payload dict took) and `DrawnEvent.payload` builds the payload when the event is
sent, the same bytes as when it was built at once. Pure: no I/O, draws nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from behavioral_analytics.synthetic_addresses import client_ip

__all__ = ["HUMAN_USER_AGENT", "DrawnEvent", "Visit"]

HUMAN_USER_AGENT = "BehavioralAnalytics/1.0"


@dataclass(slots=True)
class Visit:
    """What the events of one session share."""

    user_id: str
    session_id: str
    referrer: str
    device: str
    product: str


@dataclass(slots=True)
class DrawnEvent:
    """A person's event as the values drawn for it (`loadgen`'s draws, in its order)."""

    visit: Visit
    event_type: str
    page: str
    extra: str | tuple[float, str] | None  # the query, the button, or (amount, currency)
    event_number: int

    def payload(self) -> dict[str, Any]:
        """The event as sent, its `timestamp` 0 until the sender stamps it: the recipe's shape
        (`event_id`, `user_id`, `event_type`, `timestamp`, `session_id`, `properties`)."""
        visit, event_type, extra = self.visit, self.event_type, self.extra
        properties: dict[str, Any] = {
            "page_url": self.page,
            "referrer": visit.referrer,
            "device_type": visit.device,
            "user_agent": HUMAN_USER_AGENT,
            "ip": client_ip(visit.user_id),
        }
        if event_type == "search":
            properties["query"] = extra
        elif event_type == "button_click":
            properties["button_id"] = extra
        elif event_type == "add_to_cart":
            properties["product_id"] = visit.product
        elif event_type == "purchase":
            assert isinstance(extra, tuple)
            properties.update(product_id=visit.product, amount=extra[0], currency=extra[1])
        return {
            "event_id": f"evt_{self.event_number}",
            "user_id": visit.user_id,
            "event_type": event_type,
            "timestamp": 0.0,  # stamped when emitted
            "session_id": visit.session_id,
            "properties": properties,
        }
