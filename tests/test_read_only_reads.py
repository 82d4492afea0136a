"""The commands that only read answer from a local store this user may not write: another
user's files (a worker run as a service user), a read-only mount. SQLite cannot open a
file in WAL mode where it may not put the `-wal` and `-shm` files beside it, unless they are
there already (a worker has the store open, or crashed), so these commands open the store for
reading only (`sqlite_util.connect_reading`): through a worker's log when there is one, as the
file stands when there is none. Commands that write still refuse in one line.

Each test sees the data folder through a read-only bind mount (root only; skipped loudly
elsewhere), while the folder itself stays writable for the worker or the test's own writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli, wait_until
from tests.mounts import read_only_view

AS_IT_STANDS = "is read as the file stands"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A store holding 300 generated messages' events and dead letters; the folder readable
    by others, as a service's data folder is."""
    folder = tmp_path / "data"
    env = {"BA_DATA_DIR": str(folder)}
    cli("init", env=env)
    cli("generate", "--events", "300", "--via", "broker", "--seed", "4", env=env)
    cli("worker", "--until-idle", env=env)
    folder.chmod(0o755)
    return folder


@pytest.fixture
def view(data_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """`data_dir` seen through a read-only bind mount."""
    with read_only_view(data_dir, tmp_path) as target:
        yield target


def _run(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return cli(*args, env={"BA_DATA_DIR": str(folder), "BA_METRICS_EXPORTER": "none"}, check=check)


def _series(folder: Path) -> object:
    return json.loads(_run(folder, "query", "series", "-g", "day", "--json").stdout)


def _dead_letters(folder: Path) -> int:
    return int(json.loads(_run(folder, "dlq", "list", "--json").stdout)["total"])


def test_reading_commands_answer_from_a_folder_this_user_may_not_write(
    data_dir: Path, view: Path
) -> None:
    verified = _run(view, "verify", "--json")
    report = json.loads(verified.stdout)
    assert report["ok"] and report["raw_events"] > 250
    said = verified.stderr.decode()
    assert f"{view / 'store.db'} {AS_IT_STANDS}" in said
    assert "a worker that starts meanwhile" in said
    assert _series(view) == _series(data_dir)
    assert _dead_letters(view) == _dead_letters(data_dir) > 0
    _run(view, "config", "show")
    assert sorted(p.name for p in view.iterdir()) == ["broker.db", "store.db", "store.db.created"]


def test_commands_that_write_still_refuse_in_one_line(view: Path) -> None:
    for args in (
        ("verify", "--repair"),
        ("dlq", "purge"),
        ("dlq", "replay", "--all"),
        ("forget", "user_1", "--yes"),
    ):
        done = _run(view, *args, check=False)
        said = done.stderr.decode()
        assert done.returncode == 1, (args, said)
        assert f"cannot open {view / 'store.db'} to write" in said, (args, said)
        assert said.count("error:") == 1 and "Traceback" not in said, (args, said)


def test_a_running_worker_is_read_through_its_log(data_dir: Path, view: Path) -> None:
    """The worker (this user, on the writable folder) keeps committing; the read-only view
    reads its write-ahead log through the `-shm` file, sees each commit, and says nothing
    about reading as the file stands."""
    env = {**os.environ, "BA_DATA_DIR": str(data_dir), "BA_METRICS_EXPORTER": "none"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (data_dir / "store.db-shm").exists(), what="the worker's log")
        before = json.loads(_run(view, "verify", "--json").stdout)["raw_events"]
        cli("generate", "--events", "200", "--via", "broker", "--seed", "5", env=env)

        def grown() -> bool:
            done = _run(view, "verify", "--json")
            assert AS_IT_STANDS not in done.stderr.decode()
            return bool(json.loads(done.stdout)["raw_events"] > before)

        wait_until(grown, timeout=60, what="the view to see the worker's new commits")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_a_log_a_crashed_writer_left_is_read_not_the_file_alone(data_dir: Path, view: Path) -> None:
    """A writer that died holding a change in the log only: reading the file as it stands
    would miss it, so the log is read (the `-shm` beside it is used read-only)."""
    before = _dead_letters(view)
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "db.execute('PRAGMA wal_autocheckpoint = 0'); "
            "db.execute('DELETE FROM dead_letters WHERE rowid = "
            "(SELECT min(rowid) FROM dead_letters)'); os._exit(0)",
            str(data_dir / "store.db"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == 0, crashed.stderr
    assert (data_dir / "store.db-wal").stat().st_size > 0
    done = _run(view, "dlq", "list", "--json")
    assert AS_IT_STANDS not in done.stderr.decode()
    assert json.loads(done.stdout)["total"] == before - 1


def test_an_earlier_layout_is_refused_naming_who_may_upgrade_it(data_dir: Path, view: Path) -> None:
    with sqlite3.connect(data_dir / "store.db") as db:
        db.execute("PRAGMA user_version = 0")
    db.close()
    done = _run(view, "verify", check=False)
    said = done.stderr.decode()
    assert done.returncode == 1
    assert "has an earlier release's tables (layout 0" in said
    assert f"as a user who may write {view}" in said
    assert "damaged" not in said and "Traceback" not in said
