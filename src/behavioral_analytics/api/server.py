"""Serving the API with uvicorn: blocking, JSON logs, graceful on SIGTERM (Cloud Run's signal)."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn
from fastapi import FastAPI

from behavioral_analytics.settings import Settings

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


def make_server(app: FastAPI, settings: Settings) -> uvicorn.Server:
    """A uvicorn server for `app` on `settings.api_host:api_port` (not started). `run()` it,
    or run it in a thread and set `should_exit` to stop it: signal handlers are only
    installed in the main thread. `wiring.build_server` builds the app and the server."""
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=_log_config(settings.log_level),
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        # X-Forwarded-For is read by `addresses.client_address` alone, as BA_TRUSTED_PROXY_HOPS
        # says; uvicorn's own rewriting would trust it from any loopback peer.
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


def serve(server: uvicorn.Server) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and close the ports."""
    # What exists now (modules, the app, its routes and schemas) lives as long as the process:
    # leave it out of the cyclic garbage collector's full passes, which otherwise walk all of
    # it again every few thousand allocations at ingest rates.
    gc.collect()
    gc.freeze()
    server.run()
