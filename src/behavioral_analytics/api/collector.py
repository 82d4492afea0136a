"""The collector: the ingest routes, and the ASGI fast path that hands them their requests.

The routes speak the recipe's format (`/v1/events`) and Segment's tracking API as its libraries
speak it: the long paths (`/v1/track` …, `/v1/batch`, `/v1/import`), analytics.js's short ones
(`/t`, `/p`, `/i`, `/s`, `/a`, `/g`, `/b`, with or without `/v1`), JSON or `text/plain` bodies
(the body is read as JSON whatever its content type), the write key by header or in the body
(`writeKey`), and `GET /v1/projects/{writeKey}/settings`, so that analytics.js needs only its
host changed. Normalization is the core's (`behavioral_analytics.segment`); here are the keys,
limits, the broker publish, the answers and the dead letters.

Answers: Segment routes answer `200` once the request is taken, with the per-event results in
the body (a rejected event is in the body and in the dead letters: retrying it cannot help);
`/v1/events` answers `202`, or `400` when no event was accepted. Every non-2xx body carries
`code` and `message` besides `error` and `detail` (both Python libraries read `code`).

A body that msgspec refuses but the standard library reads (a lone surrogate escaped in a
string, what a browser leaves when it cuts text mid-emoji) is taken event by event: an id or
event name holding a lone surrogate rejects that event only, a property has it replaced by
U+FFFD.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from behavioral_analytics.api.addresses import client_address
from behavioral_analytics.api.bodies import (
    SPLIT,
    body_write_key,
    decode_body,
    read_body,
    too_deep,
    too_large,
)
from behavioral_analytics.api.ingest_schema import (
    BATCH_SCHEMA,
    ERROR_SCHEMA,
    EVENT_SCHEMA,
    NONE_ACCEPTED,
    SEGMENT_SCHEMA,
    ingest_openapi,
)
from behavioral_analytics.api.ratelimit import bucket_of
from behavioral_analytics.api.refusals import (
    RECORDED_STATUSES,
    Seen,
    log_refusal,
    refusal_letter,
)
from behavioral_analytics.api.responses import ApiError, JSONResponse, app_path
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.segment import (
    KEPT_AS,
    KEPT_EVENT,
    SEGMENT_CALLS,
    SHORT_PATHS,
    Outcome,
    Receipt,
    SegmentCall,
    dead_letter_fingerprint,
    decode_batch,
    decode_call,
    encode_original,
    from_segment,
    prepare,
    prepare_calls,
)
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.telemetry import log

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "IngestFastPath",
    "router",
    "routes",
]

MAX_EVENTS_PER_REQUEST = 2000


# ---------------------------------------------------------------------------------------------
# Routes


Items = list[tuple[Any, Any]]
Extract = Callable[[bytes, Any, Receipt], Items]
# The calls of a request, the endpoint's call type (None: each call names its own), the batch's
# context and `sentAt`, as `prepare_calls` takes them.
FastCalls = tuple[list[SegmentCall], str | None, Any, Any]
Fast = Callable[[bytes], FastCalls | None]

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
    proxy_hops = state.settings.trusted_proxy_hops

    def single(body: bytes) -> None:
        if len(body) > limits.max_message_bytes:
            raise too_large(f"event of {len(body)} bytes > {limits.max_message_bytes}")

    async def ingest(
        request: Request, route: str, extract: Extract, fast: Fast | None, segment: bool
    ) -> Response:
        status = 500
        seen = Seen()
        try:
            try:
                response = await _ingest(request, extract, fast, segment, seen)
            except RecursionError:  # a fast path's decoder: as `decode_body` answers it
                raise too_deep() from None
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status_code
            if status in RECORDED_STATUSES:
                await _record_refusal(route, exc, seen)
            raise
        finally:
            state.metrics.requests.labels(route, str(status)).inc()

    async def _ingest(
        request: Request, extract: Extract, fast: Fast | None, segment: bool, seen: Seen
    ) -> Response:
        key = state.policy.header_write_key(request)
        seen.key = key
        seen.address = client_address(request, proxy_hops)
        body = await read_body(request)
        seen.body = body
        if key is None:
            # No key in the headers: the body's `writeKey`, if the body can be read at all.
            key = state.policy.check_write_key(body_write_key(body), request)
            seen.key = key
        now = state.clock()
        receipt = Receipt(now, seen.address, request.headers.get("origin") is not None)
        # The fast path decodes only what normalization reads and checks each event once; it
        # gives up (None) on anything unusual, and the slow path then does it all.
        calls = fast(body) if fast is not None else None
        items: Items | None = None
        lenient = False
        if calls is None:
            payload, lenient = decode_body(body)
            items = extract(body, payload, receipt)
            count = len(items)
        else:
            count = len(calls[0])
        if not count:
            raise ApiError(400, "empty_batch", "no events in the request")
        if count > MAX_EVENTS_PER_REQUEST:
            raise too_large(f"{count} events in one request > {MAX_EVENTS_PER_REQUEST}{SPLIT}")
        wait = state.limiter.acquire(bucket_of(key, seen.address), count, bucket_of(key, None))
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"over {state.limiter.rate:g} events/s for this write key from this address",
                headers={"Retry-After": state.limiter.retry_after_header(wait)},
            )
        outcome = None
        if calls is not None:
            outcome = prepare_calls(
                calls[0],
                calls[1],
                calls[2],
                receipt=receipt,
                batch_sent_at=calls[3],
                limits=limits,
                ordering=state.settings.ordering,
                truncate_ips=truncate_ips,
                derive=state.derive,
            )
            if outcome is None:
                payload, lenient = decode_body(body)
                items = extract(body, payload, receipt)
        if outcome is None:
            assert items is not None
            prepared = prepare(
                items,
                received_at=now,
                limits=limits,
                truncate_ips=truncate_ips,
                repair_surrogates=lenient,
                derive=state.derive,
            )
            outcome = Outcome.of(prepared, ordering=state.settings.ordering)
        if outcome.data:
            await _publish(
                [
                    OutgoingMessage(data, ordering_key=ordering_key)
                    for data, ordering_key in zip(outcome.data, outcome.ordering_keys, strict=True)
                ]
            )
        if outcome.rejected:
            await _record_rejections(outcome, now)
        state.metrics.record_ingest(Counter(outcome.types), outcome.rejected_by_reason())
        answer = outcome.body()
        if segment:
            return JSONResponse(answer, status_code=200)
        if outcome.ids:
            return JSONResponse(answer, status_code=202)
        answer.update(
            error="rejected", detail=NONE_ACCEPTED, code="rejected", message=NONE_ACCEPTED
        )
        return JSONResponse(answer, status_code=400)

    async def _publish(messages: list[OutgoingMessage]) -> None:
        started = time.perf_counter()
        try:
            await state.publisher.publish(messages)
        except Exception as exc:
            state.health.record_publish(state.clock(), exc)
            state.metrics.publish_failures.inc()
            log.error("publish failed", extra={"error": repr(exc), "events": len(messages)})
            raise ApiError(
                503,
                "broker_unavailable",
                "the events were not published; retry the request",
                headers={"Retry-After": "1"},
            ) from None
        state.health.record_publish(state.clock())
        state.metrics.publish_latency.observe(time.perf_counter() - started)

    async def _record_refusal(route: str, error: ApiError, seen: Seen) -> None:
        """Count, log and (for a request whose key was accepted) keep a request refused whole
        (`refusals`)."""
        state.metrics.requests_refused.labels(route, error.error).inc()
        # A kept refusal costs the key one event of its rate: refused requests cannot write
        # dead letters faster than accepted ones write events.
        keep = seen.key is not None and not state.limiter.acquire(
            bucket_of(seen.key, seen.address), 1, bucket_of(seen.key, None)
        )
        log_refusal(route, error, seen, keep)
        if keep:
            letter = refusal_letter(route, error, seen, state.clock(), limits.max_message_bytes)
            await _keep_dead_letters([letter])

    async def _record_rejections(outcome: Outcome, now: float) -> None:
        letters = []
        for index, rejection, original in outcome.rejected:
            fingerprint = dead_letter_fingerprint(original, rejection.reason)
            # The client's id names the dead letter unless it is too long to be an id.
            client_id = rejection.event_id
            if client_id is not None and len(client_id) > limits.max_id_chars:
                client_id = None
            # An event refused for its time alone is kept as the worker would take it.
            kept = outcome.kept_events.get(index)
            letters.append(
                NewDeadLetter(
                    reason=rejection.reason,
                    detail=rejection.detail,
                    data=encode_original(original) if kept is None else kept,
                    message_id=client_id or fingerprint,
                    attributes={} if kept is None else {KEPT_AS: KEPT_EVENT},
                    source="collector",
                    received_at=now,
                    retry_fingerprint=fingerprint,
                )
            )
        await _keep_dead_letters(letters)

    async def _keep_dead_letters(letters: list[NewDeadLetter]) -> None:
        try:
            await run_in_threadpool(state.store.add_dead_letters, letters)
        except Exception as exc:
            # The client has the reasons in its response; losing the record is logged, not fatal.
            state.metrics.dead_letter_failures.inc(len(letters))
            log.error(
                "recording rejected events failed",
                extra={"error": repr(exc), "events": len(letters)},
            )

    def events_items(body: bytes, payload: Any, receipt: Receipt) -> Items:
        if isinstance(payload, list):
            return [(item, item) for item in payload]
        single(body)
        return [(payload, payload)]

    def segment_items(call: str) -> Extract:
        def extract(body: bytes, payload: Any, receipt: Receipt) -> Items:
            single(body)
            return [(payload, from_segment(payload, call, receipt=receipt))]

        return extract

    def segment_fast(call: str) -> Fast | None:
        if call not in ("track", "page", "screen", "identify"):
            return None

        def fast(body: bytes) -> FastCalls | None:
            try:
                message = decode_call(body)
            except msgspec.DecodeError:  # ValidationError included
                return None
            single(body)  # after decoding, as `extract` does
            return [message], call, None, None

        return fast

    def batch_items(body: bytes, payload: Any, receipt: Receipt) -> Items:
        batch = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch, list):
            raise ApiError(400, "invalid_batch", 'expected {"batch": [...]}')
        context = payload.get("context")
        if not isinstance(context, dict):
            context = None
        sent_at = payload.get("sentAt")
        return [
            (
                message,
                from_segment(message, None, context, receipt=receipt, batch_sent_at=sent_at),
            )
            for message in batch
        ]

    def batch_fast(body: bytes) -> FastCalls | None:
        try:
            batch = decode_batch(body)
        except msgspec.DecodeError:  # ValidationError included
            return None
        return batch.batch, None, batch.context, batch.sentAt

    @routes.post(
        "/v1/events",
        status_code=202,
        summary="Send events in the recipe's format (one object or a list)",
        openapi_extra=ingest_openapi(
            {"oneOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA}]}, segment=False
        ),
    )
    async def post_events(request: Request) -> Response:
        return await ingest(request, "events", events_items, None, False)

    endpoints["/v1/events"] = post_events

    def segment_handler(call: str) -> Endpoint:
        extract = segment_items(call)
        fast = segment_fast(call)

        async def handler(request: Request) -> Response:
            return await ingest(request, call, extract, fast, True)

        return handler

    async def post_batch(request: Request) -> Response:
        return await ingest(request, "batch", batch_items, batch_fast, True)

    by_call: dict[str, Endpoint] = {"batch": post_batch}
    for call in SEGMENT_CALLS:
        by_call[call] = segment_handler(call)
        endpoints[f"/v1/{call}"] = by_call[call]
        routes.add_api_route(
            f"/v1/{call}",
            by_call[call],
            methods=["POST"],
            status_code=200,
            summary=f"Segment {call} call",
            openapi_extra=ingest_openapi(
                {**SEGMENT_SCHEMA, "description": f"A Segment {call} call."}, segment=True
            ),
            name=f"post_{call}",
        )
    for path, summary in (
        ("/v1/batch", "Segment batch of calls"),
        ("/v1/import", "Segment import: a batch of calls, as /v1/batch"),
    ):
        endpoints[path] = post_batch
        routes.add_api_route(
            path,
            post_batch,
            methods=["POST"],
            status_code=200,
            summary=summary,
            openapi_extra=ingest_openapi(BATCH_SCHEMA, segment=True),
            name=f"post_{path.rsplit('/', 1)[-1]}",
        )
    # analytics.js's short paths: the same endpoints, left out of the schema.
    for short, call in SHORT_PATHS.items():
        for path in (f"/{short}", f"/v1/{short}"):
            endpoints[path] = by_call[call]
            routes.add_api_route(
                path, by_call[call], methods=["POST"], include_in_schema=False, name=path
            )

    @routes.get(
        "/v1/projects/{write_key}/settings",
        summary="Settings for analytics.js: send to this collector",
        responses={
            200: {"description": "analytics.js's project settings"},
            404: {
                "description": "Unknown write key",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        },
    )
    async def project_settings(write_key: str, request: Request) -> Response:
        """What analytics.js loads from its CDN before it sends anything (`cdnURL` set to this
        collector): the Segment.io destination pointed at this host's `/v1`, with nothing else
        to load and its own metrics off."""
        if not state.policy.knows_write_key(write_key):
            raise ApiError(404, "unknown_write_key", "no project has this write key")
        host = request.headers.get("host") or f"{state.settings.api_host}:{state.settings.api_port}"
        return JSONResponse(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host}/v1",
                        "protocol": _client_scheme(request),
                        "unbundledIntegrations": [],
                        "addBundledMetadata": False,
                    }
                },
                "plan": {"track": {"__default": {"enabled": True}}},
                "edgeFunction": {},
                "analyticsNextEnabled": True,
                "middlewareSettings": {},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
            },
            headers={"Cache-Control": "no-store"},
        )

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
            endpoint = self.endpoints.get(app_path(scope))
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


def _client_scheme(request: Request) -> str:
    """The scheme the client used to reach the collector: behind a front end that ends TLS
    (Cloud Run's, a load balancer) the connection is plain HTTP and `X-Forwarded-Proto` (its
    first value) says `https`. analytics.js sends every event to `protocol://apiHost`, so
    answering `http` to a page served over HTTPS would have the browser block them all as
    mixed content. Only this answer depends on the header."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded if forwarded in ("http", "https") else request.url.scheme
