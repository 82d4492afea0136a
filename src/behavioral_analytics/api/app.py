"""Builds the API application: collector, query API, ops routes and the dashboard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from behavioral_analytics import __version__
from behavioral_analytics.aggregation import Periods
from behavioral_analytics.api import (
    behavior,
    collector,
    config_watch,
    dashboard,
    docs,
    ops,
    query,
    retention,
)
from behavioral_analytics.api.auth import KeyPolicy
from behavioral_analytics.api.cache import TTLCache
from behavioral_analytics.api.config_watch import watch_config
from behavioral_analytics.api.cors import WritesOnlyCORS, cors_options
from behavioral_analytics.api.loopback_guard import LoopbackGuard
from behavioral_analytics.api.metrics import ApiMetrics, IngestAnswers, counting_endpoint
from behavioral_analytics.api.publisher import GroupPublisher
from behavioral_analytics.api.ratelimit import RateLimiter
from behavioral_analytics.api.responses import (
    ApiError,
    JSONResponse,
    api_error_handler,
    app_path,
    error_body,
    http_error_handler,
    internal_error_handler,
    validation_error_handler,
)
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.broker import Broker, BrokerError
from behavioral_analytics.dimensions import Derive
from behavioral_analytics.segment import SEGMENT_CALLS, SHORT_PATHS
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store, StoreError
from behavioral_analytics.stored_config import StoredConfig
from behavioral_analytics.telemetry import log

__all__ = ["HeadAsGet", "create_app", "ingest_route_labels"]

_WRITE_SECURITY: list[dict[str, list[str]]] = [
    {"writeKeyBasic": []},
    {"writeKeyHeader": []},
    {"bearer": []},
]
_READ_SECURITY: list[dict[str, list[str]]] = [
    {"bearer": []},
    {"readKeyHeader": []},
    {"readKeyBasic": []},
]


def create_app(
    settings: Settings,
    broker: Broker,
    store: Store,
    *,
    owns_ports: bool = False,
    cache_ttl_s: float = 1.0,
    clock: Callable[[], float] = time.time,
    derive: Derive | None = None,
    held_config: StoredConfig | None = None,
    config_check_s: float | None = None,
) -> FastAPI:
    """The API on the given ports (`wiring.build_api` builds them from the settings).

    With `owns_ports`, the ports are closed at shutdown. `derive` sets each accepted event's
    `$derived` (docs/breakdowns.md); None derives nothing. With `held_config` (the
    configuration the store was opened with), the recorded one is watched every
    `config_check_s` seconds (`config_watch.CHECK_S` when None). Raises ConfigError when keys
    are missing and `settings.api_host` is not a loopback address.
    """
    policy = KeyPolicy.from_settings(settings)
    owned: list[Broker | Store] = [broker, store] if owns_ports else []

    state = ApiState(
        settings=settings,
        broker=broker,
        store=store,
        policy=policy,
        limiter=RateLimiter(settings.rate_limit),
        cache=TTLCache(cache_ttl_s),
        metrics=ApiMetrics(),
        periods=Periods(settings.timezone),
        publisher=GroupPublisher(broker),
        clock=clock,
        derive=derive,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _log_auth_mode(settings, policy)
        watch = None
        if held_config is not None:
            check_s = config_watch.CHECK_S if config_check_s is None else config_check_s
            watch = asyncio.create_task(watch_config(state, held_config, check_s))
        yield
        if watch is not None:
            watch.cancel()
        state.publisher.close()
        for port in owned:
            try:
                port.close()
            except Exception as exc:
                log.warning("closing a port failed", extra={"error": repr(exc)})

    app = FastAPI(
        title="behavioral-analytics",
        version=__version__,
        summary="Collector, query API and live dashboard of behavioral-analytics",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # /docs is served by `docs` from a package's copy of Swagger UI, so it works offline.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.api = state
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StoreError, _unavailable("store_unavailable"))
    app.add_exception_handler(BrokerError, _unavailable("broker_unavailable"))
    app.add_exception_handler(Exception, internal_error_handler)
    ingest_routes, ingest_endpoints = collector.routes(state)
    app.add_middleware(HeadAsGet)
    app.add_middleware(NoStore)
    # Added before CORS, so CORS wraps it (the last middleware added is the outermost).
    app.add_middleware(
        collector.IngestFastPath,
        endpoints={path: counting_endpoint(e) for path, e in ingest_endpoints.items()},
        exception_handlers=app.exception_handlers,
    )
    origins = sorted(Settings.keys(settings.cors_origins))
    if origins:
        cors = WritesOnlyCORS if policy.open_reads else CORSMiddleware
        app.add_middleware(cors, **cors_options(origins))
    if policy.open_writes or policy.open_reads:  # outside CORS: it refuses before CORS answers
        app.add_middleware(
            LoopbackGuard,
            bound_host=settings.api_host,
            bound_port=settings.api_port,
            open_writes=policy.open_writes,
            allowed_hosts=sorted(Settings.keys(settings.allowed_hosts)),
            allowed_origins=origins,
        )
    app.include_router(ingest_routes)
    routers = [query, behavior, retention, dashboard, ops]
    reads: set[str] = set()
    for module in routers:
        router = module.router(state)
        app.include_router(router)
        reads |= {
            r.path for r in router.routes if isinstance(r, APIRoute) and "GET" in (r.methods or ())
        }
    # Outermost: it counts the answers on ingest paths that the endpoints never saw, but not
    # the reads a path also serves (GET /v1/events lists events).
    app.add_middleware(
        IngestAnswers,
        metrics=state.metrics,
        routes=ingest_route_labels(ingest_endpoints),
        reads=reads,
    )
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    docs.add_docs(app)
    # FastAPI documents replacing `openapi` as the way to customize the schema
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def ingest_route_labels(paths: Iterable[str]) -> dict[str, str]:
    """Each ingest path → the `route` label its endpoint counts its answers under (the call,
    `batch` or `events`), for the answers given before the endpoint (`IngestAnswers`)."""
    labels = {"/v1/events": "events", "/v1/batch": "batch", "/v1/import": "batch"}
    labels |= {f"/v1/{call}": call for call in SEGMENT_CALLS}
    for short, call in SHORT_PATHS.items():
        labels[f"/{short}"] = labels[f"/v1/{short}"] = call
    return {path: labels.get(path, path) for path in paths}


class HeadAsGet:
    """ASGI middleware answering `HEAD` as the same `GET`, without the body (uptime checkers
    send `HEAD /healthz`; HTTP asks every server to answer `HEAD` wherever it answers `GET`).
    The headers, `Content-Length` included, are the `GET`'s."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def head_only(message: Message) -> None:
            if message["type"] not in ("http.response.body", "http.response.pathsend"):
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, head_only)


class NoStore:
    """ASGI middleware: `Cache-Control: no-store` on every answer to a read of data (`GET` or
    `HEAD` under `/v1/`, and `/metrics`) that sets no `Cache-Control` of its own. A read key
    travels in `Authorization` or `X-Read-Key`; a shared cache between the client and the API
    must not keep an answer it gave, nor hand it to a client without the key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reads = scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
        path = app_path(scope) if reads else ""
        if not (path.startswith("/v1/") or path == "/metrics"):
            await self.app(scope, receive, send)
            return

        async def no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, no_store)


def _unavailable(code: str) -> Callable[[Request, Exception], Any]:
    async def handler(_: Request, exc: Exception) -> Response:
        log.error("backend error", extra={"error": repr(exc), "code": code})
        return JSONResponse(
            error_body(code, "the backend is unavailable; retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    return handler


def _log_auth_mode(settings: Settings, policy: KeyPolicy) -> None:
    where = {"host": settings.api_host}
    if policy.open_writes:
        log.warning(
            "no write keys configured (BA_WRITE_KEYS): the collector is open on loopback",
            extra=where,
        )
    if policy.open_reads:
        log.warning(
            "no read keys configured (BA_READ_KEYS): queries are open on loopback", extra=where
        )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        "writeKeyBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "Write key as user name",
        },
        "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
        "readKeyBasic": {"type": "http", "scheme": "basic", "description": "Read key as user name"},
        "readKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Read-Key"},
        "bearer": {"type": "http", "scheme": "bearer", "description": "A write or read key"},
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            tags = operation.get("tags", [])
            if "collector" in tags:
                operation["security"] = _WRITE_SECURITY
            elif path != "/healthz" and path != "/readyz":
                operation["security"] = _READ_SECURITY
    app.openapi_schema = schema
    return schema
