"""Error and JSON response types shared by the API's routers."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

__all__ = ["ApiError", "JSONResponse", "api_error_handler"]


class JSONResponse(Response):
    """JSON encoded with msgspec: faster than the standard library on the ingest path."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ApiError(Exception):
    """An error answered as `{"error": code, "detail": text}` with the given status."""

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


async def api_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = {"error": exc.error, "detail": exc.detail, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
