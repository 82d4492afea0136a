"""How the command line reports errors a user can meet: one clear line and a non-zero exit,
never a traceback. Shared by every command module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.config import ConfigError
from behavioral_analytics.store import StoreError

__all__ = ["err_console", "fail", "user_errors"]

err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*usage_errors: type[Exception]) -> Iterator[None]:
    """Configuration errors (and `usage_errors`) exit 2; an unreachable or failing store or
    broker exits 1."""
    try:
        yield
    except (ConfigError, *usage_errors) as exc:
        fail(str(exc), 2)
    except (StoreError, BrokerError, OSError) as exc:
        fail(str(exc))
