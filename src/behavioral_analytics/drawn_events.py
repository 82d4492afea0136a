"""A person's event as the load generator draws it, made into its payload only when sent.

The generator (`loadgen`) plans each person's next session before that person's first event,
so a run with many people holds millions of planned events at once (for 650,000 people, about
5 million). A planned event keeps the values drawn for it (`DrawnEvent`: about a quarter of the
memory its payload dict took) and `DrawnEvent.payload` builds the payload when the event is
sent, the same bytes as when it was built at once. Pure: no I/O, draws nothing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from behavioral_analytics.synthetic_addresses import client_ip

__all__ = ["HUMAN_USER_AGENTS", "DrawnEvent", "Visit", "agent_for"]

# Browsers' user agents per device type, each with its weight: shares roughly as on the web
# (Chrome most on desktop; Safari and Chrome alike on phones). A person keeps one browser per
# device type (`agent_for`), so browsers and operating systems break down as on a real site.
HUMAN_USER_AGENTS: dict[str, tuple[tuple[str, int], ...]] = {
    "mobile": (
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            2,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            2,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like "
            "Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            1,
        ),
    ),
    "desktop": (
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            3,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/18.1 Safari/605.1.15",
            1,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            1,
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 1),
    ),
    "tablet": (
        (
            "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            2,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            1,
        ),
    ),
}


_WEIGHTED = {
    device: tuple(agent for agent, weight in agents for _ in range(weight))
    for device, agents in HUMAN_USER_AGENTS.items()
}


def agent_for(user_id: str, device: str) -> str:
    """The user agent of `user_id`'s browser on a `device` ("mobile", "desktop" or "tablet";
    another is read as desktop): one of `HUMAN_USER_AGENTS`, picked by weight from a checksum
    of the id, so the same person and device always give the same agent and no draw is made."""
    agents = _WEIGHTED.get(device, _WEIGHTED["desktop"])
    return agents[zlib.crc32(f"{user_id}/{device}".encode()) % len(agents)]


@dataclass(slots=True)
class Visit:
    """What the events of one session share."""

    user_id: str
    session_id: str
    referrer: str
    device: str
    product: str
    agent: str  # the person's browser on this device (`agent_for`)


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
            "user_agent": visit.agent,
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
