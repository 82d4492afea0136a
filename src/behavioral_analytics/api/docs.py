"""`/docs`: Swagger UI for the OpenAPI document, working offline.

FastAPI's own `/docs` page loads Swagger UI from a CDN, so it is blank without internet access.
Here the script and style come from the fastapi-swagger package's copy of the Swagger UI
distribution, mounted at `/swagger/`, and the page links them by path (no host, so the page
also works behind a TLS-terminating proxy).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_PREFIX", "add_docs"]

ASSETS_PREFIX = "/swagger"
_ASSETS_PACKAGE = "fastapi_swagger.resources"


def add_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at `docs_url` and its assets under ASSETS_PREFIX. The app must be
    built with `docs_url=None` (FastAPI's CDN page). Raises ModuleNotFoundError without the
    `api` extra's fastapi-swagger."""
    assets = Path(str(resources.files(_ASSETS_PACKAGE)))
    app.mount(ASSETS_PREFIX, StaticFiles(directory=assets), name="swagger")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} · API",
            swagger_js_url=f"{root}{ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PREFIX}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True, "filter": True},
        )
