"""The event contract: parse, validate and normalize one message into a canonical event.

Pure: no I/O, no clock. Everything that varies (the time a message was received, the
broker's message id, the limits) is passed in.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "Event",
    "Limits",
    "Rejection",
    "dedupe_key",
    "json_type",
    "parse_message",
    "parse_timestamp",
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

    def __post_init__(self) -> None:
        if not self.who:
            self.who = actor(self.user_id, self.anonymous_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "session_id": self.session_id,
            "properties": self.properties,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not an event. `reason` is a stable code; `detail` is for people."""

    reason: str
    detail: str = ""
    event_id: str | None = field(default=None)


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


_decoder = msgspec.json.Decoder()

# Epoch values above these are read as milliseconds, then rejected (year > 5138 in seconds).
_MAX_EPOCH_SECONDS = 1e11
_MAX_EPOCH_MILLIS = 1e14
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def actor(user_id: str | None, anonymous_id: str | None) -> str:
    return user_id if user_id is not None else f"anonymous:{anonymous_id}"


def dedupe_key(event_id: str, who: str, event_type: str, timestamp: float) -> str:
    """Identity of an event: redeliveries match on all four parts; weak client ids do not merge
    distinct events. 32 hex characters, safe as a document id."""
    micros = round(timestamp * 1_000_000)
    raw = f"{event_id}\x1f{who}\x1f{event_type}\x1f{micros}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


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
    if len(data) > limits.max_message_bytes:
        return Rejection("too_large", f"{len(data)} bytes > {limits.max_message_bytes}")
    if not data.strip():
        return Rejection("empty_message")
    try:
        payload = _decoder.decode(data)
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", str(exc))
    except msgspec.DecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as utf_exc:
            return Rejection("invalid_utf8", str(utf_exc))
        return Rejection("not_json", str(exc))
    return validate_event(payload, message_id=message_id, received_at=received_at, limits=limits)


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
    event_id = None
    try:
        if not isinstance(payload, dict):
            raise _Invalid("not_an_object", f"got a JSON {json_type(payload)}")
        event_id = _optional_id(payload, "event_id", limits)
        user_id = _optional_id(payload, "user_id", limits)
        anonymous_id = _optional_id(payload, "anonymous_id", limits)
        if user_id is None and anonymous_id is None:
            raise _Invalid("missing_field:user_id", "user_id or anonymous_id is required")
        event_type = payload.get("event_type")
        if event_type is None:
            raise _Invalid("missing_field:event_type")
        event_type = _text(event_type, "event_type", limits.max_event_type_chars)
        session_id = _optional_id(payload, "session_id", limits)
        received_at = _received_at(payload, received_at)
        raw_ts = payload.get("timestamp")
        timestamp = received_at if raw_ts is None else parse_timestamp(raw_ts)
        if timestamp > received_at + limits.max_future_skew_s:
            raise _Invalid(
                "timestamp_in_future",
                f"{timestamp - received_at:.0f} s ahead of receipt (limit "
                f"{limits.max_future_skew_s:.0f} s)",
            )
        if timestamp < received_at - limits.max_age_s:
            raise _Invalid(
                "timestamp_too_old",
                f"{(received_at - timestamp) / 86400:.1f} days before receipt (limit "
                f"{limits.max_age_s / 86400:.0f} days)",
            )
        properties = payload.get("properties")
        if properties is None:
            properties = {}
        elif not isinstance(properties, dict):
            raise _Invalid(
                "invalid_type:properties", f"expected an object, got {json_type(properties)}"
            )
        elif properties:
            if len(properties) > limits.max_properties:
                raise _Invalid(
                    "too_many_properties", f"{len(properties)} > {limits.max_properties}"
                )
            _check_value(properties, "properties", 1, limits)
    except _Invalid as exc:
        return Rejection(exc.reason, exc.detail, event_id if isinstance(event_id, str) else None)

    if event_id is None:
        event_id = message_id
    who = actor(user_id, anonymous_id)
    return Event(
        key=dedupe_key(event_id, who, event_type, timestamp),
        event_id=event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event_type=event_type,
        timestamp=timestamp,
        session_id=session_id,
        properties=properties,
        received_at=received_at,
        who=who,
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
        and event_type.isprintable()
        and not event_type.isspace()
        and (user_id is not None or anonymous_id is not None)
    ):
        return None
    for value in (user_id, anonymous_id, event_id, session_id):
        if value is not None and not (
            type(value) is str
            and 0 < len(value) <= max_id
            and value.isprintable()
            and not value.isspace()
        ):
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
    if properties is None:
        properties = {}
    elif type(properties) is not dict or len(properties) > limits.max_properties:
        return None
    elif properties:
        try:
            _check_value(properties, "properties", 1, limits)
        except _Invalid:
            return None
    if event_id is None:
        event_id = message_id
    who = actor(user_id, anonymous_id)
    return Event(
        dedupe_key(event_id, who, event_type, timestamp),
        event_id,
        user_id,
        anonymous_id,
        event_type,
        timestamp,
        session_id,
        properties,
        received_at,
        who,
    )


def parse_timestamp(value: Any) -> float:
    """Epoch seconds, epoch milliseconds or an RFC 3339 string → epoch seconds (UTC)."""
    if isinstance(value, bool):
        raise _Invalid("invalid_type:timestamp", "expected a number or an RFC 3339 string")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise _Invalid("invalid_timestamp", f"{value!r} is not a point in time")
        if number >= _MAX_EPOCH_MILLIS:
            raise _Invalid("invalid_timestamp", f"{value!r} is out of range")
        return number / 1000.0 if number >= _MAX_EPOCH_SECONDS else number
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            raise _Invalid("invalid_timestamp", "expected RFC 3339, e.g. 2026-11-28T13:05:00Z")
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise _Invalid(
                "invalid_timestamp", f"{text[:40]!r} is not RFC 3339 (e.g. 2026-11-28T13:05:00Z)"
            ) from None
        if moment.tzinfo is None:
            raise _Invalid("invalid_timestamp", "RFC 3339 timestamps need a UTC offset or Z")
        return moment.timestamp()
    raise _Invalid(
        "invalid_type:timestamp", f"expected a number or a string, got {json_type(value)}"
    )


def _received_at(payload: dict[str, Any], fallback: float) -> float:
    value = payload.get("received_at")
    if value is None:
        return fallback
    try:
        return parse_timestamp(value)
    except _Invalid as exc:
        raise _Invalid("invalid_received_at", exc.detail) from None


def _optional_id(payload: dict[str, Any], name: str, limits: Limits) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if (
        type(value) is str
        and 0 < len(value) <= limits.max_id_chars
        and value.isprintable()
        and not value.isspace()
    ):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _text(value, name, limits.max_id_chars)


def _text(value: Any, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"invalid_type:{name}", f"expected a string, got {json_type(value)}")
    if not value or value.isspace():
        raise _Invalid(f"empty_field:{name}")
    if len(value) > max_chars:
        raise _Invalid(f"too_long:{name}", f"{len(value)} characters > {max_chars}")
    if not value.isprintable():
        raise _Invalid(f"invalid_characters:{name}", "control characters are not allowed")
    return value


_SCALARS = (bool, float, type(None))


def _check_value(value: Any, path: str, depth: int, limits: Limits) -> None:
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
            raise _Invalid(
                "string_too_long", f"{path}: {len(value)} characters > {limits.max_string_chars}"
            )
    elif isinstance(value, dict):
        if depth > limits.max_depth:
            raise _Invalid("too_deep", f"{path}: nesting deeper than {limits.max_depth}")
        for key, item in value.items():
            if not key:
                raise _Invalid("invalid_property_key", f"{path}: empty key")
            if len(key) > limits.max_property_key_chars:
                raise _Invalid(
                    "invalid_property_key",
                    f"{path}: key of {len(key)} characters > {limits.max_property_key_chars}",
                )
            _check_value(item, f"{path}.{key}", depth + 1, limits)
    elif isinstance(value, list):
        if depth > limits.max_depth:
            raise _Invalid("too_deep", f"{path}: nesting deeper than {limits.max_depth}")
        for index, item in enumerate(value):
            if isinstance(item, list):
                raise _Invalid(
                    "nested_array", f"{path}[{index}]: arrays of arrays cannot be stored"
                )
            _check_value(item, f"{path}[{index}]", depth + 1, limits)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Invalid("invalid_number", f"{path}: {value!r}")
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64_MIN <= value <= _INT64_MAX
    ):
        raise _Invalid("invalid_number", f"{path}: integer outside 64 bits")


def json_type(value: Any) -> str:
    match value:
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case None:
            return "null"
    return type(value).__name__
