"""Error and JSON response types shared by the API's routers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as StarletteJSONResponse
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from behavioral_analytics.telemetry import log, scrub_path

__all__ = [
    "ApiError",
    "JSONResponse",
    "api_error_handler",
    "app_path",
    "error_body",
    "http_error_handler",
    "internal_error_handler",
    "validation_error_handler",
]


def app_path(scope: Mapping[str, Any]) -> str:
    """A request's path from the app's root: without the `root_path` a server mounted it under
    (uvicorn's `--root-path`, a proxy's prefix), as the routes match it."""
    path: str = scope["path"]
    root = scope.get("root_path")
    return path[len(root) :] if root and path.startswith(root) else path


class JSONResponse(StarletteJSONResponse):
    """JSON encoded with msgspec: faster than the standard library on the ingest path. A JSON
    response class to FastAPI, so the OpenAPI document gives each route's answer its schema
    (an object for the read routes' `dict[str, Any]`), not a string."""

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ApiError(Exception):
    """An error answered as `{"error": code, "detail": text, "code": code, "message": text}`
    with the given status."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An error answer: `error` (a stable code) and `detail` (for people), and the same as
    `code` and `message`, which Segment's and RudderStack's Python libraries read."""
    return {"error": error, "detail": detail, "code": error, "message": detail, **extra}


async def api_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = error_body(exc.error, exc.detail, **exc.extra)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own errors (no such route, method not allowed) in the API's error shape.

    A 405's `Allow` names every method the path answers (RFC 9110, section 15.5.6): Starlette's
    names only the first route's, and `/v1/events` is two routes (POST to collect, GET to
    read)."""
    assert isinstance(exc, StarletteHTTPException)
    error = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request, headers.get("Allow", ""))
    return JSONResponse(error_body(error, detail), status_code=exc.status_code, headers=headers)


def _allowed(request: Request, given: str) -> str:
    """`given` (the refusing route's `Allow`) with the methods of every other route at the
    request's path, and `HEAD` wherever `GET` (`app.HeadAsGet` answers it). A mount (the
    dashboard's static files) names its own methods: mounts are not asked again."""
    # A mount rewrites `root_path` in the shared scope (keeping the server's, e.g. uvicorn's
    # `--root-path`, as `app_root_path`); the routes match from the app's root.
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    scope = {**request.scope, "root_path": root_path}
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    allowed = {method.strip() for method in given.split(",") if method.strip()}
    for method in _METHODS:
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes):
            allowed.add(method)
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


async def validation_error_handler(_: Request, exc: Exception) -> Response:
    """A request FastAPI's validation refused (a query parameter of the wrong type): 422 in the
    API's error shape, FastAPI's list of problems in `errors`."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    detail = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
    return JSONResponse(error_body("invalid_request", detail, errors=errors), status_code=422)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """An error no handler expected: 500 in the API's error shape, not Starlette's plain text;
    the traceback goes to the log (the server logs it too), never to the client."""
    log.error(
        "request failed",
        exc_info=exc,
        extra={"path": scrub_path(request.url.path), "error": type(exc).__name__},
    )
    return JSONResponse(
        error_body("internal_error", "the server failed on this request; its log has the cause"),
        status_code=500,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
