"""The local data folder in shapes a user can leave it in: a folder where `store.db` or
`broker.db` belongs is named a folder in one line by every command, `init` in a folder that
exists but has no broker file says it created the topic, `worker --workers 2` refuses another
program's store once, before it starts a process, `loadtest` in a folder it refuses exits 2
(its code for a test that could not run), a link to a folder that is not there is named as
such by every command, `backup` refuses what every other command refuses
(a copy of a lost or damaged store would restore as a healthy one), and `doctor` leaves an
empty `broker.db` empty."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cli

WIDE = {"COLUMNS": "300"}


def _data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _refused_in_one_line(folder: Path, command: tuple[str, ...], message: str) -> None:
    """`command` exits 1 with `error: message` alone, and leaves only `store.db` in `folder`."""
    result = cli(*command, env=WIDE, input=b"", check=False)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert err == f"error: {message}\n"
    assert sorted(p.name for p in folder.iterdir()) == ["store.db"]


@pytest.mark.parametrize(
    "command",
    [("init",), ("worker", "--until-idle"), ("publish", "-"), ("doctor",), ("verify",)],
    ids=" ".join,
)
def test_a_folder_in_the_stores_place_is_named_a_folder(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    folder = _data(tmp_path)
    (folder / "store.db").mkdir()
    _refused_in_one_line(
        folder,
        command,
        f"{folder / 'store.db'} is a folder, not a SQLite file: move it aside, or point "
        "BA_DATA_DIR at your data",
    )


@pytest.mark.parametrize("name", ["store.db", "broker.db"])
@pytest.mark.parametrize(
    "command",
    [("init",), ("worker", "--until-idle"), ("publish", "-"), ("doctor",), ("query", "series")],
    ids=" ".join,
)
def test_a_link_to_a_folder_that_is_not_there_is_named_by_every_command(
    tmp_path: Path, command: tuple[str, ...], name: str
) -> None:
    # No marker: a link made by hand to a disk not mounted. Each said something else ("no data
    # there", "no worker has run there", "the folder must be writable"), none the link.
    folder = _data(tmp_path)
    target = tmp_path / "disk" / name
    (folder / name).symlink_to(target)
    result = cli(*command, env=WIDE, input=b"", check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"error: {folder / name} is a link to {target}, whose folder {target.parent} does not "
        "exist (a disk not mounted?): mount or restore it, or remove the link to start afresh "
        "here\n"
    )
    assert [p.name for p in folder.iterdir()] == [name]


def test_a_folder_in_the_brokers_place_is_named_a_folder(tmp_path: Path) -> None:
    folder = _data(tmp_path)
    (folder / "broker.db").mkdir()
    result = cli("init", env=WIDE, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert f"error: {folder / 'broker.db'} is a folder, not a SQLite file" in err
    assert "writable" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("empty_file", [None, "store.db", "broker.db"])
def test_init_says_created_for_the_topic_it_made_in_a_folder_that_existed(
    tmp_path: Path, empty_file: str | None
) -> None:
    folder = _data(tmp_path)
    if empty_file:
        (folder / empty_file).touch()
    first = cli("init", env=WIDE).stdout.decode()
    assert "• topic user-events: created" in first
    assert "• subscription analytics-processor on user-events: created" in first
    assert "created the data folder" not in first
    again = cli("init", env=WIDE).stdout.decode()
    assert "• topic user-events: exists" in again
    assert "• subscription analytics-processor on user-events: exists" in again


def _another_programs_store(tmp_path: Path) -> Path:
    folder = _data(tmp_path)
    with sqlite3.connect(folder / "store.db") as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    return folder


def test_several_workers_refuse_another_programs_store_once(tmp_path: Path) -> None:
    folder = _another_programs_store(tmp_path)
    _refused_in_one_line(
        folder,
        ("worker", "--workers", "2", "--until-idle"),
        f"{folder / 'store.db'} is a SQLite file but not a behavioral-analytics store (no "
        "events table): point BA_DATA_DIR at your data, or move the file aside",
    )


def test_several_workers_refuse_a_folder_in_the_brokers_place_once(tmp_path: Path) -> None:
    folder = _data(tmp_path)
    (folder / "broker.db").mkdir()
    result = cli("worker", "--workers", "2", "--until-idle", env=WIDE, check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"error: {folder / 'broker.db'} is a folder, not a SQLite file: move it aside, or point "
        "BA_DATA_DIR at your data\n"
    )


@pytest.mark.slow
def test_loadtest_in_a_folder_it_refuses_could_not_run(tmp_path: Path) -> None:
    folder = _another_programs_store(tmp_path)
    result = cli("loadtest", "--events", "10", "--rate", "0", env=WIDE, check=False)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "is a SQLite file but not a behavioral-analytics store" in err
    assert sorted(p.name for p in folder.iterdir()) == ["store.db"]


def _truncated(folder: Path) -> None:
    whole = (folder / "store.db").read_bytes()
    (folder / "store.db").write_bytes(whole[:8192])


def _dangling(folder: Path) -> None:
    (folder / "store.db").unlink()
    (folder / "store.db").symlink_to(folder / "nowhere.db")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "store.db").write_bytes(b""), "is empty (0 bytes), but a store existed"),
        (_dangling, "is a link to {folder}/nowhere.db, which is missing, but a store existed"),
        (_truncated, "is damaged (truncated: 2 pages of the"),
        (lambda f: (f / "store.db").unlink() or (f / "store.db").mkdir(), "is a folder, not a"),
    ],
    ids=["empty", "dangling link", "truncated", "folder"],
)
def test_backup_refuses_a_store_every_other_command_refuses(
    tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    folder = tmp_path / "data"
    cli("init", env=WIDE)
    damage(folder)
    copy = tmp_path / "copy"
    for command in (("backup", str(copy)), ("doctor",)):
        refused = cli(*command, env=WIDE, check=False)
        err = refused.stderr.decode()
        assert refused.returncode == 1, err
        assert message.format(folder=folder) in err
    assert not copy.exists()


def test_backup_refuses_another_programs_store(tmp_path: Path) -> None:
    _another_programs_store(tmp_path)
    refused = cli("backup", str(tmp_path / "copy"), env=WIDE, check=False)
    assert refused.returncode == 1
    assert "is a SQLite file but not a behavioral-analytics store" in refused.stderr.decode()
    assert not (tmp_path / "copy").exists()


def test_doctor_leaves_an_empty_broker_file_empty(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    cli("init", env=WIDE)
    (folder / "broker.db").write_bytes(b"")
    checked = cli("doctor", env=WIDE)
    assert "✓ broker: an empty file (0 bytes)" in checked.stdout.decode()
    assert (folder / "broker.db").stat().st_size == 0
