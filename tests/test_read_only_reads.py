"""The commands that only read answer from a local store this user may not write: another
user's files (a worker run as a service user), a read-only mount. SQLite cannot open a
file in WAL mode where it may not put the `-wal` and `-shm` files beside it, unless they are
there already (a worker has the store open, or crashed), so these commands open the store for
reading only (`sqlite_util.connect_reading`): through a worker's log when there is one, as the
file stands when there is none. Commands that write still refuse in one line.

Each test sees the data folder through a read-only bind mount, or gives its files to another
user (root only: skipped loudly elsewhere), while the folder itself stays writable for the
worker or the test's own writer."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from behavioral_analytics import sqlite_backup, sqlite_util
from tests.conftest import cli, wait_until
from tests.mounts import read_only_bind, read_only_view

AS_IT_STANDS = "read as the file stands (no worker has it open)"


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
    assert "a worker starting meanwhile can make this read fail" in said
    assert _series(view) == _series(data_dir)
    assert _dead_letters(view) == _dead_letters(data_dir) > 0
    _run(view, "config", "show")
    assert sorted(p.name for p in view.iterdir()) == ["broker.db", "store.db", "store.db.created"]


WRITING = (
    ("verify", "--repair"),
    ("dlq", "purge"),
    ("dlq", "replay", "--all"),
    ("forget", "user_1"),  # refused before it asks
    ("config", "apply", "--yes"),
)


def _refused_before_reading(view: Path) -> None:
    for args in WRITING:
        done = _run(view, *args, check=False)
        said = done.stderr.decode()
        assert done.returncode == 1, (args, said)
        assert f"cannot write {view / 'store.db'}: the file is read-only" in said, (args, said)
        assert said.count("error:") == 1 and "Traceback" not in said, (args, said)
        assert "Forget" not in done.stdout.decode() + said


def test_commands_that_write_refuse_in_one_line_before_reading(view: Path) -> None:
    _refused_before_reading(view)


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
        _refused_before_reading(view)  # as before any recount: SQLite would let them start
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_a_log_a_crashed_writer_left_is_read_not_the_file_alone(data_dir: Path, view: Path) -> None:
    """A writer that died holding a change in the log only: reading the file as it stands
    would miss it, so the log is read (the `-shm` beside it is used read-only)."""
    before = _dead_letters(view)
    _crash_with_a_change_in_the_log(data_dir)
    done = _run(view, "dlq", "list", "--json")
    assert AS_IT_STANDS not in done.stderr.decode()
    assert json.loads(done.stdout)["total"] == before - 1


def _crash_with_a_change_in_the_log(data_dir: Path) -> None:
    """A writer deletes a dead letter and dies before any checkpoint: the change is in the
    log alone, beside its `-shm` file."""
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


def test_a_log_without_its_index_is_named_not_called_damaged(data_dir: Path, view: Path) -> None:
    """A copy of a crashed store without its `-shm` file: only a process that may write the
    folder can rebuild it; reading the file alone would miss what the log holds."""
    _crash_with_a_change_in_the_log(data_dir)
    (data_dir / "store.db-shm").unlink()
    done = _run(view, "verify", check=False)
    said = done.stderr.decode()
    assert done.returncode == 1
    assert f"{view / 'store.db'} has a write-ahead log (store.db-wal, " in said
    assert "run `behavioral-analytics doctor` there once as the user the files belong to" in said
    assert "damaged" not in said.replace("not damaged", "") and "Traceback" not in said


def test_root_reading_a_service_users_store_leaves_its_files_the_owners(
    data_dir: Path, tmp_path: Path
) -> None:
    """Root (a `sudo`) in a service user's folder opens the store as usual: SQLite gives the
    `-wal` and `-shm` files root opens to the store's owner (a read-only connection, as
    `backup`'s, leaves them, empty), so the owner's worker can go on."""
    _give_to_nobody(data_dir)
    done = _run(data_dir, "verify", "--json")
    assert json.loads(done.stdout)["ok"]
    assert AS_IT_STANDS not in done.stderr.decode()
    _run(data_dir, "query", "series", "-g", "day")
    assert "healthy" in _run(data_dir, "doctor").stdout.decode()
    _run(data_dir, "backup", str(tmp_path / "copy"))
    assert {p.stat().st_uid for p in data_dir.iterdir()} == {65534}
    _run(tmp_path / "copy", "verify")


def _give_to_nobody(folder: Path) -> None:
    """The folder's files as a service user's (`nobody`), the folder still root's to write."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: giving files to another user needs root")
    for path in folder.iterdir():
        os.chown(path, 65534, 65534)


def test_a_copy_read_as_it_stands_is_taken_again_when_a_writer_opens_meanwhile(
    data_dir: Path, view: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No writer's log to read through: the file is copied as it stands, and a writer that
    opens it during the copy (here, between the copy and its check) makes it copy again,
    through that writer's log."""
    copies = []
    writers = []

    def copy_while_a_writer_opens(source: Path, target: Path) -> None:
        copies.append(sqlite_util.reads_apart(source))
        copy(source, target)
        if not writers:
            writer = sqlite3.connect(data_dir / "store.db", isolation_level=None)
            writer.execute("DELETE FROM dead_letters")
            writers.append(writer)  # open: its log and `-shm` stay beside the file

    copy = sqlite_backup._copy
    monkeypatch.setattr(sqlite_backup, "_copy", copy_while_a_writer_opens)
    try:
        sqlite_backup.backup_file(view / "store.db", tmp_path / "copy.db")
    finally:
        writers[0].close()
    assert copies == [True, True]
    with sqlite3.connect(tmp_path / "copy.db") as db:
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    db.close()


def test_an_earlier_layout_is_refused_naming_who_may_upgrade_it(data_dir: Path, view: Path) -> None:
    with sqlite3.connect(data_dir / "store.db") as db:
        db.execute("PRAGMA user_version = 0")
    db.close()
    done = _run(view, "verify", check=False)
    said = done.stderr.decode()
    assert done.returncode == 1
    assert "has an earlier release's tables (layout 0" in said
    assert f"once as the user {view} is for" in said
    assert "damaged" not in said and "Traceback" not in said


def test_log_files_an_open_made_beside_another_users_store_are_removed_again(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer's close deletes its `-wal` and `-shm` between the look and the open: SQLite
    then makes them anew, this user's, and the owner's worker could write nothing. (Root's
    SQLite gives the files it opens to the store's owner, so root cannot make that state: the
    test is nobody, for `connect_reading`, which sees the pair as made by its open.)"""
    _give_to_nobody(data_dir)
    log_file, index = data_dir / "store.db-wal", data_dir / "store.db-shm"
    log_file.touch()
    index.touch()
    assert sqlite_util._made_here(data_dir / "store.db")  # root's, beside nobody's store
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    assert not sqlite_util._made_here(data_dir / "store.db")  # the owner's own
    monkeypatch.setattr(sqlite_util, "_made_here", lambda path: True)
    db = sqlite_util.connect_reading(data_dir / "store.db")
    try:
        assert isinstance(db, sqlite_util.AsItStands)
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] > 250
    finally:
        db.close()
    assert not log_file.exists() and not index.exists()


def test_a_log_with_content_is_never_removed_whoever_owns_it(data_dir: Path) -> None:
    """A crashed writer's log, its files another user's than the store's (the store given to
    a service user after the crash): it holds commits, so it is read, and kept."""
    before = _dead_letters(data_dir)
    _crash_with_a_change_in_the_log(data_dir)
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: giving files to another user needs root")
    os.chown(data_dir / "store.db", 65534, 65534)
    assert not sqlite_util._made_here(data_dir / "store.db")
    db = sqlite_util.connect_reading(data_dir / "store.db")
    try:
        assert not isinstance(db, sqlite_util.AsItStands)
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == before - 1
    finally:
        db.close()
    assert (data_dir / "store.db-wal").stat().st_size > 0


def test_another_users_log_files_are_named_to_the_owner(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the owner's worker says once another user's command has left its `-shm` beside
    the store (this user may write the store, not that file): who to ask, what to remove."""
    _crash_with_a_change_in_the_log(data_dir)
    index = data_dir / "store.db-shm"
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != index)
    readonly = sqlite3.connect(f"file:{data_dir / 'store.db'}?mode=ro", uri=True)
    try:
        readonly.execute("DELETE FROM dead_letters")
    except sqlite3.OperationalError as exc:
        said = sqlite_util.access_problem(data_dir / "store.db", exc)
    finally:
        readonly.close()
    assert said is not None
    assert said.startswith(f"cannot write store.db-shm beside {data_dir / 'store.db'}: it belongs")
    assert "with no process using it, remove store.db-shm" in said
    assert "keep it" in said


def test_a_broker_file_this_user_may_not_write_is_refused_before_it_is_opened(
    data_dir: Path,
) -> None:
    """Opened for writing, SQLite would open it read-only without a word, and leave `-wal` and
    `-shm` files of this user's beside it (which, in a shared folder, the owner's worker then
    cannot write): every command that writes the broker refuses it first."""
    broker = data_dir / "broker.db"
    with read_only_bind(broker, broker):
        for args in (("generate", "--events", "5", "--via", "broker"), ("worker", "--until-idle")):
            done = _run(data_dir, *args, check=False)
            said = done.stderr.decode()
            assert done.returncode == 1, (args, said)
            assert f"cannot write {broker}: the file is read-only" in said, (args, said)
            assert "Traceback" not in said


def test_the_api_refuses_a_store_it_may_not_write_before_it_serves(data_dir: Path) -> None:
    """The API writes the store (the collector's dead letters): as a user who may write the
    broker but not the store it served, leaving that user's `-wal` and `-shm` beside the
    store, which the owner's worker then could not write. It refuses first, in one line."""
    store = data_dir / "store.db"
    env = {**os.environ, "BA_DATA_DIR": str(data_dir), "BA_METRICS_EXPORTER": "none"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    with read_only_bind(store, store):
        api = subprocess.Popen(
            [sys.executable, "-m", "behavioral_analytics.cli", "api", "--port", port],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = api.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            api.kill()
            api.communicate()
            raise AssertionError("the API served a store it may not write") from None
    said = err.decode()
    assert api.returncode == 1, said
    assert said == (
        f"error: cannot write {store}: the file is read-only for this user or on a read-only "
        "mount (`chmod u+w store.db`, or mount it read-write); this error does not mean the "
        "file is corrupt: keep it\n"
    )
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "broker.db",
        "store.db",
        "store.db.created",
    ]


def test_a_log_file_this_user_may_not_write_is_named_by_the_worker_and_doctor(
    data_dir: Path,
) -> None:
    """Another user's command left its `-shm` beside the store (here: a read-only bind of the
    file, which this user may not write either): a worker would retry every commit for ever,
    and `doctor` called the store healthy. Both name the file and what to remove."""
    index = data_dir / "store.db-shm"
    index.touch()
    with read_only_bind(index, index):
        line = f"cannot write store.db-shm beside {data_dir / 'store.db'}: it belongs to user"
        worker = _run(data_dir, "worker", "--until-idle", check=False)
        assert worker.returncode == 1
        assert line in worker.stderr.decode() and "with no process using it, remove" in (
            worker.stderr.decode()
        )
        doctor = _run(data_dir, "doctor", check=False)
        assert doctor.returncode == 1
        assert line in doctor.stderr.decode(), doctor.stderr.decode()
        assert "healthy" not in doctor.stdout.decode()
