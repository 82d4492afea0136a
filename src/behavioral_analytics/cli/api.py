"""`api`: serve the collector, the query API and the live dashboard (`api/server.py`).

The one optional command: it needs the `api` extra (fastapi, uvicorn), imported only when the
command runs. Without them it says so in one line and exits 2, like the other missing-extra
errors; any other ImportError is a bug and surfaces with its traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import typer

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.cli.errors import fail
from behavioral_analytics.cli.shared import check_address
from behavioral_analytics.settings import ConfigError, load_settings
from behavioral_analytics.store import StoreError
from behavioral_analytics.telemetry import configure_logging
from behavioral_analytics.wiring import build_server

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["api"]

# The top-level packages of the `api` extra (pyproject.toml).
_EXTRA_PACKAGES = frozenset({"fastapi", "uvicorn"})


def api(
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default BA_API_HOST, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port (default PORT or BA_API_PORT, 8080)."
    ),
) -> None:
    """Serve the collector, the query API and the live dashboard."""
    try:
        from behavioral_analytics.api.server import serve
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_PACKAGES:
            raise
        fail(f"the api command needs {exc.name}: pip install 'behavioral-analytics[api]'", 2)

    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        # Before the store opens, as `up` does: uvicorn would say it in a JSON log line, exit 3.
        check_address(host or settings.api_host, port if port is not None else settings.api_port)
        server = build_server(settings, host, port)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (StoreError, BrokerError, OSError) as exc:  # a data folder it cannot open: one line
        fail(str(exc))
    serve(server)
    changed = cast("FastAPI", server.config.app).state.api.config_changed
    if changed is not None:  # the recorded configuration changed (`api.config_watch`)
        fail(changed)
