"""The fast path: calls decoded into `SegmentCall` structs → canonical JSON in one pass, no
intermediate dicts or `Event`s; the same event ids and bytes as `prepared.prepare`. It gives up
(None) as soon as a call is not obviously valid, and the slow path then names the reason."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import msgspec

from behavioral_analytics.actors import ANONYMOUS_PREFIX, actor
from behavioral_analytics.dimensions import Derive
from behavioral_analytics.events import (
    DEFAULT_LIMITS,
    MESSAGE_ID,
    Invalid,
    Limits,
    allowed_text,
    check_value,
)
from behavioral_analytics.privacy import scrub
from behavioral_analytics.segment.calls import (
    MAX_EPOCH_SECONDS,
    Receipt,
    canonical_encoder,
    corrected_seconds,
    corrected_time,
    epoch_seconds,
    event_properties,
    sent_seconds,
    view_properties,
    with_ip,
)
from behavioral_analytics.segment.prepared import Outcome, derive_into

# ---------------------------------------------------------------------------------------------
# The fast path: requests whose every event is obviously valid


class SegmentCall(msgspec.Struct, gc=False):
    """The fields of a Segment call that normalization reads, each any JSON value. Decoding
    into it skips the rest of the call unread and builds no dict per call; the checks are
    `from_segment`'s and validation's, made in `prepare_calls`."""

    type: Any = None
    messageId: Any = None  # Segment's field names
    userId: Any = None
    anonymousId: Any = None
    event: Any = None
    name: Any = None
    category: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = None
    properties: Any = None
    traits: Any = None
    context: Any = None
    writeKey: Any = None


class SegmentBatch(msgspec.Struct, gc=False):
    """A `/v1/batch` body: the calls, and the batch's context, `sentAt` and `writeKey`."""

    batch: list[SegmentCall]
    context: Any = None
    sentAt: Any = None
    writeKey: Any = None


class Canonical(msgspec.Struct, gc=False, omit_defaults=True):
    """`Event.to_dict()`'s keys in its order: encodes to the same bytes."""

    event_id: Any
    user_id: Any
    anonymous_id: Any
    event_type: Any
    timestamp: Any
    session_id: Any
    properties: Any
    received_at: Any
    client_timestamp: Any = None
    id_kind: Any = None


decode_call = msgspec.json.Decoder(SegmentCall).decode
decode_batch = msgspec.json.Decoder(SegmentBatch).decode


def _plain_id(value: Any, max_chars: int) -> bool:
    return (
        type(value) is str
        and 0 < len(value) <= max_chars
        and allowed_text(value)
        and not value.isspace()
    )


def prepare_calls(
    calls: list[SegmentCall],
    call: str | None = None,
    batch_context: Any = None,
    *,
    receipt: Receipt,
    batch_sent_at: Any = None,
    new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
    limits: Limits = DEFAULT_LIMITS,
    ordering: bool = False,
    truncate_ips: bool = False,
    derive: Derive | None = None,
) -> Outcome | None:
    """`prepare` of `from_segment` of every call in one pass: the same event ids and the same
    canonical JSON, byte for byte (the tests hold them equal). None as soon as one call is not
    obviously valid: the slow path then decides, names the reasons and keeps the original of
    each rejected event for the dead letters.

    The checks are those of validation's fast path on the fields `from_segment` maps, for
    track, page, screen and identify calls without a session id or a `received_at` of their
    own. `batch_context` is the batch's `context` as sent (anything but an object is ignored,
    as `/v1/batch` does)."""
    if type(batch_context) is not dict:
        batch_context = None
    outcome = Outcome()
    ids = outcome.ids
    types = outcome.types
    datas = outcome.data
    keys = outcome.ordering_keys
    encode = canonical_encoder.encode
    received_at = receipt.received_at
    has_ip = receipt.ip is not None
    max_bytes = limits.max_message_bytes
    max_id = limits.max_id_chars
    max_type = limits.max_event_type_chars
    max_properties = limits.max_properties
    earliest = received_at - limits.max_age_s
    latest = received_at + limits.max_future_skew_s
    # The batch's sentAt, read once for all its calls (`corrected_time`'s reading).
    batch_sent_s = sent_seconds(batch_sent_at) if type(batch_sent_at) is str else None
    for message in calls:
        kind = call or message.type
        context = message.context
        if context is not None:
            if type(context) is not dict:
                return None
            if batch_context:
                context = {**batch_context, **context}
        else:
            context = batch_context
        if has_ip:
            context = with_ip(context, receipt)

        timestamp = message.timestamp
        time_field = "timestamp"
        if timestamp is None:
            timestamp = message.originalTimestamp
            time_field = "originalTimestamp"
        sent_at = message.sentAt
        client_times = None
        client_timestamp = None
        if timestamp is not None:
            raw = timestamp
            if sent_at is None:
                sent_at = batch_sent_at
                if batch_sent_s is not None:
                    timestamp, client_timestamp = corrected_seconds(
                        timestamp, batch_sent_s, received_at
                    )
            else:
                timestamp, client_timestamp = corrected_time(timestamp, sent_at, received_at)
            if client_timestamp is not None:
                client_times = {time_field: raw, "sentAt": sent_at}

        if kind == "track":
            event_type = message.event
            properties = event_properties(message.properties, context, client_times)
        elif kind == "page" or kind == "screen":
            event_type = "page_view" if kind == "page" else "screen_view"
            properties = view_properties(
                message.name,
                message.category,
                message.properties,
                context,
                client_times,
                with_url=kind == "page",
            )
        elif kind == "identify":
            event_type = "identify"
            traits = message.traits
            if traits is None and context is not None:
                traits = context.get("traits")
            properties = event_properties(traits, context, client_times)
        else:
            return None
        if not _plain_id(event_type, max_type):
            return None

        if type(properties) is not dict:
            return None
        if properties:
            if len(properties) > max_properties:
                return None
            try:
                check_value(properties, "properties", 1, limits)
            except Invalid:
                return None
        if derive is not None:
            derive_into(properties, derive, max_properties)
        if truncate_ips and properties:
            scrub(properties, truncate_ips=True)

        if timestamp is None:
            timestamp = received_at
        else:
            sent_as = type(timestamp)
            if sent_as is str:
                timestamp = epoch_seconds(timestamp)
                if type(timestamp) is not float:
                    return None
            elif (sent_as is float or sent_as is int) and 0 <= timestamp < MAX_EPOCH_SECONDS:
                timestamp = float(timestamp)
            else:
                return None
            if not earliest <= timestamp <= latest:
                return None

        event_id = message.messageId
        id_kind = None
        if event_id is None or event_id == "":
            event_id = new_id()
        elif not _plain_id(event_id, max_id):
            return None
        else:
            id_kind = MESSAGE_ID
        user_id = message.userId
        if user_id == "":
            user_id = None
        anonymous_id = message.anonymousId
        if anonymous_id == "":
            anonymous_id = None
        if user_id is not None and (
            not _plain_id(user_id, max_id) or user_id.startswith(ANONYMOUS_PREFIX)
        ):
            return None
        if anonymous_id is not None:
            if not _plain_id(anonymous_id, max_id):
                return None
        elif user_id is None:
            return None

        data = encode(
            Canonical(
                event_id,
                user_id,
                anonymous_id,
                event_type,
                timestamp,
                None,
                properties,
                received_at,
                client_timestamp,
                id_kind,
            )
        )
        if len(data) > max_bytes:
            return None
        ids.append(event_id)
        types.append(event_type)
        datas.append(data)
        keys.append(actor(user_id, anonymous_id) if ordering else None)
    return outcome
