"""How the command line reports errors a user can meet: one clear line and a non-zero exit,
never a traceback. Shared by every command module."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.settings import ConfigError
from behavioral_analytics.sqlite_util import is_busy, is_read_only, locked
from behavioral_analytics.store import StoreError

__all__ = ["err_console", "fail", "plain_console", "user_errors"]


def plain_console(**options: Any) -> Console:
    """A rich `Console` (`options`: Console's) that prints a `str` as it is: no console markup,
    no emoji codes. Clients' ids, event types and pages reach the command line's messages, and
    a `[/z]` among them would stop the command with a markup error; a message that wants
    style passes `rich.text.Text` (`Text.assemble(("error:", "red"), " ", text)`).

    A message is printed on one line however wide the terminal (`soft_wrap`: the terminal wraps
    it, a pipe or a log keeps it whole); a table still fits the console's width. A live
    display (a progress bar) takes `soft_wrap=False`, so that its lines are cut at the width
    and redrawn in place."""
    return Console(**{"markup": False, "emoji": False, "soft_wrap": True, **options})


err_console = plain_console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (2 for a usage or configuration
    error, 1 for anything else). `message` is plain text: brackets such as an extra's
    `[gcp]` are printed as they are. Raises typer.Exit."""
    err_console.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*usage_errors: type[Exception], failed_code: int = 1) -> Iterator[None]:
    """Configuration errors (and `usage_errors`) exit 2; an unreachable or failing store or
    broker exits `failed_code` (1; `loadtest` gives 2, its code for a test that could not
    run), and so does an error a Google client library raised."""
    exit_2: tuple[type[Exception], ...] = (ConfigError, *usage_errors)
    try:
        yield
    except exit_2 as exc:
        fail(str(exc), 2)
    except (StoreError, BrokerError, OSError) as exc:
        fail(str(exc), failed_code)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            fail(locked(None, exc), failed_code)
        if is_read_only(exc):
            fail(
                f"the local data could not be written ({exc}): a file in BA_DATA_DIR is "
                "read-only for this user or on a read-only mount (`behavioral-analytics doctor` "
                "names it); this error does not mean the file is corrupt: keep it",
                failed_code,
            )
        # What an adapter let through: a damaged page, a value no commit writes (a hand edit).
        fail(
            f"the local data could not be read ({exc}): `behavioral-analytics doctor` checks "
            "every page of its files",
            failed_code,
        )
    except Exception as exc:
        # A Google client's own error that an adapter let through (a read at query time that
        # the library retried until its deadline, say): one line, not a traceback.
        if not type(exc).__module__.startswith("google."):
            raise
        detail = " ".join(str(exc).split()) or "no message"
        fail(f"Google Cloud {type(exc).__name__}: {detail}", failed_code)
