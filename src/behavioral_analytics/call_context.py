"""Where a canonical event keeps its Segment call's context. Pure.

The collector keeps a call's `context` (the batch's, overridden key by key by the call's own,
with the caller's address in `ip`) in the event's `properties.context`. A call whose own
properties have a `context` (`analytics.track("Clicked", {context: "pricing_table"})`) keeps
that value where its sender put it, and the call's context goes to `properties["$context"]`
(names starting with `$` are the pipeline's: `$derived`, `$bot`). The client's raw times are
kept likewise in `client_time`, else `$client_time`.

Whatever reads the call's context (the breakdowns' page, referrer, campaign and device, the
user agent, the address and its country, IP truncation, hashed fields under `context.`) takes
it from `segment_context`: until 2026-12-05 such a call lost its context, so its page,
referrer, campaign, browser, device and country were `(none)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLIENT_TIME",
    "CONTEXT",
    "MOVED_CLIENT_TIME",
    "MOVED_CONTEXT",
    "segment_context",
    "with_call_fields",
]

CONTEXT = "context"
MOVED_CONTEXT = "$context"
CLIENT_TIME = "client_time"
MOVED_CLIENT_TIME = "$client_time"


def segment_context(properties: Mapping[str, Any]) -> dict[str, Any] | None:
    """The call's context in `properties`: `$context` when the collector moved it there, else
    `context`; None when neither is an object."""
    moved = properties.get(MOVED_CONTEXT)
    if type(moved) is dict:
        return moved
    context = properties.get(CONTEXT)
    return context if type(context) is dict else None


def with_call_fields(
    properties: dict[str, Any], context: dict[str, Any] | None, client_times: dict[str, Any] | None
) -> dict[str, Any]:
    """`properties` with the call's `context` and the client's raw times added under their
    names, else (the properties have a value of their own there) under the `$` names; a new
    dict when anything is added. Neither is added where both names are taken."""
    if context:
        if CONTEXT not in properties:
            properties = {**properties, CONTEXT: context}
        elif MOVED_CONTEXT not in properties:
            properties = {**properties, MOVED_CONTEXT: context}
    if client_times is not None:
        if CLIENT_TIME not in properties:
            properties = {**properties, CLIENT_TIME: client_times}
        elif MOVED_CLIENT_TIME not in properties:
            properties = {**properties, MOVED_CLIENT_TIME: client_times}
    return properties
