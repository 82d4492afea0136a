"""A data directory that cannot be written (a full disk, a read-only folder) is named as such,
never as a damaged file: the advice for damage (move the file aside, start empty) would throw
a healthy store and its unprocessed messages away.

The full disk is the kernel's: a file-size limit (`RLIMIT_FSIZE`) on the command's process
makes every write past it fail as a full disk does. The read-only folder is a read-only bind
mount (root only; skipped loudly elsewhere)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from io import StringIO
from pathlib import Path

import pytest
import typer
from rich.console import Console

from behavioral_analytics.cli import errors
from behavioral_analytics.cli.errors import user_errors
from behavioral_analytics.sqlite_util import access_problem
from tests import mounts
from tests.mounts import read_only_bind

COMMAND_TIMEOUT_S = 120


# Sets the file-size limit and ignores SIGXFSZ (a write past the limit then fails with EFBIG,
# as on a full disk), then becomes the command: no `preexec_fn` in the test process, whose
# gRPC threads (from the emulator tests) make a fork that runs Python code abort.
_LIMITED = (
    "import os, resource, signal, sys; n = int(sys.argv[1]); "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'behavioral_analytics.cli', *sys.argv[2:]])"
)


def limited_command(args: Sequence[str], max_file_bytes: int | None) -> list[str]:
    """The command line running the CLI with `args`, under a file-size limit when given."""
    if max_file_bytes is None:
        return [sys.executable, "-m", "behavioral_analytics.cli", *args]
    return [sys.executable, "-c", _LIMITED, str(max_file_bytes), *args]


def _cli(
    data_dir: Path, *args: str, max_file_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        limited_command(args, max_file_bytes),
        env={**os.environ, "BA_DATA_DIR": str(data_dir), "BA_METRICS_EXPORTER": "none"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with a store and a broker holding 300 unprocessed messages."""
    folder = tmp_path / "data"
    for args in (("init",), ("generate", "--events", "300", "--via", "broker", "--seed", "4")):
        done = _cli(folder, *args)
        assert done.returncode == 0, done.stderr
    return folder


def test_doctor_on_a_full_disk_says_so_and_never_damaged(data_dir: Path) -> None:
    done = _cli(data_dir, "doctor", max_file_bytes=0)
    assert done.returncode == 1
    assert "damaged" not in done.stdout + done.stderr
    for name in ("store.db", "broker.db"):
        assert f"reading or writing {data_dir / name} failed" in done.stderr
    assert "the disk may be full or failing" in done.stderr
    assert "keep it" in done.stderr


@pytest.mark.slow
def test_nothing_is_lost_once_the_disk_has_room_again(data_dir: Path) -> None:
    publish = _cli(
        data_dir, "generate", "--events", "3000", "--via", "broker", max_file_bytes=65536
    )
    assert publish.returncode == 1
    assert "Traceback" not in publish.stderr
    assert "publish to the local broker failed: reading or writing" in publish.stderr
    worker = _cli(data_dir, "worker", "--until-idle", max_file_bytes=0)
    assert worker.returncode == 1
    assert "damaged" not in worker.stderr and "the disk may be full" in worker.stderr
    worker = _cli(data_dir, "worker", "--until-idle")
    assert worker.returncode == 0, worker.stderr
    verify = _cli(data_dir, "verify", "--json")
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["raw_events"] > 0


@pytest.fixture
def read_only_view(data_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """`data_dir` seen through a read-only bind mount."""
    with mounts.read_only_view(data_dir, tmp_path) as view:
        yield view


def test_a_read_only_folder_is_named_read_only_never_damaged(read_only_view: Path) -> None:
    done = _cli(read_only_view, "worker", "--until-idle")
    assert done.returncode == 1
    assert "damaged" not in done.stdout + done.stderr
    assert f"cannot write {read_only_view / 'broker.db'}: the file is read-only" in done.stderr
    assert "mount it read-write" in done.stderr


def test_doctor_checks_every_page_of_a_read_only_folder_then_says_a_worker_cannot_write(
    read_only_view: Path,
) -> None:
    """A backup on read-only media, a disk remounted read-only: the pages are checked (nothing
    is written), and the verdict is still that a worker could not run there."""
    done = _cli(read_only_view, "doctor")
    assert done.returncode == 1
    said = done.stdout + done.stderr
    assert "damaged" not in said and "Traceback" not in said
    for name in ("store", "broker"):
        assert (
            f"✗ {name}: every page of its file read back, but cannot write "
            f"{read_only_view / (name + '.db')}: the file is read-only"
        ) in done.stderr, done.stderr
    assert sorted(p.name for p in read_only_view.iterdir()) == [
        "broker.db",
        "store.db",
        "store.db.created",
    ]


def test_a_backup_of_a_read_only_folder_is_taken_and_restores(
    read_only_view: Path, tmp_path: Path
) -> None:
    """A disk going bad is often remounted read-only, which is when a backup is taken."""
    copy = tmp_path / "copy"
    done = _cli(read_only_view, "backup", str(copy))
    assert done.returncode == 0, done.stderr
    for args in (("doctor",), ("worker", "--until-idle"), ("verify",)):
        assert _cli(copy, *args).returncode == 0, args


def _sqlite_error(tmp_path: Path, case: str) -> sqlite3.Error:
    """The error SQLite itself raises in `case`."""
    path = tmp_path / f"{case}.db"
    try:
        if case == "full":
            db = sqlite3.connect(path)
            db.execute("CREATE TABLE t (x BLOB)")
            db.execute("PRAGMA max_page_count = 3")
            db.execute("INSERT INTO t VALUES (zeroblob(100000))")
        elif case == "read-only":
            sqlite3.connect(path).execute("CREATE TABLE t (x)")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            db.execute("INSERT INTO t VALUES (1)")
        elif case == "cannot open":
            sqlite3.connect(tmp_path / "no-such-folder" / "x.db")
        elif case == "locked":
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            sqlite3.connect(path, timeout=0).execute("CREATE TABLE t (x)")
        elif case == "not a database":
            path.write_bytes(b"x" * 4096)
            sqlite3.connect(path).execute("SELECT * FROM sqlite_master").fetchall()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{case}: SQLite raised nothing")


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("full", "is full"),
        ("read-only", "to write"),
        ("cannot open", "to write"),
        ("locked", "another process holds its write lock"),
        ("not a database", None),
    ],
)
def test_access_problems_are_told_from_damage(tmp_path: Path, case: str, says: str | None) -> None:
    exc = _sqlite_error(tmp_path, case)
    problem = access_problem(tmp_path / "x.db", exc)
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem


@pytest.mark.slow
def test_a_publish_stopped_by_a_full_disk_says_how_to_go_on(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for folder in (whole, resumed):
        assert _cli(folder, "init").returncode == 0
    made = _cli(whole, "generate", "--events", "5000", "--via", "ndjson", "--seed", "2")
    source.write_text(made.stdout)
    assert _cli(whole, "publish", str(source)).returncode == 0
    stopped = _cli(resumed, "publish", str(source), "--batch-size", "500", max_file_bytes=400_000)
    assert stopped.returncode == 1
    hint = stopped.stderr.split("to go on from line ")[-1]
    first = int(hint.split(":")[0])
    assert f"lines 1-{first - 1} were published" in stopped.stderr
    assert f"tail -n +{first} {source} | behavioral-analytics publish -" in stopped.stderr
    rest = tmp_path / "rest.ndjson"
    rest.write_text("".join(source.read_text().splitlines(keepends=True)[first - 1 :]))
    assert _cli(resumed, "publish", str(rest)).returncode == 0
    counts = []
    for folder in (whole, resumed):
        assert _cli(folder, "worker", "--until-idle").returncode == 0
        report = json.loads(_cli(folder, "verify", "--json").stdout)
        assert report["ok"]
        with sqlite3.connect(folder / "store.db") as db:
            (dead,) = db.execute("SELECT count(*) FROM dead_letters").fetchone()
        counts.append((report["raw_events"], dead))
    assert counts[0] == counts[1]  # every line once: no event and no dead letter twice


@pytest.mark.parametrize(
    ("case", "says"),
    [
        # What `forget`, `dlq purge` and `dlq replay` said after their 30 s wait: "could not be
        # read … `doctor` checks every page", though nothing was damaged.
        (
            "locked",
            (
                "a file of the local data stayed locked (database is locked)",
                "another process holds its write lock",
            ),
        ),
        # A store that becomes read-only after a command's up-front check (a remount, a
        # `chmod` meanwhile): SQLite's refusal of the write, not advice about damage.
        (
            "read-only",
            (
                "the local data could not be written (attempt to write a readonly database)",
                "keep it",
            ),
        ),
    ],
)
def test_a_lock_or_a_refused_write_is_said_so_by_every_command_not_called_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, says: tuple[str, str]
) -> None:
    exc = _sqlite_error(tmp_path, case)
    said = StringIO()
    monkeypatch.setattr(errors, "err_console", Console(file=said, width=300))
    with pytest.raises(typer.Exit) as exited, user_errors():
        raise exc
    assert exited.value.exit_code == 1
    assert all(line in said.getvalue() for line in says), said.getvalue()
    assert "doctor checks every page" not in said.getvalue()


@pytest.fixture
def read_only_store(data_dir: Path) -> Iterator[Path]:
    """`data_dir` with its `store.db` alone mounted read-only (the folder and the broker stay
    writable): what `chmod 444 store.db` is to a user who is not root."""
    store = data_dir / "store.db"
    with read_only_bind(store, store):
        yield data_dir


def test_a_store_file_that_cannot_be_written_is_refused_before_a_worker_starts(
    read_only_store: Path,
) -> None:
    """SQLite opens such a file read-only without a word: a worker then retried its first
    commit for ever, and `init` and `doctor` called the store ready."""
    line = f"cannot write {read_only_store / 'store.db'}: the file is read-only"
    for args in (
        ("init",),
        ("worker", "--until-idle"),
        ("worker", "--workers", "2", "--until-idle"),
        ("doctor",),
    ):
        done = _cli(read_only_store, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert line in done.stdout + done.stderr, args
        assert "damaged" not in done.stdout + done.stderr
    done = _cli(read_only_store, "verify")
    assert done.returncode == 0, done.stderr  # a command that only reads still answers
    done = _cli(read_only_store, "forget", "nobody", "--yes")  # refused before it writes
    assert done.returncode == 1
    assert done.stderr.count("error:") == 1 and line in done.stderr, done.stderr
    assert "doctor checks every page" not in done.stderr
    done = _cli(read_only_store, "loadtest", "--events", "20", "--rate", "0")
    assert done.returncode == 2  # the test could not run
    assert done.stderr.count("error:") == 1 and line in done.stderr, done.stderr


@pytest.mark.parametrize("damage", ["emptied", "truncated", "another program's"])
def test_a_backup_of_a_read_only_folder_refuses_a_store_the_others_refuse(
    data_dir: Path, read_only_view: Path, tmp_path: Path, damage: str
) -> None:
    """The checks of the header, the size and the tables need no write: a damaged store in a
    read-only folder is not copied as if whole (nor is `cp -a` of it advised)."""
    store = data_dir / "store.db"  # the view shows the same file
    if damage == "emptied":
        store.write_bytes(b"")
    elif damage == "truncated":
        store.write_bytes(store.read_bytes()[:8192])
    else:
        store.unlink()
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
        db.close()
    done = _cli(read_only_view, "backup", str(tmp_path / "copy"))
    assert done.returncode == 1
    expected = {
        "emptied": "is empty (0 bytes), but a store existed there",
        "truncated": "is damaged (truncated: 2 pages of the",
        "another program's": "is a SQLite file but not a behavioral-analytics store",
    }[damage]
    assert expected in done.stderr
    assert "cp -a" not in done.stderr
    assert not (tmp_path / "copy").exists()
