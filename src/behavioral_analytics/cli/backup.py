"""`backup`: a copy of the local data folder that can be restored, taken while the workers and
the API run.

Each file is copied by SQLite's online backup (`sqlite_backup.backup_file`): as it stood at one
moment, whole transactions only, the write-ahead log's included (copying the files with `cp`
while a worker writes can give a copy SQLite calls damaged). The broker's file is copied
before the store's: a message acked in between is then in both copies (its event in the
store's, the message still unacked in the broker's), and after a restore it is delivered again
and dropped as a duplicate by its key; the other order would lose it from both.

A restore replaces the whole data folder, never the files alone: a write-ahead log left beside
a restored file would be applied to it and damage it. It brings the counts back to the
backup's moment: events the workers counted after it are not in it (their messages were
acked). On Google Cloud the data lives in Firestore, whose backups the deployment schedules
(docs/gcp.md)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import typer

from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import console, load_config, missing_store
from behavioral_analytics.sqlite_backup import CopyError, backup_file
from behavioral_analytics.sqlite_util import access_problem
from behavioral_analytics.wiring import check_local_store

__all__ = ["backup"]

# The local data, in the order they are copied (see the module's docstring).
_FILES = ("broker.db", "store.db")
_MARKER = "store.db.created"


def backup(
    target: Path = typer.Argument(
        ...,
        help="A new or empty folder, outside the data folder, to write the copies into "
        "(created if missing).",
    ),
) -> None:
    """Copy the local store and broker into TARGET while they run (SQLite's online backup).
    To restore, with nothing running: move the whole BA_DATA_DIR folder aside and put TARGET
    in its place (never the files alone: a write-ahead log left beside them would damage
    them)."""
    config = load_config()
    if config.backend != "local":
        fail(
            "backup copies the local data folder; on Google Cloud the data is in Firestore, "
            "whose scheduled backups keep it (docs/gcp.md)",
            2,
        )
    with user_errors():
        # What every other command refuses, a backup refuses too: a copy of a damaged or lost
        # store would restore as a healthy one.
        if nothing := missing_store(config, beside_broker=True):
            fail(nothing)
        check_local_store(config)
    source = config.data_dir.resolve()
    present = [name for name in _FILES if (source / name).is_file()]
    target = target.resolve()
    if target == source or source in target.parents:
        fail(f"{target} is inside the data folder {source}: name a folder outside it", 2)
    if target.exists() and not target.is_dir():
        fail(f"{target} is a file: name a new folder for the copy", 2)
    if target.exists() and any(target.iterdir()):
        fail(f"{target} is not an empty folder: name a new one, so no copy is overwritten", 2)
    created = not target.exists()
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the data folder
    except OSError as exc:
        fail(f"cannot make the folder {target}: {exc.strerror or exc}")
    total = 0
    for name in present:
        try:
            size = backup_file(source / name, target / name)
        except CopyError as exc:
            _remove_copies(target, created)
            problem = access_problem(exc.target, exc.cause) or exc.cause
            fail(f"writing the copy {exc.target} failed: {problem}; nothing was kept there")
        except sqlite3.Error as exc:
            _remove_copies(target, created)
            problem = access_problem(source / name, exc) or exc
            fail(f"reading {source / name} for the backup failed: {problem}")
        total += size
        console.print(f"{name}: {size:,} bytes", highlight=False)
    if (source / _MARKER).is_file():
        shutil.copy2(source / _MARKER, target / _MARKER)
    console.print(
        f"backed up {source} to {target} ({total:,} bytes). To restore, with the workers and "
        f"the API stopped: move {source} aside (the whole folder), copy {target} in its place, "
        "then run `behavioral-analytics doctor` and `behavioral-analytics verify`",
        highlight=False,
        soft_wrap=True,
    )


def _remove_copies(target: Path, created: bool) -> None:
    """Remove what a failed backup wrote into `target` (and the folder, if it made it), so
    that running it again is not refused for a folder holding a partial copy."""
    for name in (*_FILES, _MARKER):
        for path in (target / name, target / f"{name}-journal"):
            with contextlib.suppress(OSError):
                path.unlink()
    if created:
        with contextlib.suppress(OSError):
            target.rmdir()
