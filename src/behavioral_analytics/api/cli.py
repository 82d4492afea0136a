"""The `behavioral-analytics api` command (registered by the main CLI)."""

from __future__ import annotations

import typer

from behavioral_analytics.config import ConfigError, load_settings

__all__ = ["api"]


def api(
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default BA_API_HOST, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port (default PORT or BA_API_PORT, 8080)."
    ),
) -> None:
    """Serve the collector, the query API and the live dashboard."""
    from behavioral_analytics.api.server import serve

    try:
        serve(load_settings(), host, port)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
