"""Segment calls as any decoded JSON → canonical event payloads (`from_segment`, validated by
`prepared.prepare`), with every rejection named; the time, address and dead-letter rules they
share with the fast path. The rules and their sources are in the package docstring."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from behavioral_analytics.call_context import with_call_fields
from behavioral_analytics.events import (
    MESSAGE_ID,
    MISSING_WHO,
    NAMED_CALLS,
    Invalid,
    Rejection,
    parse_timestamp,
    sent_id,
)
from behavioral_analytics.json_shape import dumps, json_type
from behavioral_analytics.rfc3339 import rfc3339_moment

SEGMENT_CALLS = ("track", "page", "screen", "identify", "alias", "group")
# analytics.js's short paths (`{apiHost}/t` …), with or without `/v1`.
SHORT_PATHS = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "s": "screen",
    "a": "alias",
    "g": "group",
    "b": "batch",
}
# `context.library.name` of the browser and mobile libraries of Segment and RudderStack: their
# calls come from the person's device, so the connection's address is theirs.
CLIENT_LIBRARIES = frozenset(
    {
        "analytics.js",
        "analytics-next",
        "analytics-ios",
        "analytics-android",
        "analytics-kotlin",
        "analytics-swift",
        "analytics-react-native",
        "@segment/analytics-react-native",
        "analytics-flutter",
        "RudderLabs JavaScript SDK",
        "com.rudderstack.android.sdk.core",
        "rudder-ios-library",
        "rudder-sdk-react-native",
        "rudder_sdk_flutter",
    }
)
# Epoch values from here on are read as milliseconds (events.py).
MAX_EPOCH_SECONDS = 1e11
# Left out of a dead letter's fingerprint: a retried request changes them, not the call.
_RETRY_FIELDS = ("sentAt", "_metadata", "writeKey")

canonical_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the collector knows of a request besides its body: the time of receipt (epoch s),
    the caller's address (None: unknown) and whether it came from a browser (an `Origin`
    header)."""

    received_at: float
    ip: str | None = None
    browser: bool = False


# ---------------------------------------------------------------------------------------------
# Pure normalization


class SegmentPayload(dict[str, Any]):
    """A canonical event payload made of a Segment call (`from_segment`): a dict, which also
    knows the call's type (`call_type`: track, page …), so that `prepare` names a rejected
    call's fields as the call spells them (`segment_spelling`)."""

    __slots__ = ("call_type",)

    def __init__(self, call_type: str, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.call_type = call_type


def from_segment(
    message: Any,
    call: str | None = None,
    batch_context: dict[str, Any] | None = None,
    *,
    receipt: Receipt | None = None,
    batch_sent_at: Any = None,
) -> SegmentPayload | Rejection:
    """A Segment-spec call → a canonical event payload (a dict for `prepare`), or a rejection
    (with the call's `messageId`, when it has one: `sent_id`).

    `call` is the endpoint's type (`/v1/track`); inside a batch each message names its `type`.
    track → `event`; page → "page_view" with `properties.name`, `properties.category` and
    `properties.url` (else `context.page.url`); screen → "screen_view" with `name` and
    `category`; identify → "identify" with the traits as properties; alias → "alias" with
    `properties.previousId`; group → "group" with `properties.groupId` and `properties.traits`.
    The context (the batch's, overridden key by key by the message's) is kept as
    `properties.context`, or `properties["$context"]` when the properties have their own
    (`call_context`). `messageId` becomes the
    event id; an empty `messageId`, `userId` or `anonymousId` is absent (RudderStack's browser
    library sends `userId: ""` for anonymous visitors). Time: see the module's docstring; without
    `receipt` there is no correction and no address.
    """
    if not isinstance(message, dict):
        return Rejection(
            "not_an_object", f"expected a JSON object, got a JSON {json_type(message)}"
        )
    message_id = _absent_if_empty(message.get("messageId"))
    kind = call or message.get("type")
    if kind not in SEGMENT_CALLS:
        return Rejection(
            "unsupported_type",
            f"type {kind!r} is not one of {', '.join(SEGMENT_CALLS)}",
            sent_id(message_id),
        )
    context = message.get("context")
    if context is not None and not isinstance(context, dict):
        return Rejection(
            "invalid_type:context",
            f"context: expected an object, got {json_type(context)}",
            sent_id(message_id),
        )
    if batch_context:
        context = {**batch_context, **(context or {})}
    if receipt is not None:
        context = with_ip(context, receipt)

    timestamp = message.get("timestamp")
    time_field = "timestamp"
    if timestamp is None:
        timestamp = message.get("originalTimestamp")
        time_field = "originalTimestamp"
    sent_at = message.get("sentAt")
    if sent_at is None:
        sent_at = batch_sent_at
    client_timestamp = None
    client_times = None
    if receipt is not None:
        timestamp, client_timestamp = corrected_time(timestamp, sent_at, receipt.received_at)
        if client_timestamp is not None:
            client_times = {time_field: message.get(time_field), "sentAt": sent_at}

    if kind == "track":
        event_type = message.get("event")
        if event_type is None:
            return Rejection(
                "missing_field:event",
                "event is required: a track call names its action",
                sent_id(message_id),
            )
        properties = event_properties(message.get("properties"), context, client_times)
    elif kind == "page" or kind == "screen":
        event_type = "page_view" if kind == "page" else "screen_view"
        properties = view_properties(
            message.get("name"),
            message.get("category"),
            message.get("properties"),
            context,
            client_times,
            with_url=kind == "page",
        )
    elif kind == "identify":
        event_type = "identify"
        traits = message.get("traits")
        if traits is None and context is not None:
            traits = context.get("traits")
        properties = event_properties(traits, context, client_times)
    elif kind == "alias":
        event_type = "alias"
        properties = event_properties(
            {"previousId": message.get("previousId")}, context, client_times
        )
    else:
        event_type = "group"
        properties = event_properties(
            {"groupId": message.get("groupId"), "traits": message.get("traits") or {}},
            context,
            client_times,
        )

    payload = SegmentPayload(
        kind,
        {
            "event_id": message_id,
            "user_id": _absent_if_empty(message.get("userId")),
            "anonymous_id": _absent_if_empty(message.get("anonymousId")),
            "event_type": event_type,
            "timestamp": timestamp,
            "properties": properties,
        },
    )
    if client_timestamp is not None:
        payload["client_timestamp"] = client_timestamp
    if message_id is not None:
        payload["id_kind"] = MESSAGE_ID
    if kind in NAMED_CALLS:
        payload["call"] = kind
    return payload


def _absent_if_empty(value: Any) -> Any:
    return None if value == "" else value


# A canonical field at the start of a rejection's detail (`events.Rejection`).
_DETAIL_FIELD = re.compile(r"(event_id|user_id|anonymous_id|event_type|timestamp|properties)\b")
_SEGMENT_FIELDS = {
    "event_id": "messageId",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "event_type": "event",
}
# Properties `from_segment` adds, by call type: the field of the call each one comes from.
_ADDED_PROPERTIES: dict[str, dict[str, str]] = {
    "track": {},
    "page": {"name": "name", "category": "category", "url": "context.page.url"},
    "screen": {"name": "name", "category": "category"},
    "identify": {},
    "alias": {"previousId": "previousId"},
    "group": {"groupId": "groupId", "traits": "traits"},
}


def segment_spelling(rejection: Rejection, call_type: str, message: Any) -> Rejection:
    """A rejection of a `from_segment` payload, its detail naming the field as `message` (the
    call as sent, of type `call_type`) spells it: `userId or anonymousId is required`,
    `messageId: …`, `event is empty …`, `originalTimestamp: …`, `traits.plan: …`,
    `context.page.url: …`. The reason code stays the canonical one (a stable contract)."""
    detail = rejection.detail
    if detail == MISSING_WHO:
        spelled = "userId or anonymousId is required"
    else:
        match = _DETAIL_FIELD.match(detail)
        if match is None or not isinstance(message, dict):
            return rejection
        name = match.group(1)
        rest = detail[match.end() :]
        if name == "properties":
            spelled = _property_path(rest, call_type, message)
        elif name == "timestamp":
            field = "timestamp" if message.get("timestamp") is not None else "originalTimestamp"
            spelled = field + rest
        else:
            spelled = _SEGMENT_FIELDS[name] + rest
    return Rejection(rejection.reason, spelled, rejection.event_id)


def _property_path(rest: str, call_type: str, message: dict[str, Any]) -> str:
    """`properties` + `rest` (a path into the canonical properties, then the detail's text) →
    the field of the call it came from."""
    source_name = "properties"
    source = message.get("properties")
    if call_type == "identify":
        source_name, source = "traits", message.get("traits")
        context = message.get("context")
        if source is None and isinstance(context, dict) and context.get("traits") is not None:
            source_name, source = "context.traits", context["traits"]
    if rest.startswith("."):
        added = {"context": "context", **_ADDED_PROPERTIES.get(call_type, {})}
        for key, field in added.items():
            after = rest[1 + len(key) :]
            if (
                rest[1:].startswith(key)
                and (after == "" or after[0] in ".[:")
                and not (isinstance(source, dict) and key in source)
            ):
                return field + after
    return source_name + rest


def with_ip(context: dict[str, Any] | None, receipt: Receipt) -> dict[str, Any] | None:
    """The context with `ip` set to the caller's address for a client-side call (an `Origin`
    header, or a browser or mobile `context.library`), unless it has one. The context given is
    never changed."""
    ip = receipt.ip
    if ip is None or (context is not None and "ip" in context):
        return context
    if not receipt.browser:
        library = context.get("library") if context is not None else None
        if type(library) is not dict or library.get("name") not in CLIENT_LIBRARIES:
            return context
    return {**context, "ip": ip} if context else {"ip": ip}


def corrected_time(timestamp: Any, sent_at: Any, received_at: float) -> tuple[Any, float | None]:
    """(event time, client time as sent) from the client's time and `sentAt` (Segment's
    clock-skew correction: `receivedAt - (sentAt - timestamp)`, clamped to `received_at`).

    Without a readable pair the time is returned unchanged (validation reads or rejects it) and
    the client time is None: a missing or unreadable `sentAt` (Segment's is an ISO-8601 string;
    anything else is unreadable) means no correction."""
    if timestamp is None or type(sent_at) is not str:
        return timestamp, None
    return corrected_seconds(timestamp, sent_seconds(sent_at), received_at)


def corrected_seconds(
    timestamp: Any, sent: float | None, received_at: float
) -> tuple[Any, float | None]:
    client = sent_seconds(timestamp)
    if client is None or sent is None:
        return timestamp, None
    corrected = received_at - (sent - client)
    return (corrected if corrected < received_at else received_at), client


def sent_seconds(value: Any) -> float | None:
    if type(value) is str:
        seconds = epoch_seconds(value)
        return seconds if type(seconds) is float else None
    try:
        return parse_timestamp(value)
    except Invalid:
        return None


def event_properties(
    properties: Any, context: dict[str, Any] | None, client_times: dict[str, Any] | None
) -> Any:
    """The properties with the context and the client's raw times added
    (`call_context.with_call_fields`: under `$context`, `$client_time` where the properties
    have their own); anything but an object or null is returned as is, for validation to
    report."""
    if properties is None:
        properties = {}
    elif type(properties) is not dict:
        return properties
    return with_call_fields(properties, context, client_times)


def view_properties(
    name: Any,
    category: Any,
    properties: Any,
    context: dict[str, Any] | None,
    client_times: dict[str, Any] | None,
    *,
    with_url: bool,
) -> Any:
    """A page or screen call's properties: `name` and `category` of the call, and for a page
    `url` (else `context.page.url`), unless the properties have them; then `event_properties`."""
    if properties is not None and type(properties) is not dict:
        return properties  # validation reports the wrong type
    properties = dict(properties or {})
    if name is not None:
        properties.setdefault("name", name)
    if category is not None:
        properties.setdefault("category", category)
    if with_url and "url" not in properties:
        page = (context or {}).get("page")
        if isinstance(page, dict) and page.get("url") is not None:
            properties["url"] = page["url"]
    return event_properties(properties, context, client_times)


def replace_lone_surrogates(value: Any) -> Any:
    """The value with every lone UTF-16 surrogate in its strings and keys replaced by U+FFFD
    (what a browser leaves when it truncates text in the middle of an emoji)."""
    if type(value) is str:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if type(value) is dict:
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in value.items()}
    if type(value) is list:
        return [replace_lone_surrogates(item) for item in value]
    return value


def without_write_key(original: Any) -> Any:
    """The call as sent, minus its `writeKey` (a credential is never stored)."""
    if type(original) is dict and "writeKey" in original:
        return {k: v for k, v in original.items() if k != "writeKey"}
    return original


def encode_original(original: Any) -> bytes:
    """A rejected call's JSON text for its dead letter, without `writeKey`. What only a lenient
    reader took stays what it was, so that a replay is refused again rather than taken changed:
    `NaN` and an infinity (`1e400`) as `NaN` and `Infinity` (an encoder for JSON would write
    `null`), an integer past 64 bits whole. A string with a lone surrogate cannot be UTF-8: the
    text then escapes it (`\\ud83c`), as the client sent it."""
    original = without_write_key(original)
    try:
        return dumps(original, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return dumps(original, ensure_ascii=True).encode()


def dead_letter_fingerprint(original: Any, reason: str) -> str:
    """Identity of a rejected call across retries of its request: its JSON without `sentAt`,
    `_metadata` and `writeKey` (which a retry changes or which are no part of the call), and
    the reason. 32 hex characters."""
    if type(original) is dict:
        original = {k: v for k, v in original.items() if k not in _RETRY_FIELDS}
    text = dumps(original, ensure_ascii=True, sort_keys=True)
    digest = hashlib.blake2b(f"{reason}\x1f{text}".encode(), digest_size=16)
    return digest.hexdigest()


def epoch_seconds(timestamp: str) -> str | float:
    """An RFC 3339 timestamp as the epoch seconds validation would make of it, or the string
    unchanged when it is not one validation reads the same way as a number (it then names the
    reason). Segment sends strings; validation's fast path takes numbers only.

    `parse_timestamp`'s reading of a string, inlined (tests hold the two equal)."""
    text = timestamp.strip()
    if not 0 < len(text) <= 64:
        return timestamp
    try:
        moment = rfc3339_moment(text)
        if moment is None or moment.tzinfo is None:
            return timestamp
        seconds = moment.timestamp()
    except Exception:
        return timestamp
    # parse_timestamp reads numbers past 1e11 as milliseconds and refuses negative ones.
    return seconds if 0.0 <= seconds < MAX_EPOCH_SECONDS else timestamp
