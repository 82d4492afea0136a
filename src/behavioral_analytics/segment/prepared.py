"""Validation of normalized payloads: the events a request's calls make, as the collector
publishes them and answers them, and the rejected ones with their reasons. Pure: the time of
receipt and the id factory are passed in."""

from __future__ import annotations

import copy
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from behavioral_analytics.dimensions import DERIVED, Derive
from behavioral_analytics.events import (
    DEFAULT_LIMITS,
    NAMED_CALLS,
    Event,
    Limits,
    Rejection,
    validate_event,
)
from behavioral_analytics.privacy import scrub
from behavioral_analytics.segment.calls import (
    SegmentPayload,
    canonical_encoder,
    epoch_seconds,
    replace_lone_surrogates,
    segment_spelling,
)

__all__ = [
    "KEPT_AS",
    "KEPT_EVENT",
    "TIME_WINDOW_REASONS",
    "Outcome",
    "Prepared",
    "derive_into",
    "prepare",
]

# Rejections of an event for its time alone: outside the window around its receipt that the
# limits accept (`BA_MAX_EVENT_AGE_DAYS`, `BA_MAX_FUTURE_SKEW`).
TIME_WINDOW_REASONS = frozenset({"timestamp_too_old", "timestamp_in_future"})
# The attribute, and its value, of a collector's dead letter that keeps the event it made of a
# call refused for its time alone (`Outcome.kept_events`) rather than the call as sent.
KEPT_AS = "kept_as"
KEPT_EVENT = "event"


@dataclass(slots=True)
class Prepared:
    """The outcome of a request's events: what to publish, and what was rejected and why."""

    accepted: list[tuple[int, Event, bytes]] = field(default_factory=list)
    rejected: list[tuple[int, Rejection, Any]] = field(default_factory=list)
    kept_events: dict[int, bytes] = field(default_factory=dict)  # `Outcome.kept_events`

    def accepted_by_type(self) -> Counter[str]:
        return Counter(event.event_type for _, event, _ in self.accepted)

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(rejection.reason for _, rejection, _ in self.rejected)

    def body(self) -> dict[str, Any]:
        return Outcome.of(self).body()


@dataclass(slots=True)
class Outcome:
    """A request's events as the collector publishes and answers them, in request order: the
    accepted events' ids, types, canonical JSON and ordering keys (the actor, when ordering is
    on; else None), and the rejected events with their position, reason and original value."""

    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    ordering_keys: list[str | None] = field(default_factory=list)
    rejected: list[tuple[int, Rejection, Any]] = field(default_factory=list)
    # By request position, the canonical JSON of each event rejected for its time alone, as
    # the worker would take it with a wider window: its dead letter keeps that, so `dlq
    # replay` counts it once the limits take it (a client answered 200 never sends it again).
    kept_events: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, prepared: Prepared, *, ordering: bool = False) -> Outcome:
        accepted = prepared.accepted
        return cls(
            [event.event_id for _, event, _ in accepted],
            [event.event_type for _, event, _ in accepted],
            [data for _, _, data in accepted],
            [event.who if ordering else None for _, event, _ in accepted],
            prepared.rejected,
            prepared.kept_events,
        )

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(rejection.reason for _, rejection, _ in self.rejected)

    def body(self) -> dict[str, Any]:
        return {
            "accepted": self.ids,
            "rejected": [
                {
                    "index": index,
                    "event_id": rejection.event_id,
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                }
                for index, rejection, _ in self.rejected
            ],
        }


def prepare(
    items: list[tuple[Any, dict[str, Any] | Rejection | Any]],
    *,
    received_at: float,
    new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
    limits: Limits = DEFAULT_LIMITS,
    truncate_ips: bool = False,
    repair_surrogates: bool = False,
    derive: Derive | None = None,
) -> Prepared:
    """(original, canonical payload or rejection) pairs → events with ids, received_at and the
    exact JSON the worker will parse, validated as the worker validates them.

    `derive` sets each event's `$derived` before its IP is truncated (`derive_into`); when the
    event is then too large only because of it, it is published without (the worker derives).

    With `repair_surrogates` (the body held lone surrogates), each event's properties have them
    replaced by U+FFFD; an id or event type holding one is rejected (`invalid_characters:…`):
    replacing it would merge distinct ids.

    A rejection carries the client's id when it sent one (`sent_id`); the detail of a
    `SegmentPayload`'s names the fields as the call spells them (`segment_spelling`)."""
    prepared = Prepared()
    accepted = prepared.accepted
    rejected = prepared.rejected
    max_bytes = limits.max_message_bytes
    for index, (original, payload) in enumerate(items):
        if isinstance(payload, Rejection):
            rejected.append((index, payload, original))
            continue
        client_id = None
        call = None
        call_type = None
        if isinstance(payload, dict):
            client_id = payload.get("event_id")
            if client_id == "":
                client_id = None
            call = payload.get("call")
            if type(payload) is SegmentPayload:
                call_type = payload.call_type
                payload = dict(payload)  # a plain dict takes validation's fast path
            elif payload is original:  # never change the client's object: it may be dead-lettered
                payload = dict(payload)
            # The time of receipt is ours, never the client's: without the key, validation
            # uses `received_at` (and the event takes validate_event's fast path).
            if "received_at" in payload:
                del payload["received_at"]
            if client_id is None:
                payload["event_id"] = new_id()
            timestamp = payload.get("timestamp")
            if type(timestamp) is str:
                payload["timestamp"] = epoch_seconds(timestamp)
            if repair_surrogates and payload.get("properties") is not None:
                payload["properties"] = replace_lone_surrogates(payload["properties"])
        result = validate_event(payload, message_id="", received_at=received_at, limits=limits)
        if isinstance(result, Rejection):
            if result.reason in TIME_WINDOW_REASONS:
                kept = _kept_event(payload, call, received_at, limits, truncate_ips, derive)
                if kept is not None:
                    prepared.kept_events[index] = kept
            if client_id is None and result.event_id is not None:
                result = Rejection(result.reason, result.detail)  # an id we made up: not theirs
            if call_type is not None:
                result = segment_spelling(result, call_type, original)
            rejected.append((index, result, original))
            continue
        data = _published(result, call, limits, truncate_ips, derive)
        if len(data) > max_bytes:
            detail = f"{len(data)} bytes as a canonical event > {max_bytes}"
            event_id = result.event_id if client_id is not None else None
            rejected.append((index, Rejection("too_large", detail, event_id), original))
            continue
        accepted.append((index, result, data))
    return prepared


def _kept_event(
    payload: Any,
    call: Any,
    received_at: float,
    limits: Limits,
    truncate_ips: bool,
    derive: Derive | None,
) -> bytes | None:
    """The canonical JSON of an event refused for its time alone, made as an accepted one is
    (derived, its IPs truncated; without `$derived` where that alone makes it too large)
    under a window without bounds; None when something else is wrong with it too, or it is
    too large."""
    unbounded = replace(limits, max_age_s=math.inf, max_future_skew_s=math.inf)
    event = validate_event(payload, message_id="", received_at=received_at, limits=unbounded)
    if isinstance(event, Rejection):
        return None
    # Deriving and truncating change the properties in place: never the client's object.
    event.properties = copy.deepcopy(event.properties)
    data = _published(event, call, limits, truncate_ips, derive)
    return data if len(data) <= limits.max_message_bytes else None


def _published(
    event: Event, call: Any, limits: Limits, truncate_ips: bool, derive: Derive | None
) -> bytes:
    """The canonical JSON the worker will parse of a valid `event` sent as `call`: its
    `$derived` set before its IPs are truncated (`derive_into`), and dropped again where it
    alone makes the event too large (the worker derives then). Changes `event.properties`."""
    derived = derive is not None and derive_into(event.properties, derive, limits.max_properties)
    if truncate_ips:
        scrub(event.properties, truncate_ips=True)
    canonical = event.to_dict()
    if call in NAMED_CALLS:
        canonical["call"] = call
    data = canonical_encoder.encode(canonical)
    if len(data) > limits.max_message_bytes and derived:
        del event.properties[DERIVED]
        data = canonical_encoder.encode(canonical)
    return data


def derive_into(properties: dict[str, Any], derive: Derive, max_properties: int) -> bool:
    """Apply `derive` to an event's properties (it replaces any `$derived` the client sent),
    unless the new key would take them past `max_properties`: the worker, which validates
    before it derives, then sets it. Whether `$derived` was set."""
    if DERIVED not in properties and len(properties) >= max_properties:
        return False
    derive(properties)
    return True
