"""The event contract: parse, validate and normalize one message into a canonical event.

Pure: no I/O, no clock. Everything that varies (the time a message was received, the
broker's message id, the limits) is passed in.

Text rules. Names and ids accept any text a person writes: joiners (ZWJ, ZWNJ), variation
selectors, NBSP, U+3000, RLM/LRM, emoji newer than the interpreter's Unicode database. Only an
explicit deny-list is refused (`allowed_text`): C0 and C1 controls and DEL, lone surrogates,
the line and paragraph separators U+2028/U+2029 (line breaks, like the C0 ones) and the bidi
embeddings and overrides U+202A to U+202E (they make one id display as another). Never
`str.isprintable()`, which refuses ZWJ. An empty string where an id is optional means absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from behavioral_analytics.actors import ANONYMOUS_PREFIX, RESERVED_USER_ID, actor
from behavioral_analytics.json_shape import (
    json_type,
    lenient_integer,
    nesting_exceeds,
    not_utf8_detail,
    printable,
    why_undecodable,
)
from behavioral_analytics.rfc3339 import rfc3339_moment

__all__ = [
    "KEY_RULE_VERSION",
    "NAMED_CALLS",
    "UNPROCESSABLE",
    "Event",
    "Invalid",
    "Limits",
    "Rejection",
    "allowed_text",
    "check_value",
    "dedupe_key",
    "parse_message",
    "parse_timestamp",
    "sent_id",
    "validate_event",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Explicit bounds on what an event may look like. Documented in docs/events.md."""

    max_message_bytes: int = 32 * 1024
    max_id_chars: int = 256
    max_event_type_chars: int = 128
    max_string_chars: int = 8 * 1024
    max_property_key_chars: int = 256
    max_properties: int = 200
    # Firestore allows 20 levels of map nesting; the event document holds properties at level 1.
    max_depth: int = 16
    max_future_skew_s: float = 3600.0
    max_age_s: float = 30 * 86400.0


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Event:
    """A canonical event. `key` is its identity: see `dedupe_key`. Treat it as a value (not
    frozen only because a frozen dataclass costs microseconds per event to build)."""

    key: str
    event_id: str
    user_id: str | None
    anonymous_id: str | None
    event_type: str
    timestamp: float
    session_id: str | None
    properties: dict[str, Any]
    received_at: float
    # The actor aggregates are keyed by: the user id, else `anonymous:` + the anonymous id.
    who: str = ""
    # The client's time as sent, when `timestamp` was corrected for its clock (Segment's
    # `sentAt`): the key uses it, since every retry carries a new `sentAt`.
    client_timestamp: float | None = None
    # "message" when `event_id` is a client's message id (Segment's `messageId`): the key is
    # built from it alone, as Segment dedupes (`message_key`). None: the recipe's key rule.
    id_kind: str | None = None
    # "alias" or "group" for those Segment calls (their rules: `named_calls`), else None.
    call: str | None = None

    def __post_init__(self) -> None:
        if not self.who:
            self.who = actor(self.user_id, self.anonymous_id)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "session_id": self.session_id,
            "properties": self.properties,
            "received_at": self.received_at,
        }
        if self.client_timestamp is not None:
            data["client_timestamp"] = self.client_timestamp
        if self.id_kind is not None:
            data["id_kind"] = self.id_kind
        if self.call is not None:
            data["call"] = self.call
        return data


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not an event. `reason` is a stable code; `detail` is for people: one
    line that starts with the field it is about (`event_type is required`, `user_id: 300
    characters > 256`, `properties.cart[2]: …`) where there is one. `event_id` is the client's
    id as `sent_id` reads it, None when it sent none."""

    reason: str
    detail: str = ""
    event_id: str | None = field(default=None)


class Invalid(Exception):
    """A check failed: `reason` is the rejection's code, `detail` its text."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


_decoder = msgspec.json.Decoder()

# Epoch values above these are read as milliseconds, then rejected (year > 5138 in seconds).
_MAX_EPOCH_SECONDS = 1e11
_MAX_EPOCH_MILLIS = 1e14
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# C0 controls, DEL and C1 controls, U+2028/2029 and the bidi embeddings/overrides U+202A to 202E,
# lone surrogates (see the module's docstring).
_DENIED = re.compile("[\x00-\x1f\x7f-\x9f\u2028-\u202e\ud800-\udfff]")
_denied = _DENIED.search
_SURROGATE = re.compile("[\ud800-\udfff]")
# Segment calls that a canonical event names in its `call` field (rules: `named_calls`).
NAMED_CALLS = ("alias", "group")


def sent_id(value: Any) -> str | None:
    """The id a client sent, as a rejection echoes it, whatever is wrong with the event or the
    id: a string as sent, an integer as its text (validation reads it so). None for an absent
    or empty id, any other JSON value (not an id) and a string holding a lone surrogate (no
    JSON answer or store can carry it)."""
    if type(value) is str:
        if not value or (not value.isascii() and _SURROGATE.search(value) is not None):
            return None
        return value
    if type(value) is int:
        return str(value)
    return None


def allowed_text(value: str) -> bool:
    """Whether a name or id holds none of the refused characters (the module's docstring)."""
    if value.isascii():
        return value.isprintable()
    return _denied(value) is None


def dedupe_key(event_id: str, who: str, event_type: str, timestamp: float) -> str:
    """Identity of an event: redeliveries match on all four parts; weak client ids do not merge
    distinct events. 32 hex characters, safe as a document id."""
    micros = round(timestamp * 1_000_000)
    raw = f"{event_id}\x1f{who}\x1f{event_type}\x1f{micros}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


MESSAGE_ID = "message"  # `id_kind` of an event whose id is a client's message id
# The detail of `missing_field:user_id` (the collector names Segment's fields instead).
MISSING_WHO = "user_id or anonymous_id is required"
SEGMENT_HINT = (
    ": this is a Segment call (userId, anonymousId): send it to the collector (POST /v1/track, "
    "/v1/batch, …), which makes an event of it"
)
UNPROCESSABLE = "unprocessable"  # reason code of a message whose parsing raised
# The key rule's version, recorded in each store (docs/events.md): 1, `dedupe_key` for every
# event; 2, `message_key` for events whose `id_kind` is "message", `dedupe_key` for the rest.
KEY_RULE_VERSION = 2


def message_key(message_id: str) -> str:
    """Identity of a Segment call: its `messageId` alone (Segment dedupes on it), so a retry
    whose who-fields or `sentAt` changed (analytics.js adds the `userId` learnt since) is still
    one event. 32 hex characters; never equal to a `dedupe_key` of the same id."""
    raw = f"{MESSAGE_ID}\x1e{message_id}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def event_key(
    event_id: str, who: str, event_type: str, key_time: float, id_kind: str | None
) -> str:
    """The key rule: `message_key` for client message ids, else `dedupe_key`. Events published
    before the rule existed carry no `id_kind` and keep the key they were stored under."""
    if id_kind == MESSAGE_ID:
        return message_key(event_id)
    return dedupe_key(event_id, who, event_type, key_time)


def parse_message(
    data: bytes,
    *,
    message_id: str,
    received_at: float,
    limits: Limits = DEFAULT_LIMITS,
) -> Event | Rejection:
    """Bytes of one broker message → a canonical event, or the reason it is not one.

    `message_id` stands in for a missing `event_id`; `received_at` (the broker's publish time,
    stable across redeliveries) stands in for a missing timestamp and anchors the time checks,
    so a message validates the same way however often it is delivered.
    """
    if len(data) > (limit := limits.max_message_bytes):  # the worker keeps `limit` bytes
        return Rejection("too_large", f"{len(data)} bytes > {limit} (the first {limit} kept)")
    if not data.strip():
        blank = f"only whitespace ({len(data)} bytes)" if data else "no bytes"
        return Rejection("empty_message", f"the message holds {blank}: expected a JSON object")
    # Properties sit one level below the message's object, so deeper brackets cannot be valid.
    # Checked before decoding: every JSON decoder recurses once per level.
    if nesting_exceeds(data, limits.max_depth + 1):
        return Rejection("too_deep", f"JSON nested deeper than {limits.max_depth + 1} levels")
    try:
        payload = _decoder.decode(data)
    except RecursionError:
        return Rejection("too_deep", "JSON nested deeper than the decoder follows")
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", not_utf8_detail(exc))
    except msgspec.DecodeError as exc:
        return _undecodable(data, str(exc), message_id, received_at, limits)
    return validate_event(payload, message_id=message_id, received_at=received_at, limits=limits)


def _undecodable(
    data: bytes, decoder_said: str, message_id: str, received_at: float, limits: Limits
) -> Rejection:
    """Why JSON text msgspec refused is no event: where the standard library reads it (`NaN`,
    `1e400`), the rejection the collector gives it (`api.bodies.decode_body`), else
    `json_shape.why_undecodable`'s, also where validation would take what msgspec refused (a
    lone surrogate in a property, `NaN` in a field no rule reads)."""
    reason, detail, parsed = why_undecodable(data, decoder_said)
    try:
        # As the collector reads a body (`api.bodies.decode_body`): an integer past the
        # interpreter's 4,300 digits is a `LongInteger`, judged where it stands.
        plain = json.loads(data, parse_int=lenient_integer) if parsed is not None else None
    except ValueError:
        plain = None
    if plain is not None:
        judged = validate_event(
            plain, message_id=message_id, received_at=received_at, limits=limits
        )
        if isinstance(judged, Rejection):  # its detail may quote a key msgspec refused
            return replace(judged, detail=printable(judged.detail))
    sent = sent_id(parsed.get("event_id")) if isinstance(parsed, dict) else None
    return Rejection(reason, detail, sent)


def validate_event(
    payload: Any,
    *,
    message_id: str,
    received_at: float,
    limits: Limits = DEFAULT_LIMITS,
) -> Event | Rejection:
    """A decoded JSON value → a canonical event, or the reason it is not one."""
    if type(payload) is dict:
        event = _common_case(payload, message_id, received_at, limits)
        if event is not None:
            return event
    try:
        if not isinstance(payload, dict):
            raise Invalid(
                "not_an_object", f"expected a JSON object, got a JSON {json_type(payload)}"
            )
        event_id = _optional_id(payload, "event_id", limits)
        user_id = _optional_id(payload, "user_id", limits)
        if user_id is not None and user_id.startswith(ANONYMOUS_PREFIX):
            raise Invalid("invalid_value:user_id", RESERVED_USER_ID)
        anonymous_id = _optional_id(payload, "anonymous_id", limits)
        if user_id is None and anonymous_id is None:
            segment = "userId" in payload or "anonymousId" in payload  # published as sent
            raise Invalid("missing_field:user_id", MISSING_WHO + (SEGMENT_HINT if segment else ""))
        event_type = payload.get("event_type")
        if event_type is None:
            raise Invalid("missing_field:event_type", "event_type is required: the event's name")
        event_type = _text(event_type, "event_type", limits.max_event_type_chars)
        session_id = _optional_id(payload, "session_id", limits)
        received_at = _received_at(payload, received_at)
        raw_ts = payload.get("timestamp")
        timestamp = received_at if raw_ts is None else _time(raw_ts, "timestamp")
        client_timestamp = payload.get("client_timestamp")
        if client_timestamp is not None:
            try:
                client_timestamp = _time(client_timestamp, "client_timestamp")
            except Invalid as exc:
                raise Invalid("invalid_client_timestamp", exc.detail) from None
        id_kind = payload.get("id_kind")
        if id_kind is not None and id_kind != MESSAGE_ID:
            raise Invalid(
                "invalid_value:id_kind", f"id_kind: expected {MESSAGE_ID!r} or no id_kind"
            )
        call = payload.get("call")
        if call is not None and call not in NAMED_CALLS:
            raise Invalid(
                "invalid_value:call", f"call: expected one of {', '.join(NAMED_CALLS)} or no call"
            )
        if timestamp > received_at + limits.max_future_skew_s:
            raise Invalid(
                "timestamp_in_future",
                f"timestamp is {timestamp - received_at:.0f} s ahead of receipt (limit "
                f"{limits.max_future_skew_s:.0f} s)",
            )
        if timestamp < received_at - limits.max_age_s:
            raise Invalid(
                "timestamp_too_old",
                f"timestamp is {(received_at - timestamp) / 86400:.1f} days before receipt "
                f"(limit {limits.max_age_s / 86400:.0f} days)",
            )
        properties = payload.get("properties")
        if properties is None:
            properties = {}
        elif not isinstance(properties, dict):
            raise Invalid(
                "invalid_type:properties",
                f"properties: expected an object, got {json_type(properties)}",
            )
        elif properties:
            if len(properties) > limits.max_properties:
                raise Invalid(
                    "too_many_properties",
                    f"properties: {len(properties)} keys > {limits.max_properties}",
                )
            check_value(properties, "properties", 1, limits)
    except Invalid as exc:
        client_id = sent_id(payload.get("event_id")) if isinstance(payload, dict) else None
        return Rejection(exc.reason, exc.detail, client_id)

    if event_id is None:
        event_id = message_id
    who = actor(user_id, anonymous_id)
    key_time = timestamp if client_timestamp is None else client_timestamp
    return Event(
        key=event_key(event_id, who, event_type, key_time, id_kind),
        event_id=event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event_type=event_type,
        timestamp=timestamp,
        session_id=session_id,
        properties=properties,
        received_at=received_at,
        who=who,
        client_timestamp=client_timestamp,
        id_kind=id_kind,
        call=call,
    )


def _common_case(
    payload: dict[str, Any], message_id: str, received_at: float, limits: Limits
) -> Event | None:
    """The shape nearly every event has, checked inline (the hot path of the worker and the
    collector). None means "not obviously valid": the full checks then decide, and name the
    reason if there is one."""
    get = payload.get
    user_id = get("user_id")
    anonymous_id = get("anonymous_id")
    event_id = get("event_id")
    session_id = get("session_id")
    event_type = get("event_type")
    timestamp = get("timestamp")
    properties = get("properties")
    max_id = limits.max_id_chars
    if not (
        get("received_at") is None
        and type(event_type) is str
        and 0 < len(event_type) <= limits.max_event_type_chars
        and allowed_text(event_type)
        and not event_type.isspace()
        and (user_id is not None or anonymous_id is not None)
        and get("call") is None
    ):
        return None
    for value in (user_id, anonymous_id, event_id, session_id):
        if value is not None and not (
            type(value) is str
            and 0 < len(value) <= max_id
            and allowed_text(value)
            and not value.isspace()
        ):
            return None
    if user_id is not None and user_id.startswith(ANONYMOUS_PREFIX):
        return None
    kind = type(timestamp)
    if timestamp is None:
        timestamp = received_at
    elif (kind is float or kind is int) and 0 <= timestamp < _MAX_EPOCH_SECONDS:
        timestamp = float(timestamp)
    else:
        return None
    if not (received_at - limits.max_age_s <= timestamp <= received_at + limits.max_future_skew_s):
        return None
    id_kind = get("id_kind")
    if id_kind is not None and id_kind != MESSAGE_ID:
        return None
    client_timestamp = get("client_timestamp")
    key_time = timestamp
    if client_timestamp is not None:
        kind = type(client_timestamp)
        if (kind is float or kind is int) and 0 <= client_timestamp < _MAX_EPOCH_SECONDS:
            key_time = client_timestamp = float(client_timestamp)
        else:
            return None
    if properties is None:
        properties = {}
    elif type(properties) is not dict or len(properties) > limits.max_properties:
        return None
    elif properties:
        try:
            check_value(properties, "properties", 1, limits)
        except Invalid:
            return None
    if event_id is None:
        event_id = message_id
    who = actor(user_id, anonymous_id)
    return Event(
        event_key(event_id, who, event_type, key_time, id_kind),
        event_id,
        user_id,
        anonymous_id,
        event_type,
        timestamp,
        session_id,
        properties,
        received_at,
        who,
        client_timestamp,
        id_kind,
    )


def parse_timestamp(value: Any) -> float:
    """Epoch seconds, epoch milliseconds or an RFC 3339 string → epoch seconds (UTC)."""
    if isinstance(value, bool):
        raise Invalid("invalid_type:timestamp", "expected a number or an RFC 3339 string")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise Invalid("invalid_timestamp", f"{value!r} is not a point in time")
        if number >= _MAX_EPOCH_MILLIS:
            raise Invalid("invalid_timestamp", f"{value!r} is out of range")
        return number / 1000.0 if number >= _MAX_EPOCH_SECONDS else number
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            raise Invalid("invalid_timestamp", "expected RFC 3339, e.g. 2026-11-28T13:05:00Z")
        moment = rfc3339_moment(text)
        if moment is None:
            raise Invalid(
                "invalid_timestamp", f"{text[:40]!r} is not RFC 3339 (e.g. 2026-11-28T13:05:00Z)"
            )
        if moment.tzinfo is None:
            raise Invalid("invalid_timestamp", "RFC 3339 timestamps need a UTC offset or Z")
        return moment.timestamp()
    raise Invalid(
        "invalid_type:timestamp", f"expected a number or a string, got {json_type(value)}"
    )


def _received_at(payload: dict[str, Any], fallback: float) -> float:
    value = payload.get("received_at")
    if value is None:
        return fallback
    try:
        return _time(value, "received_at")
    except Invalid as exc:
        raise Invalid("invalid_received_at", exc.detail) from None


def _time(value: Any, name: str) -> float:
    """`parse_timestamp` of the field `name`, its detail naming the field."""
    try:
        return parse_timestamp(value)
    except Invalid as exc:
        raise Invalid(exc.reason, f"{name}: {exc.detail}") from None


def _optional_id(payload: dict[str, Any], name: str, limits: Limits) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if (
        type(value) is str
        and 0 < len(value) <= limits.max_id_chars
        and allowed_text(value)
        and not value.isspace()
    ):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _text(value, name, limits.max_id_chars)


def _text(value: Any, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"invalid_type:{name}", f"{name}: expected a string, got {json_type(value)}")
    if not value or value.isspace():
        raise Invalid(
            f"empty_field:{name}", f"{name} is empty or only whitespace: expected non-blank text"
        )
    if len(value) > max_chars:
        raise Invalid(f"too_long:{name}", f"{name}: {len(value)} characters > {max_chars}")
    if not allowed_text(value):
        raise Invalid(
            f"invalid_characters:{name}",
            f"{name}: control characters, lone surrogates, U+2028/2029 and bidi overrides are "
            "not allowed",
        )
    return value


_SCALARS = (bool, float, type(None))


def check_value(value: Any, path: str, depth: int, limits: Limits) -> None:
    if type(value) is dict and depth <= limits.max_depth:
        max_chars, max_key = limits.max_string_chars, limits.max_property_key_chars
        nested = False
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                if len(item) > max_chars:
                    nested = True
            elif kind is int:
                if not _INT64_MIN <= item <= _INT64_MAX:
                    nested = True
            elif kind is float:
                if item != item or item in (math.inf, -math.inf):
                    nested = True
            elif kind not in _SCALARS:
                nested = True
            if not key or len(key) > max_key:
                nested = True
        if not nested:
            return
    _check_value_slow(value, path, depth, limits)


def _check_value_slow(value: Any, path: str, depth: int, limits: Limits) -> None:
    if isinstance(value, str):
        if len(value) > limits.max_string_chars:
            raise Invalid(
                "string_too_long", f"{path}: {len(value)} characters > {limits.max_string_chars}"
            )
    elif isinstance(value, dict):
        if depth > limits.max_depth:
            raise Invalid("too_deep", f"{path}: nesting deeper than {limits.max_depth}")
        for key, item in value.items():
            if not key:
                raise Invalid("invalid_property_key", f"{path}: empty key")
            if len(key) > limits.max_property_key_chars:
                raise Invalid(
                    "invalid_property_key",
                    f"{path}: key of {len(key)} characters > {limits.max_property_key_chars}",
                )
            check_value(item, f"{path}.{key}", depth + 1, limits)
    elif isinstance(value, list):
        if depth > limits.max_depth:
            raise Invalid("too_deep", f"{path}: nesting deeper than {limits.max_depth}")
        for index, item in enumerate(value):
            if isinstance(item, list):
                raise Invalid("nested_array", f"{path}[{index}]: arrays of arrays cannot be stored")
            check_value(item, f"{path}[{index}]", depth + 1, limits)
    elif isinstance(value, float) and not math.isfinite(value):
        # As JSON spells it (`NaN`, `Infinity`, `-Infinity`): what the client sent.
        raise Invalid("invalid_number", f"{path}: {json.dumps(value)} is not a number JSON has")
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64_MIN <= value <= _INT64_MAX
    ):
        raise Invalid("invalid_number", f"{path}: integer outside 64 bits")
