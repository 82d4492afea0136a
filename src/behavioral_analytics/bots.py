"""Bot flagging: user agents classified by crawlerdetect, cached per user-agent string."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from crawlerdetect import CrawlerDetect

from behavioral_analytics.call_context import segment_context

__all__ = ["BOT_PROPERTY", "bot_name", "is_bot", "user_agent"]

# Set by the worker on a bot's event: the crawler's name as crawlerdetect matched it.
BOT_PROPERTY = "$bot"

_detector = CrawlerDetect()


@lru_cache(maxsize=20_000)
def _classify(agent: str) -> str | None:
    # crawlerdetect costs up to a millisecond per string; traffic repeats few distinct agents.
    if not _detector.isCrawler(agent):
        return None
    return _detector.getMatches() or "bot"


def user_agent(properties: Mapping[str, Any]) -> str | None:
    """The recipe's `properties.user_agent`, else Segment's `context.userAgent`
    (`call_context.segment_context`)."""
    agent = properties.get("user_agent")
    if isinstance(agent, str):
        return agent
    context = segment_context(properties)
    if context is not None:
        agent = context.get("userAgent", context.get("user_agent"))
        if isinstance(agent, str):
            return agent
    return None


def bot_name(properties: Mapping[str, Any]) -> str | None:
    agent = user_agent(properties)
    return _classify(agent[:1024]) if agent else None


def is_bot(properties: Mapping[str, Any]) -> bool:
    """Whether the worker flagged the event as a bot's."""
    return BOT_PROPERTY in properties
