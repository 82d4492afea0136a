"""The collector: ingest routes, and the pure steps that turn request bodies into canonical events.

`from_segment` and `prepare` do no I/O (the clock and the id factory are passed in), so the
normalization is tested without a server. `prepare_calls` is the fast path for Segment calls:
the same outcome in one pass over calls decoded into structs, or None when the slow path must
decide. The routes add keys, limits, the broker publish and the dead letters.
"""

from __future__ import annotations

import os
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from behavioral_analytics.api.responses import ApiError, JSONResponse
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.events import (
    DEFAULT_LIMITS,
    Event,
    Limits,
    Rejection,
    _check_value,
    _Invalid,
    actor,
    json_type,
    validate_event,
)
from behavioral_analytics.privacy import scrub
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.telemetry import log

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "MAX_REQUEST_BYTES",
    "IngestFastPath",
    "Prepared",
    "from_segment",
    "prepare",
    "router",
    "routes",
]

MAX_REQUEST_BYTES = 500 * 1024
MAX_EVENTS_PER_REQUEST = 2000
SEGMENT_CALLS = ("track", "page", "screen", "identify")
# Epoch values from here on are read as milliseconds (events.py).
_MAX_EPOCH_SECONDS = 1e11

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_fromisoformat = datetime.fromisoformat

# ---------------------------------------------------------------------------------------------
# Pure normalization


def from_segment(
    message: Any, call: str | None = None, batch_context: dict[str, Any] | None = None
) -> dict[str, Any] | Rejection:
    """A Segment-spec call (track, page, screen, identify) → a canonical event payload.

    `call` is the endpoint's type (`/v1/track`); inside a batch each message names its `type`.
    track → `event`; page → "page_view" with `properties.name` and `properties.url`; screen →
    "screen_view" with `properties.name`; identify → "identify" with the traits as properties.
    The context (the batch's, overridden by the message's) is kept as `properties.context`
    unless the properties already have that key. `messageId` becomes the event id.
    """
    if not isinstance(message, dict):
        return Rejection("not_an_object", f"got a JSON {json_type(message)}")
    message_id = message.get("messageId")
    kind = call or message.get("type")
    if kind not in SEGMENT_CALLS:
        return Rejection(
            "unsupported_type",
            f"type {kind!r} is not one of {', '.join(SEGMENT_CALLS)}",
            message_id if isinstance(message_id, str) else None,
        )
    context = message.get("context")
    if context is not None and not isinstance(context, dict):
        return Rejection("invalid_type:context", f"expected an object, got {json_type(context)}")
    if batch_context:
        context = {**batch_context, **(context or {})}

    if kind == "identify":
        traits = message.get("traits")
        if traits is None and context is not None:
            traits = context.get("traits")
        properties: Any = traits
        event_type: Any = "identify"
    else:
        properties = message.get("properties")
        if kind == "track":
            event_type = message.get("event")
            if event_type is None:
                return Rejection("missing_field:event", "track calls need an event name")
        else:
            event_type = "page_view" if kind == "page" else "screen_view"
            properties = _named_view(
                message.get("name"), properties, context, with_url=kind == "page"
            )

    if context and (properties is None or isinstance(properties, dict)):
        properties = dict(properties or {})
        properties.setdefault("context", context)

    timestamp = message.get("timestamp")
    if timestamp is None:
        timestamp = message.get("originalTimestamp")
    return {
        "event_id": message_id,
        "user_id": message.get("userId"),
        "anonymous_id": message.get("anonymousId"),
        "event_type": event_type,
        "timestamp": timestamp,
        "properties": properties,
    }


def _named_view(
    name: Any, properties: Any, context: dict[str, Any] | None, *, with_url: bool
) -> Any:
    if properties is not None and not isinstance(properties, dict):
        return properties  # validation reports the wrong type
    properties = dict(properties or {})
    if name is not None:
        properties.setdefault("name", name)
    if with_url and "url" not in properties:
        page = (context or {}).get("page")
        if isinstance(page, dict) and page.get("url") is not None:
            properties["url"] = page["url"]
    return properties


@dataclass(slots=True)
class Prepared:
    """The outcome of a request's events: what to publish, and what was rejected and why."""

    accepted: list[tuple[int, Event, bytes]] = field(default_factory=list)
    rejected: list[tuple[int, Rejection, Any]] = field(default_factory=list)

    def accepted_by_type(self) -> Counter[str]:
        return Counter(event.event_type for _, event, _ in self.accepted)

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(rejection.reason for _, rejection, _ in self.rejected)

    def body(self) -> dict[str, Any]:
        return {
            "accepted": [event.event_id for _, event, _ in self.accepted],
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
) -> Prepared:
    """(original, canonical payload or rejection) pairs → events with ids, received_at and the
    exact JSON the worker will parse, validated as the worker validates them."""
    prepared = Prepared()
    accepted = prepared.accepted
    rejected = prepared.rejected
    max_bytes = limits.max_message_bytes
    encode = _encoder.encode
    for index, (original, payload) in enumerate(items):
        if isinstance(payload, Rejection):
            rejected.append((index, payload, original))
            continue
        client_id = None
        if isinstance(payload, dict):
            client_id = payload.get("event_id")
            if payload is original:  # never change the client's object: it may be dead-lettered
                payload = dict(payload)
            # The time of receipt is ours, never the client's: without the key, validation
            # uses `received_at` (and the event takes validate_event's fast path).
            if "received_at" in payload:
                del payload["received_at"]
            if client_id is None:
                payload["event_id"] = new_id()
            timestamp = payload.get("timestamp")
            if type(timestamp) is str:
                payload["timestamp"] = _epoch_seconds(timestamp)
        result = validate_event(payload, message_id="", received_at=received_at, limits=limits)
        if isinstance(result, Rejection):
            if client_id is None and result.event_id is not None:
                result = Rejection(result.reason, result.detail)  # an id we made up: not theirs
            rejected.append((index, result, original))
            continue
        if truncate_ips:
            scrub(result.properties, truncate_ips=True)
        data = encode(result.to_dict())
        if len(data) > max_bytes:
            detail = f"{len(data)} bytes as a canonical event > {max_bytes}"
            event_id = result.event_id if client_id is not None else None
            rejected.append((index, Rejection("too_large", detail, event_id), original))
            continue
        accepted.append((index, result, data))
    return prepared


# ---------------------------------------------------------------------------------------------
# The fast path: requests whose every event is obviously valid


class SegmentCall(msgspec.Struct, gc=False):
    """The fields of a Segment call that `from_segment` reads, each any JSON value. Decoding
    into it skips the rest of the call unread (nothing reads it on either path) and builds no
    dict per call; the checks are `from_segment`'s and validation's, made in `prepare_calls`."""

    type: Any = None
    messageId: Any = None  # Segment's field names
    userId: Any = None
    anonymousId: Any = None
    event: Any = None
    name: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    properties: Any = None
    traits: Any = None
    context: Any = None


class SegmentBatch(msgspec.Struct, gc=False):
    batch: list[SegmentCall]
    context: Any = None


class _Canonical(msgspec.Struct, gc=False):
    """`Event.to_dict()`'s keys in its order: encodes to the same bytes."""

    event_id: Any
    user_id: Any
    anonymous_id: Any
    event_type: Any
    timestamp: Any
    session_id: Any
    properties: Any
    received_at: Any


_decode_call = msgspec.json.Decoder(SegmentCall).decode
_decode_batch = msgspec.json.Decoder(SegmentBatch).decode


@dataclass(slots=True)
class Outcome:
    """A request's events as the route publishes and answers them: the accepted events' ids,
    types and broker messages (canonical JSON; the actor as ordering key when ordering is on)
    in request order, and the rejected events with their position, reason and original value."""

    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)
    rejected: list[tuple[int, Rejection, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, prepared: Prepared, *, ordering: bool = False) -> Outcome:
        accepted = prepared.accepted
        return cls(
            [event.event_id for _, event, _ in accepted],
            [event.event_type for _, event, _ in accepted],
            [
                OutgoingMessage(data, ordering_key=event.who if ordering else None)
                for _, event, data in accepted
            ],
            prepared.rejected,
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


def prepare_calls(
    calls: list[SegmentCall],
    call: str | None = None,
    batch_context: Any = None,
    *,
    received_at: float,
    new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
    limits: Limits = DEFAULT_LIMITS,
    ordering: bool = False,
    truncate_ips: bool = False,
) -> Outcome | None:
    """`prepare` of `from_segment` of every call in one pass, without the intermediate dicts
    and `Event`s: the same event ids and the same canonical JSON, byte for byte (the tests hold
    them equal). None as soon as one call is not obviously valid: the slow path then decides,
    names the reasons and keeps the original of each rejected event for the dead letters.

    The checks are those of validation's fast path (`events._common_case`) on the fields
    `from_segment` maps, for events without a session id or a `received_at` of their own.
    `batch_context` is the batch's `context` as sent (anything but an object is ignored, as
    `/v1/batch` does)."""
    if type(batch_context) is not dict:
        batch_context = None
    outcome = Outcome()
    ids = outcome.ids
    types = outcome.types
    messages = outcome.messages
    encode = _encoder.encode
    max_bytes = limits.max_message_bytes
    max_id = limits.max_id_chars
    max_type = limits.max_event_type_chars
    max_properties = limits.max_properties
    earliest = received_at - limits.max_age_s
    latest = received_at + limits.max_future_skew_s
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
        if kind == "track":
            event_type = message.event
            properties = message.properties
        elif kind == "page" or kind == "screen":
            event_type = "page_view" if kind == "page" else "screen_view"
            properties = _named_view(
                message.name, message.properties, context, with_url=kind == "page"
            )
        elif kind == "identify":
            event_type = "identify"
            properties = message.traits
            if properties is None and context is not None:
                properties = context.get("traits")
        else:
            return None
        if not (
            type(event_type) is str
            and 0 < len(event_type) <= max_type
            and event_type.isprintable()
            and not event_type.isspace()
        ):
            return None

        if properties is None:
            properties = {"context": context} if context else {}
        elif type(properties) is not dict:
            return None
        elif context and "context" not in properties:
            properties = {**properties, "context": context}
        if properties:
            if len(properties) > max_properties:
                return None
            try:
                _check_value(properties, "properties", 1, limits)
            except _Invalid:
                return None
            if truncate_ips:
                scrub(properties, truncate_ips=True)

        timestamp = message.timestamp
        if timestamp is None:
            timestamp = message.originalTimestamp
        if timestamp is None:
            timestamp = received_at
        else:
            sent_as = type(timestamp)
            if sent_as is str:
                timestamp = _epoch_seconds(timestamp)
                if type(timestamp) is not float:
                    return None
            elif (sent_as is float or sent_as is int) and 0 <= timestamp < _MAX_EPOCH_SECONDS:
                timestamp = float(timestamp)
            else:
                return None
            if not earliest <= timestamp <= latest:
                return None

        event_id = message.messageId
        if event_id is None:
            event_id = new_id()
        elif not (
            type(event_id) is str
            and 0 < len(event_id) <= max_id
            and event_id.isprintable()
            and not event_id.isspace()
        ):
            return None
        user_id = message.userId
        anonymous_id = message.anonymousId
        if user_id is not None and not (
            type(user_id) is str
            and 0 < len(user_id) <= max_id
            and user_id.isprintable()
            and not user_id.isspace()
        ):
            return None
        if anonymous_id is not None:
            if not (
                type(anonymous_id) is str
                and 0 < len(anonymous_id) <= max_id
                and anonymous_id.isprintable()
                and not anonymous_id.isspace()
            ):
                return None
        elif user_id is None:
            return None

        data = encode(
            _Canonical(
                event_id,
                user_id,
                anonymous_id,
                event_type,
                timestamp,
                None,
                properties,
                received_at,
            )
        )
        if len(data) > max_bytes:
            return None
        ids.append(event_id)
        types.append(event_type)
        if ordering:
            messages.append(OutgoingMessage(data, ordering_key=actor(user_id, anonymous_id)))
        else:
            messages.append(OutgoingMessage(data))
    return outcome


def _epoch_seconds(timestamp: str) -> str | float:
    """An RFC 3339 timestamp as the epoch seconds validation would make of it, or the string
    unchanged when it is not one validation reads the same way as a number (it then names the
    reason). Segment sends strings; validation's fast path takes numbers only.

    `parse_timestamp`'s reading of a string, inlined (tests hold the two equal)."""
    text = timestamp.strip()
    if not 0 < len(text) <= 64:
        return timestamp
    try:
        moment = _fromisoformat(text.replace("z", "Z"))
        if moment.tzinfo is None:
            return timestamp
        seconds = moment.timestamp()
    except Exception:
        return timestamp
    # parse_timestamp reads numbers past 1e11 as milliseconds and refuses negative ones.
    return seconds if 0.0 <= seconds < _MAX_EPOCH_SECONDS else timestamp


# ---------------------------------------------------------------------------------------------
# Request bodies


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, decompressed, refusing more than `limit` bytes with 413 as it streams."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid_request", "Content-Length is not a number") from None
        if size > limit:
            raise _too_large(f"request body of {size} bytes > {limit}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise ApiError(400, "invalid_gzip", "the body is not valid gzip") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise _too_large(f"decompressed body over {limit} bytes")
    return body


def _too_large(detail: str) -> ApiError:
    return ApiError(413, "too_large", detail)


def _decode(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "empty_body", "the request has no body")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "not_json", str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Routes

Items = list[tuple[Any, Any]]
# The calls of a request, the endpoint's call type (None: each call names its own) and the
# batch's context, as `prepare_calls` takes them.
FastCalls = tuple[list[SegmentCall], str | None, Any]
Fast = Callable[[bytes], FastCalls | None]

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The recipe's event: event_id, user_id or anonymous_id, event_type, "
    "timestamp (epoch s/ms or RFC 3339), session_id, properties.",
    "properties": {
        "event_id": {"type": "string"},
        "user_id": {"type": "string"},
        "anonymous_id": {"type": "string"},
        "event_type": {"type": "string"},
        "timestamp": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "session_id": {"type": "string"},
        "properties": {"type": "object"},
    },
}
_SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Segment-spec call: messageId, userId, anonymousId, event (track), name "
    "(page/screen), traits (identify), ISO-8601 timestamp, properties, context.",
    "properties": {
        "type": {"type": "string", "enum": list(SEGMENT_CALLS)},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
    },
}
_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "accepted": {"type": "array", "items": {"type": "string"}},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "event_id": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def _openapi(body_schema: dict[str, Any]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
        "responses": {
            "202": {
                "description": "At least one event accepted; the rest listed with reasons",
                "content": {"application/json": {"schema": _RESULT_SCHEMA}},
            },
            "400": {
                "description": "No event accepted (per-event reasons), or a malformed body",
                "content": {"application/json": {"schema": _RESULT_SCHEMA}},
            },
            "401": {"description": "Missing or unknown write key", **error},
            "413": {"description": "Event over 32 KB, request over 500 KB", **error},
            "429": {"description": "Rate limit of the write key; see Retry-After", **error},
            "503": {"description": "The broker did not confirm the publish; retry", **error},
        },
    }


Endpoint = Callable[[Request], Awaitable[Response]]


def router(state: ApiState) -> APIRouter:
    return routes(state)[0]


def routes(state: ApiState) -> tuple[APIRouter, dict[str, Endpoint]]:
    """The ingest routes (FastAPI: validation-free endpoints that read the raw body, described
    in the OpenAPI schema), and the same endpoints by path for `IngestFastPath`."""
    routes = APIRouter(tags=["collector"])
    endpoints: dict[str, Endpoint] = {}
    limits = state.settings.limits
    # Truncating is idempotent, so the worker's own pass changes nothing more; hashing listed
    # fields is not, so only the worker does it, once.
    truncate_ips = state.settings.truncate_ips

    def single(body: bytes) -> None:
        if len(body) > limits.max_message_bytes:
            raise _too_large(f"event of {len(body)} bytes > {limits.max_message_bytes}")

    async def ingest(
        request: Request, route: str, extract: Callable[[bytes, Any], Items], fast: Fast | None
    ) -> Response:
        status = 500
        try:
            response = await _ingest(request, extract, fast)
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status_code
            raise
        finally:
            state.metrics.requests.labels(route, str(status)).inc()

    async def _ingest(
        request: Request, extract: Callable[[bytes, Any], Items], fast: Fast | None
    ) -> Response:
        key = state.policy.write_key(request)
        body = await read_body(request)
        # The fast path decodes only what normalization reads and checks each event once; it
        # gives up (None) on anything unusual, and the slow path then does it all as before.
        calls = fast(body) if fast is not None else None
        items: Items | None = None
        if calls is None:
            items = extract(body, _decode(body))
            count = len(items)
        else:
            count = len(calls[0])
        if not count:
            raise ApiError(400, "empty_batch", "no events in the request")
        if count > MAX_EVENTS_PER_REQUEST:
            raise _too_large(f"{count} events in one request > {MAX_EVENTS_PER_REQUEST}")
        wait = state.limiter.acquire(key, count)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"over {state.limiter.rate:g} events/s for this write key",
                headers={"Retry-After": state.limiter.retry_after_header(wait)},
            )
        now = state.clock()
        outcome = None
        if calls is not None:
            outcome = prepare_calls(
                *calls,
                received_at=now,
                limits=limits,
                ordering=state.settings.ordering,
                truncate_ips=truncate_ips,
            )
            if outcome is None:
                items = extract(body, _decode(body))
        if outcome is None:
            assert items is not None
            prepared = prepare(items, received_at=now, limits=limits, truncate_ips=truncate_ips)
            outcome = Outcome.of(prepared, ordering=state.settings.ordering)
        if outcome.messages:
            await _publish(outcome.messages)
        if outcome.rejected:
            await _record_rejections(outcome, now)
        state.metrics.record_ingest(Counter(outcome.types), outcome.rejected_by_reason())
        return JSONResponse(outcome.body(), status_code=202 if outcome.ids else 400)

    async def _publish(messages: list[OutgoingMessage]) -> None:
        started = time.perf_counter()
        try:
            await state.publisher.publish(messages)
        except Exception as exc:
            state.metrics.publish_failures.inc()
            log.error("publish failed", extra={"error": repr(exc), "events": len(messages)})
            raise ApiError(
                503,
                "broker_unavailable",
                "the events were not published; retry the request",
                headers={"Retry-After": "1"},
            ) from None
        state.metrics.publish_latency.observe(time.perf_counter() - started)

    async def _record_rejections(outcome: Outcome, now: float) -> None:
        letters = [
            NewDeadLetter(
                reason=rejection.reason,
                detail=rejection.detail,
                data=msgspec.json.encode(original),
                message_id=rejection.event_id or uuid.uuid4().hex,
                source="collector",
                received_at=now,
            )
            for _, rejection, original in outcome.rejected
        ]
        try:
            await run_in_threadpool(state.store.add_dead_letters, letters)
        except Exception as exc:
            # The client has the reasons in its response; losing the record is logged, not fatal.
            state.metrics.dead_letter_failures.inc(len(letters))
            log.error(
                "recording rejected events failed",
                extra={"error": repr(exc), "events": len(letters)},
            )

    def events_items(body: bytes, payload: Any) -> Items:
        if isinstance(payload, list):
            return [(item, item) for item in payload]
        single(body)
        return [(payload, payload)]

    def segment_items(call: str) -> Callable[[bytes, Any], Items]:
        def extract(body: bytes, payload: Any) -> Items:
            single(body)
            return [(payload, from_segment(payload, call))]

        return extract

    def segment_fast(call: str) -> Fast:
        def fast(body: bytes) -> FastCalls | None:
            try:
                message = _decode_call(body)
            except msgspec.DecodeError:  # ValidationError included
                return None
            single(body)  # after decoding, as `extract` does
            return [message], call, None

        return fast

    def batch_items(body: bytes, payload: Any) -> Items:
        batch = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch, list):
            raise ApiError(400, "invalid_batch", 'expected {"batch": [...]}')
        context = payload.get("context")
        if not isinstance(context, dict):
            context = None
        return [(message, from_segment(message, None, context)) for message in batch]

    def batch_fast(body: bytes) -> FastCalls | None:
        try:
            batch = _decode_batch(body)
        except msgspec.DecodeError:  # ValidationError included
            return None
        return batch.batch, None, batch.context

    @routes.post(
        "/v1/events",
        status_code=202,
        summary="Send events in the recipe's format (one object or a list)",
        openapi_extra=_openapi(
            {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}
        ),
    )
    async def post_events(request: Request) -> Response:
        return await ingest(request, "events", events_items, None)

    endpoints["/v1/events"] = post_events

    def segment_handler(call: str) -> Callable[[Request], Any]:
        extract = segment_items(call)
        fast = segment_fast(call)

        async def handler(request: Request) -> Response:
            return await ingest(request, call, extract, fast)

        return handler

    for call in SEGMENT_CALLS:
        endpoints[f"/v1/{call}"] = segment_handler(call)
        routes.add_api_route(
            f"/v1/{call}",
            endpoints[f"/v1/{call}"],
            methods=["POST"],
            status_code=202,
            summary=f"Segment {call} call",
            openapi_extra=_openapi({**_SEGMENT_SCHEMA, "description": f"A Segment {call} call."}),
            name=f"post_{call}",
        )

    @routes.post(
        "/v1/batch",
        status_code=202,
        summary="Segment batch of track/page/screen/identify calls",
        openapi_extra=_openapi(
            {
                "type": "object",
                "required": ["batch"],
                "properties": {
                    "batch": {"type": "array", "items": _SEGMENT_SCHEMA},
                    "context": {"type": "object"},
                },
            }
        ),
    )
    async def post_batch(request: Request) -> Response:
        return await ingest(request, "batch", batch_items, batch_fast)

    endpoints["/v1/batch"] = post_batch
    return routes, endpoints


class IngestFastPath:
    """ASGI middleware that hands a POST to an ingest path straight to its endpoint.

    The endpoints take the raw request and do their own checks, so FastAPI's routing (a scan
    of every route), dependency solving and request validation would be pure overhead on the
    hottest path; the same endpoints stay registered as FastAPI routes, which describe them in
    the OpenAPI schema and answer anything this does not take (other methods, trailing
    slashes). Exceptions go to the app's exception handlers as they would through FastAPI;
    without one they propagate (500 from the server error middleware).
    """

    def __init__(
        self,
        app: ASGIApp,
        endpoints: dict[str, Endpoint],
        exception_handlers: dict[Any, Callable[[Request, Exception], Any]],
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):
                path = path[len(root) :]
            endpoint = self.endpoints.get(path)
            if endpoint is not None:
                request = Request(scope, receive)
                try:
                    response = await endpoint(request)
                except Exception as exc:
                    handler = self._handler(exc)
                    if handler is None:
                        raise
                    response = await handler(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[[Request, Exception], Any] | None:
        for cls in type(exc).__mro__:
            if cls is Exception:  # Starlette leaves that one to the server error middleware
                break
            if cls in self.exception_handlers:
                return self.exception_handlers[cls]
        return None
