"""The SQLite store's layout number (`stores/sqlite/layout.py`): kept in the file's header,
raised by a release that changes the tables, and a file a newer release upgraded refused in
one line, when opened and by a worker's commit, rather than misread; a file of an earlier
layout checked by `doctor` without being upgraded."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from behavioral_analytics.store import ConfigChanged, StoreError
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite.layout import LAYOUT
from tests.conftest import cli
from tests.contract.builders import NOW, ev


def _layout(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def _number(path: Path, layout: int) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(f"PRAGMA user_version = {layout}")
    finally:
        db.close()


def _digest(directory: Path) -> dict[str, str]:
    """The store's files (`store.db` and those beside it named after it), by name."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(directory.glob("store.db*"))
    }


def test_a_new_store_and_one_from_before_the_number_get_this_releases(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=lambda: NOW)
    store.commit([ev(1, 100, user="u1")])
    store.close()
    assert _layout(path) == LAYOUT >= 1
    _number(path, 0)  # as every release before the number wrote it
    store = SQLiteStore(path, clock=lambda: NOW)
    assert store.count_events() == 1
    store.close()
    assert _layout(path) == LAYOUT


def test_a_store_a_newer_release_upgraded_is_refused_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = data / "store.db"
    store = SQLiteStore(path, clock=lambda: NOW)
    store.commit([ev(1, 100, user="u1")])
    store.close()
    _number(path, LAYOUT + 1)
    before = _digest(data)
    with pytest.raises(StoreError) as raised:
        SQLiteStore(path, clock=lambda: NOW)
    line = str(raised.value)
    assert line == (
        f"the store {path} was upgraded by a newer release of behavioral-analytics (its tables' "
        f"layout {LAYOUT + 1}; this release reads layout {LAYOUT}): run that release, or restore "
        "a copy taken before the upgrade (`behavioral-analytics backup`)"
    )
    assert _digest(data) == before
    # Every command says the same line and changes nothing of the store: a read, `doctor`.
    for args in (("query", "profile", "u1"), ("doctor",)):
        result = cli(*args, env={"BA_DATA_DIR": str(data)}, check=False)
        assert result.returncode != 0, args
        assert "was upgraded by a newer release" in result.stderr.decode() + result.stdout.decode()
        assert _digest(data) == before


def test_a_process_still_running_when_a_newer_release_upgrades_the_file_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=lambda: NOW)
    store.commit([ev(1, 100, user="u1")])
    _number(path, LAYOUT + 1)
    refused = f"upgraded to layout {LAYOUT + 1} by a newer release"
    with pytest.raises(ConfigChanged, match=refused) as raised:
        store.commit([ev(2, 200, user="u1")])
    assert str(raised.value).startswith(f"the store {path.resolve()}: ")  # the file named
    # Every other write of the process, and the read of the recorded configuration the API's
    # watch makes, is refused the same way.
    for write in (
        lambda: store.forget("u1"),
        lambda: store.purge_expired(NOW + 10**9),
        lambda: store.purge_dead_letters(NOW + 10**9),
        lambda: store.record_config(replace=True),
        store.recorded_config,
    ):
        with pytest.raises(ConfigChanged, match=refused):
            write()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    db.close()


def test_doctor_checks_an_earlier_layout_without_upgrading_it(tmp_path: Path) -> None:
    """`doctor` before an upgrade reads every page of a store an earlier release wrote and
    says what the first worker or command will do, leaving the file as it found it (opening it
    as a store would number it, and migrate an older layout, one way); it refuses an
    environment that differs from the configuration the file recorded, as that command will;
    a damaged page of such a file is still found."""
    data = tmp_path / "data"
    path = data / "store.db"
    store = SQLiteStore(path, clock=lambda: NOW)
    store.commit([ev(1, 100, user="u1")])
    store.close()
    _number(path, 0)  # as every release before the number wrote it
    before = _digest(data)
    env = {"BA_DATA_DIR": str(data), "COLUMNS": "400"}
    result = cli("doctor", env=env, check=False)
    said = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert f"earlier release's layout (0, this release's is {LAYOUT})" in said, said
    assert _digest(data) == before and _layout(path) == 0
    # An environment the first command after the upgrade refuses, doctor refuses as it will.
    elsewhere = cli("doctor", env={**env, "BA_TIMEZONE": "Asia/Kolkata"}, check=False)
    refused = elsewhere.stderr.decode()
    assert elsewhere.returncode == 2, refused
    assert "BA_TIMEZONE=Asia/Kolkata differs" in refused and "config apply" in refused, refused
    assert _digest(data) == before and _layout(path) == 0
    # The next command upgrades it, as before.
    cli("query", "profile", "u1", env=env)
    assert _layout(path) == LAYOUT

    _number(path, 0)
    db = sqlite3.connect(path)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with path.open("r+b") as file:  # the raw events' root page, overwritten
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * 64)
    broken = cli("doctor", env=env, check=False)
    assert broken.returncode == 1 and "is damaged" in broken.stderr.decode()
    assert _layout(path) == 0
