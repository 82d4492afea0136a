"""What the command modules share: the stdout console, the `--json` option, loading the
settings and opening the store with one-line errors, and printing JSON and times."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer
from rich.console import Console

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.period_bounds import PeriodError, resolve_range
from behavioral_analytics.settings import Settings, load_settings
from behavioral_analytics.store import Store
from behavioral_analytics.wiring import build_store

__all__ = [
    "JsonOption",
    "console",
    "fmt_time",
    "load_config",
    "open_store",
    "period_range",
    "print_json",
]

console = Console()

JsonOption = typer.Option(False, "--json", help="Print one JSON document (shape: docs/cli.md).")


def load_config() -> Settings:
    """The settings from the environment and `.env`; a wrong setting exits 2 with one line."""
    with user_errors():
        return load_settings()


def open_store(config: Settings) -> Store:
    """The configured store; a configuration error exits 2, an unreachable store exits 1."""
    with user_errors():
        return build_store(config)


def print_json(document: Any) -> None:
    """`document` as indented JSON on stdout (values JSON cannot hold as their `str`)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def fmt_time(epoch: float | None) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC), or `-` for None."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + "Z"


def period_range(
    start: str | None, end: str | None, granularity: Granularity, timezone: str
) -> tuple[str | None, str | None]:
    """`--from`/`--to` → period labels, by the API's rules (`period_bounds`); a bound that
    names no period, or a reversed range, exits 2 with one line."""
    try:
        return resolve_range(start, end, granularity, Periods(timezone))
    except PeriodError as exc:
        fail(f"--from/--to: {exc}", 2)
