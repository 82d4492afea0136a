"""CORS (`BA_CORS_ORIGINS`), for the collector alone while reads are open.

With read keys, every route answers the listed origins: a read still needs its key. Without
them (open reads, on loopback: docs/api.md "Authentication"), a CORS answer on a read would
let any page of a listed origin (of every origin, with `*`) read the data through a visitor's
browser with no key at all. So then only writes get CORS headers: a `POST`, the preflight
that asks for one, and analytics.js's settings (`GET /v1/projects/{writeKey}/settings`), which
it loads before it sends anything. A cross-origin read is then answered without them, and the
browser keeps the answer from the page.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from behavioral_analytics.api.responses import app_path

__all__ = ["WritesOnlyCORS", "cors_options"]

_SETTINGS_PATH = re.compile(r"/v1/projects/[^/]+/settings")


def cors_options(origins: list[str]) -> dict[str, Any]:
    """The CORS middleware's options for `origins` (`BA_CORS_ORIGINS`, `*` for any)."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST", "OPTIONS"],
        # The requested headers are echoed for allowed origins: analytics.js adds
        # X-Retry-Count on retries, and other libraries their own.
        "allow_headers": ["*"],
        "expose_headers": ["Retry-After"],
        "max_age": 600,
    }


class WritesOnlyCORS:
    """ASGI middleware: Starlette's `CORSMiddleware` with `options` for the requests that write
    (the module's docstring); every other request passes by it."""

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _writes(scope):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _writes(scope: Scope) -> bool:
    method = scope["method"]
    if method == "OPTIONS":
        asked = dict(scope["headers"]).get(b"access-control-request-method", b"")
        method = asked.decode("latin-1").upper()
    if method == "POST":
        return True
    return method in ("GET", "HEAD") and _SETTINGS_PATH.fullmatch(app_path(scope)) is not None
