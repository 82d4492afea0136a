"""What the command modules share: the stdout console, the `--json` option, loading the
settings and opening the store with one-line errors, and printing JSON and times."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import typer
from rich.text import Text

from behavioral_analytics.actors import ANONYMOUS_PREFIX
from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.cli.errors import err_console, fail, plain_console, user_errors
from behavioral_analytics.events import DEFAULT_LIMITS
from behavioral_analytics.listing_cursors import CursorMismatch
from behavioral_analytics.period_bounds import PeriodError, resolve_range
from behavioral_analytics.settings import (
    Settings,
    load_settings,
    unknown_names,
    unreadable_env_lines,
)
from behavioral_analytics.sqlite_util import dangling_link, not_a_file
from behavioral_analytics.store import InvalidCursor, Store
from behavioral_analytics.wiring import (
    check_local_store,
    local_broker_path,
    local_store_path,
    local_store_written,
    open_configured,
)

__all__ = [
    "PROGRESS_AFTER_S",
    "DropOlderOption",
    "JsonOption",
    "check_actor",
    "check_address",
    "check_event_type",
    "check_user_id",
    "confirm_or_stop",
    "console",
    "cursor_errors",
    "data_location",
    "fmt_time",
    "load_config",
    "open_for_periods",
    "open_reader",
    "open_store",
    "period_range",
    "plural",
    "print_json",
    "progress_lines",
    "require_collector",
    "require_data",
]

console = plain_console()

JsonOption = typer.Option(False, "--json", help="Print one JSON document (shape: docs/cli.md).")
DropOlderOption = typer.Option(
    False,
    "--drop-older",
    help="Rebuild even where aggregates are older than the raw-event retention: they are "
    "recounted from the raw events kept, losing those that expired.",
)


def check_event_type(event_type: str) -> None:
    """Exit 2 with one line on a blank event type, or one longer than any event's
    (`Limits.max_event_type_chars`): every option naming an event type (`query events --type`,
    `query series --type`, `query retention --start-event`) checks it before anything else."""
    longest = DEFAULT_LIMITS.max_event_type_chars
    expected = f"expected an event type of 1 to {longest} characters, not blank"
    if not event_type.strip():
        fail(f"event type {event_type!r} is blank: {expected}", 2)
    if len(event_type) > longest:
        shown = event_type if len(event_type) <= 64 else event_type[:64] + "…"
        fail(f"event type {shown!r} ({plural(len(event_type), 'character')}): {expected}", 2)


def check_user_id(
    user: str, kind: Literal["user id", "anonymous id", "group id"] = "user id"
) -> None:
    """Exit 2 with one line on an empty or blank user id, which no event has (docs/events.md):
    the commands naming a user (`query profile`, `timeline`, `links`, `forget`) check it first.
    `kind` names it in the line (`anonymous id` for `links anonymous:ID`, `group id` for
    `query group`)."""
    if not user.strip():
        article = "an" if kind == "anonymous id" else "a"
        fail(f"{kind} {user!r}: expected {article} {kind} that is not empty or blank", 2)


def check_actor(who: str) -> None:
    """`check_user_id` of a user id, or of the anonymous id in `anonymous:ID` (the commands
    that take either: `query links`, `forget`)."""
    if who.startswith(ANONYMOUS_PREFIX):
        check_user_id(who.removeprefix(ANONYMOUS_PREFIX), "anonymous id")
    else:
        check_user_id(who)


def load_config() -> Settings:
    """The settings from the environment and `.env`; a wrong setting exits 2 with one line, a
    `BA_` name no setting reads (a misspelt one, say) is a warning line on stderr, and so is
    each `.env` line that is no `NAME=value` (once, naming the file)."""
    logging.getLogger("dotenv.main").setLevel(logging.ERROR)  # its own warnings name no file
    with user_errors():
        settings = load_settings()
    for line in unreadable_env_lines():
        err_console.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" {Path('.env').resolve()} line {line} is not NAME=value: ignored",
            ),
            soft_wrap=True,
        )
    for name in unknown_names(os.environ):
        err_console.print(
            Text.assemble(("warning:", "yellow"), f" {name} is not a setting: ignored"),
            soft_wrap=True,
        )
    return settings


def data_location(config: Settings) -> str:
    """Where the commands' data lives: the local data folder, or the Firestore database."""
    if config.backend == "local":
        return str(config.data_dir)
    return f"Firestore database {config.firestore_database} of project {config.project}"


def open_store(
    config: Settings, *, beside_broker: bool = False, for_writing: bool = False
) -> Store:
    """The configured store, for a command that reads it. A local data folder that does not
    exist is not created (a read in the wrong folder would otherwise answer "nothing" from a
    new, empty store): it exits 1 naming the folder; with `beside_broker`, a store is created
    beside a local broker no worker has taken from yet (`forget` records its tombstone there).
    A local store this user may not write, or does not own, is read apart (creating nothing
    beside it: `sqlite_util.reads_apart`) unless the command writes it too (`for_writing`: a
    file it may not write is then refused before anything is read, `check_local_store`). A
    configuration error exits 2, an unreachable store exits 1."""
    return open_reader(config, beside_broker=beside_broker, for_writing=for_writing)[1]


def require_data(config: Settings, *, beside_broker: bool = False) -> None:
    """Exit 1 naming the local data folder when no store was ever created there (a command
    that reads would otherwise create one and answer from a new, empty store): the folder is
    missing or is a file, or holds no `store.db` (nor the marker of one that existed) and,
    with `beside_broker`, no broker either."""
    if config.backend != "local":
        return
    with user_errors():  # a folder that cannot be read: one line
        problem = missing_store(config, beside_broker=beside_broker)
    if problem:
        fail(problem)


def missing_store(config: Settings, *, beside_broker: bool = False) -> str | None:
    """Why the local data folder holds no store to read, in one line; None when it holds one
    (or, with `beside_broker`, a broker). Raises OSError when the folder cannot be read."""
    folder, path = config.data_dir, local_store_path(config)
    if folder.exists() and not folder.is_dir():
        return f"BA_DATA_DIR {folder} is a file, not a folder: point BA_DATA_DIR at your data"
    if problem := not_a_file(path):
        return problem
    if local_store_written(config):
        return None
    if problem := dangling_link(path):
        return problem
    if local_broker_path(config).exists():
        if beside_broker:
            return None
        return (
            f"no store at {folder} yet: no worker has run there (start "
            "`behavioral-analytics worker`, or `init` creates an empty store)"
        )
    if problem := dangling_link(local_broker_path(config)):
        return problem
    return (
        f"no data at {folder}: nothing was written there yet (run "
        "`behavioral-analytics init` there, or point BA_DATA_DIR at your data)"
    )


def open_reader(
    config: Settings, *, beside_broker: bool = False, for_writing: bool = False
) -> tuple[Settings, Store]:
    """`open_store`, with the settings the store counts by (the time zone and funnels it
    recorded, where the environment leaves them unset): periods are read in that zone. A
    funnel or breakdown dimension the environment adds is not recorded (a line says so): the
    workers already running would fail every commit until restarted. `beside_broker` and
    `for_writing`: as `open_store` says."""
    require_data(config, beside_broker=beside_broker)
    with user_errors():
        if for_writing:
            check_local_store(config, for_writing=True)
        return open_configured(config, record=False, only_reads=not for_writing)


@contextmanager
def cursor_errors(cursor: str | None) -> Iterator[None]:
    """A cursor not handed out for the listing (`listing_cursors.CursorMismatch`) or that the
    store cannot read is a usage error: one line naming --cursor, exit 2."""
    try:
        yield
    except CursorMismatch as exc:
        fail(f"invalid --cursor {cursor!r}: {exc}", 2)
    except InvalidCursor:
        fail(f"invalid --cursor {cursor!r}: pass a previous page's next_cursor as it is", 2)


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


def open_for_periods(
    config: Settings, start: str | None, end: str | None, granularity: Granularity
) -> tuple[Settings, Store, str | None, str | None]:
    """`open_reader`, and `--from`/`--to` as labels in the zone the store counts by (the one
    it recorded where `BA_TIMEZONE` is unset: `2026-11-01-01b` names a period in New York,
    none in UTC). A bound that names no period is refused (exit 2), before any store is
    opened where there is no local store to record a zone."""
    try:
        resolve_range(start, end, granularity, Periods(config.timezone))
    except PeriodError:
        with user_errors():
            absent = config.backend == "local" and missing_store(config) is not None
        if absent:
            period_range(start, end, granularity, config.timezone)
    config, store = open_reader(config)
    first, last = period_range(start, end, granularity, config.timezone)
    return config, store, first, last


PROGRESS_AFTER_S = 5.0  # a command this long says what it is doing, on stderr


def progress_lines(
    command: str, clock: Callable[[], float] = time.monotonic
) -> Callable[[str, bool], None]:
    """A long `command`'s progress (`verification.Progress`: a line, and whether it starts a
    step) as lines on stderr, `{command}: {line} ({seconds} s)`: none in its first
    `PROGRESS_AFTER_S` seconds (by `clock`, in seconds), then each line that starts a step,
    and a count within a step when the last line printed is `PROGRESS_AFTER_S` seconds old."""
    started = clock()
    last = started

    def report(line: str, step: bool) -> None:
        nonlocal last
        now = clock()
        if now - started < PROGRESS_AFTER_S or (not step and now - last < PROGRESS_AFTER_S):
            return
        last = now
        err_console.print(
            f"{command}: {line} ({now - started:.0f} s)", soft_wrap=True, highlight=False
        )

    return report


def plural(count: int, noun: str) -> str:
    """`1 message`, `2 messages`: a count with its noun in the right number."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_address(host: str, port: int) -> None:
    """Exit 1 with one line when `host:port` cannot be listened on (another `up` or `api`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn does: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(
                    f"{host}:{port} is already in use (another `up` or `api`?): stop it, or "
                    "choose another port with --port"
                )
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def confirm_or_stop(question: str) -> None:
    """Ask `question` on stderr, stdout left to a `--json` document (a prompt's own `input()`
    would write there); unless the answer is y or yes, exit 1 with `nothing was changed`, and
    where no answer came (input closed, Ctrl-C) say that `--yes` goes ahead without asking.
    Raises typer.Exit."""
    err_console.print(f"{question} [y/N]: ", end="", highlight=False, soft_wrap=True)
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""  # None: stdin closed
    except (KeyboardInterrupt, OSError, ValueError):
        answer = ""
    if not answer:
        err_console.print()  # end the question's line
        fail("nothing was changed: no answer was given (--yes goes ahead without asking)", 1)
    if answer.strip().lower() not in ("y", "yes"):
        fail("nothing was changed", 1)


def require_collector(url: str, timeout_s: float = 3.0, code: int = 1) -> None:
    """Exit with `code` and one line when nothing listens at the collector `url` (before a run
    that would otherwise wait out its retries and end on a bare "Connection refused"): 1, as
    for any unreachable service, but `loadtest` gives 2, its code for a test that could not
    run (docs/loadtest.md), apart from 1 for events missing or counted twice."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # `:99999`, `:http`
        fail(f"--url {url!r}: {exc}", 2)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"--url {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]", 2)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout_s):
            pass
    except OSError as exc:
        fail(
            f"no collector at {url} ({exc.strerror or exc}): start one with "
            "`behavioral-analytics api` (or `up`), or give its address with --url",
            code,
        )
