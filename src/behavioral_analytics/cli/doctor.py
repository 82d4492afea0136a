"""`doctor`: check the data a deployment depends on, one line per part, and exit 1 when any
part is damaged or unreachable. On the embedded default it reads every page of the store's
and the broker's files (SQLite's `quick_check`: time in proportion to the files), a store of an
earlier release's layout without opening it as a store, which would upgrade it (the
configuration it recorded is compared with the environment's all the same: exit 2 for a
difference only `config apply` may make, as for a store of this release); on Google
Cloud it asks Firestore and Pub/Sub to answer, each within bounded time (the Firestore store
gives up after `OPEN_DEADLINE_S`, about 15 s, naming the database and where it is).

A part that fails for a reason no port names (a Google client that finds no credentials, say)
is reported like the others, with the error's type, rather than as a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.text import Text

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.cli.errors import err_console, fail
from behavioral_analytics.cli.shared import console, data_location, load_config, require_data
from behavioral_analytics.settings import ConfigError, Settings
from behavioral_analytics.sqlite_util import may_write, not_writable_here, reads_apart
from behavioral_analytics.store import StoreError
from behavioral_analytics.wiring import (
    build_broker,
    check_file_apart,
    earlier_local_store,
    local_broker_path,
    local_store_path,
    open_configured,
)

__all__ = ["doctor"]

_PART_ERRORS = (StoreError, BrokerError, OSError)
_READ_BACK = "every page of its file read back"


def doctor() -> None:
    """Check the store and the broker: every page of the local files, or that Google Cloud
    answers. Exit 1 naming each damaged part and what to do."""
    config = load_config()
    if config.backend == "local":
        require_data(config)  # a check must not create what it checks
    problems = 0
    for name, check in (("store", _check_store), ("broker", _check_broker)):
        try:
            what = check(config)
        except ConfigError as exc:
            fail(str(exc), 2)
        except _PART_ERRORS as exc:
            problems += 1
            _report(name, str(exc))
        except Exception as exc:  # doctor names every broken part: never a traceback
            problems += 1
            _report(name, f"{type(exc).__name__}: {exc}")
        else:
            console.print(Text.assemble((f"✓ {name}", "green"), f": {what}"), soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"healthy: {data_location(config)}", highlight=False)


def _report(name: str, problem: str) -> None:
    line = " ".join(problem.split()) or "failed without a message"
    err_console.print(Text.assemble((f"✗ {name}", "red"), f": {line}"), soft_wrap=True)


def _checked(port: object, reach: Callable[[], None]) -> str:
    check_files = getattr(port, "check_files", None)
    if check_files is not None:
        check_files()
        return _READ_BACK
    reach()
    return "answers"


def _check_store(config: Settings) -> str:
    earlier = earlier_local_store(config)
    if earlier is not None:
        found, current = earlier
        return (
            f"every page of its file read back; its tables are in an earlier release's layout "
            f"({found}, this release's is {current}): left as they are, this release's first "
            "worker or other command brings them to its layout, one way (`behavioral-analytics "
            'backup` first keeps a copy an earlier release reads; README, "Upgrading a store")'
        )
    # As a reader: a check records nothing (a store written before configurations were
    # recorded would otherwise take this shell's time zone and funnels as its own), and leaves
    # nothing beside another user's store (`sqlite_util.reads_apart`).
    store = open_configured(config, record=False, only_reads=True)[1]
    try:
        checked = _checked(store, store.ping)
    finally:
        store.close()
    if config.backend == "local":
        _writable(local_store_path(config), checked)
    return checked


def _writable(path: Path, checked: str) -> None:
    """Raises StoreError when this process may not write the local file at `path`, whose pages
    `checked` says are whole: a worker run as this user would fail at its first write (SQLite
    opens such a file read-only without a word)."""
    problem = not_writable_here(path)
    if problem is None and not may_write(path):
        problem = (
            f"cannot write in {path.parent} (its mode, its owner or a read-only mount), where "
            f"SQLite puts {path.name}-wal and {path.name}-shm: run the workers as the folder's "
            "owner, or mount it read-write; this error does not mean the file is corrupt: keep it"
        )
    if problem is not None:
        raise StoreError(f"{checked}, but {problem}")


def _check_broker(config: Settings) -> str:
    path = local_broker_path(config)
    if config.backend == "local" and not path.exists():
        # A check makes nothing: the first `init`, `publish` or worker creates the file.
        return "no file yet (the first `init`, `publish` or worker creates it)"
    if config.backend == "local" and path.is_file() and path.stat().st_size == 0:
        return "an empty file (0 bytes): the first `init`, `publish` or worker makes it a broker"
    if config.backend == "local" and reads_apart(path):
        check_file_apart(path)
        _writable(path, _READ_BACK)
        return _READ_BACK
    broker = build_broker(config)
    try:
        return _checked(broker, broker.ping)
    finally:
        broker.close()
