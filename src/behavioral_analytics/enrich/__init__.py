"""What is derived from an event at ingestion: browser, OS and device type from its user agent,
country from its IP address (docs/breakdowns.md, "Where each value comes from").

An adapter over third-party parsers: only `wiring` imports it. The core takes the result as a
plain callable (`dimensions.Derive`) and applies it to an event's properties before IP
addresses are truncated: the collector for every event it accepts, the worker for an event
published without one.
"""

from __future__ import annotations

from typing import Any

from behavioral_analytics.bots import user_agent
from behavioral_analytics.dimensions import DERIVED
from behavioral_analytics.enrich import countries, user_agents

__all__ = ["Deriver", "build_deriver"]


class Deriver:
    """Sets `properties["$derived"]` = {"browser", "os", "device", "country": str, each absent
    when unknown, "parsers": {"user_agent": "<ua-parser version>/<ua-parser-builtins version>",
    "geo": "<iptocc version>"}}, replacing any value there. The user agent is the recipe's
    `user_agent`, else Segment's `context.userAgent` (bots.py); the address: `countries`."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deriver)  # stateless: rules holding one compare as values

    def __hash__(self) -> int:
        return hash(Deriver)

    def __call__(self, properties: dict[str, Any]) -> None:
        derived: dict[str, Any] = {}
        agent = user_agent(properties)
        if agent:
            derived.update(user_agents.agent_facts(agent))
        address = countries.client_address(properties)
        if address is not None and (country := countries.country_of(address)) is not None:
            derived["country"] = country
        derived["parsers"] = {"user_agent": user_agents.PARSER, "geo": countries.PARSER}
        properties[DERIVED] = derived


def build_deriver() -> Deriver:
    """The deriver over the installed parsers (their rules load on the first parse)."""
    return Deriver()
