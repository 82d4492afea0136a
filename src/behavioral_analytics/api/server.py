"""Serving the API with uvicorn: blocking, JSON logs, graceful on SIGTERM (Cloud Run's signal)."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn

from behavioral_analytics.api.app import create_app
from behavioral_analytics.config import Settings
from behavioral_analytics.telemetry import configure_logging

__all__ = ["make_server", "serve"]

# Cloud Run allows about 10 s between SIGTERM and SIGKILL.
GRACEFUL_SHUTDOWN_S = 8


def _log_config(level: str) -> dict[str, Any]:
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stdout",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "behavioral_analytics.telemetry.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # One line per request is too much at ingest rates; DEBUG turns it on.
            "uvicorn.access": {
                "handlers": ["json"],
                "level": "DEBUG" if level == "DEBUG" else "WARNING",
                "propagate": False,
            },
        },
    }


def make_server(
    settings: Settings, host: str | None = None, port: int | None = None
) -> uvicorn.Server:
    """A uvicorn server for the API (not started). `run()` it, or run it in a thread and set
    `should_exit` to stop it: signal handlers are only installed in the main thread."""
    host = host or settings.api_host
    port = port if port is not None else settings.api_port
    settings = settings.model_copy(update={"api_host": host, "api_port": port})
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=_log_config(settings.log_level),
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=True,
        server_header=False,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and close the ports.

    Raises ConfigError (one line for the user) when keys are missing off loopback.
    """
    configure_logging(settings.log_level)
    server = make_server(settings, host, port)
    # What exists now (modules, the app, its routes and schemas) lives as long as the process:
    # leave it out of the cyclic garbage collector's full passes, which otherwise walk all of
    # it again every few thousand allocations at ingest rates.
    gc.collect()
    gc.freeze()
    server.run()
