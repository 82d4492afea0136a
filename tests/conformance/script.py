"""The scripted sessions every library plays, and the faults injected while it does.

A call is a plain JSON object (`call`, then the fields a person would pass to the library: ids,
`event`, `name`, `category`, `properties`, `traits`, `context`, `timestamp` as RFC 3339), so that
the Python, Node and browser drivers all read the same script. The drivers let the libraries
make their own message ids and times and report them back.

The texts are chosen to break what the issue found broken: an event name holding an emoji
sequence with ZERO WIDTH JOINER, a user id and a property in Persian with ZERO WIDTH NON-JOINER,
a page `category`, an event dated two hours back, an anonymous call, `alias` and `group`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.conformance.fault_proxy import Fault

__all__ = [
    "STORE_SIDE_CALLS",
    "browser_batch_faults",
    "browser_batch_session",
    "browser_faults",
    "browser_session",
    "iso",
    "server_faults",
    "server_session",
    "skewed_clock_session",
]

Call = dict[str, Any]

# Calls the store keeps by rules of their own (`named_calls`: an alias links, a group call makes
# a member): checked by what the store made of them, not as events stored as sent.
STORE_SIDE_CALLS = ("alias", "group")
EMOJI_EVENT = "Dev \U0001f469\u200d\U0001f4bb Login"  # woman technologist: ZWJ inside
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want": ZWNJ inside
PAST_S = 2 * 3600


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def server_session(prefix: str, now_s: float | None = None) -> list[Call]:
    """What a server-side app sends: a person identified from an anonymous id, then their
    events. Every call names its person (server libraries keep no identity state)."""
    now_s = time.time() if now_s is None else now_s
    user = f"{prefix}-\u06a9\u0627\u0631\u0628\u0631\u200c\u0647\u0627"  # ZWNJ in a user id
    anon = f"{prefix}-anon"
    return [
        {
            "call": "identify",
            "userId": user,
            "anonymousId": anon,
            "traits": {"plan": "pro", "email": f"{prefix}@example.com"},
        },
        {
            "call": "track",
            "anonymousId": anon,
            "event": "Signup Started",
            "properties": {"source": "ads"},
        },
        {
            "call": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {
                "order_id": f"{prefix}-o1",
                "revenue": 42.5,
                "currency": "EUR",
                "products": [{"sku": "s-1", "quantity": 2}],
            },
            "context": {"campaign": {"name": "spring", "source": "newsletter"}},
        },
        {"call": "track", "userId": user, "event": EMOJI_EVENT, "properties": {"note": PERSIAN}},
        {
            "call": "track",
            "userId": user,
            "event": "Report Exported",
            "properties": {"rows": 1200},
            "timestamp": iso(now_s - PAST_S),
        },
        {
            "call": "page",
            "userId": user,
            "category": "Docs",
            "name": "Getting Started",
            "properties": {"url": "https://example.com/docs/start", "path": "/docs/start"},
        },
        {
            "call": "screen",
            "userId": user,
            "category": "Onboarding",
            "name": "Welcome",
            "properties": {"step": 1},
        },
        {"call": "alias", "userId": user, "previousId": anon},
        {
            "call": "group",
            "userId": user,
            "groupId": f"{prefix}-acme",
            "traits": {"name": "Acme", "plan": "enterprise"},
        },
    ]


def server_faults() -> list[Fault]:
    """A delivered batch whose answer is lost, the same batch refused with 503, and another
    batch rate-limited with 429 + Retry-After."""
    return [
        Fault("drop", "Order Completed"),
        Fault("503", "Order Completed"),
        Fault("429", "Getting Started"),
    ]


def browser_session(prefix: str, now_s: float | None = None) -> list[Call]:
    """What a site sends through analytics.js: an anonymous landing page, an identify, then
    the identified visitor's events. analytics.js keeps the ids itself: calls name none but
    `identify`'s and `alias`'s."""
    now_s = time.time() if now_s is None else now_s
    user = f"{prefix}-\u06a9\u0627\u0631\u0628\u0631\u200c\u0647\u0627"
    return [
        {"call": "page", "name": "Landing", "properties": {"variant": "b"}},
        {"call": "identify", "userId": user, "traits": {"plan": "pro"}},
        {
            "call": "track",
            "event": "Order Completed",
            "properties": {"order_id": f"{prefix}-o1", "revenue": 42.5, "currency": "EUR"},
        },
        {"call": "track", "event": EMOJI_EVENT, "properties": {"note": PERSIAN}},
        {
            "call": "track",
            "event": "Report Exported",
            "properties": {"rows": 1200},
            "timestamp": iso(now_s - PAST_S),
        },
        {
            "call": "page",
            "category": "Docs",
            "name": "Getting Started",
            "properties": {"section": "intro"},
        },
        {"call": "screen", "category": "Onboarding", "name": "Welcome", "properties": {"step": 1}},
        {"call": "alias", "userId": f"{prefix}-renamed"},
        {"call": "group", "groupId": f"{prefix}-acme", "traits": {"name": "Acme"}},
    ]


def browser_faults() -> list[Fault]:
    """The anonymous page delivered but its answer lost (its retry carries the `userId` the
    identify added meanwhile), a track refused with 503, another rate-limited with 429."""
    return [
        Fault("drop", "Landing"),
        Fault("503", "Order Completed"),
        Fault("429", EMOJI_EVENT),
    ]


def browser_batch_session(prefix: str) -> list[Call]:
    """analytics.js in batching mode (`/b`): a search whose text the page cut in the middle of
    an emoji (a lone UTF-16 surrogate, which must not cost its neighbours in the batch)."""
    user = f"{prefix}-user"
    return [
        {"call": "page", "name": "Landing", "properties": {"variant": "a"}},
        {"call": "identify", "userId": user, "traits": {"plan": "free"}},
        {
            "call": "track",
            "event": "Products Searched",
            "properties": {"query": "burger \U0001f354", "results": 3},
            "truncateMidEmoji": ["query"],
        },
        {"call": "track", "event": "Order Completed", "properties": {"revenue": 9.5}},
        {"call": "track", "event": EMOJI_EVENT, "properties": {"note": PERSIAN}},
        {"call": "page", "category": "Docs", "name": "Getting Started", "properties": {}},
        {"call": "alias", "userId": f"{prefix}-renamed"},
        {"call": "group", "groupId": f"{prefix}-acme", "traits": {"name": "Acme"}},
    ]


def browser_batch_faults() -> list[Fault]:
    return [
        Fault("drop", "Landing"),
        Fault("503", "Order Completed"),
        Fault("429", "Getting Started"),
    ]


def skewed_clock_session(prefix: str) -> list[Call]:
    """A few calls from a device whose clock runs two hours ahead: beyond the accepted future
    skew unless the collector corrects the time with `sentAt`."""
    return [
        {"call": "page", "name": "Landing", "properties": {}},
        {"call": "identify", "userId": f"{prefix}-user", "traits": {}},
        {"call": "track", "event": "Order Completed", "properties": {"revenue": 1.0}},
        {"call": "alias", "userId": f"{prefix}-renamed"},
        {"call": "group", "groupId": f"{prefix}-acme", "traits": {"name": "Acme"}},
    ]
