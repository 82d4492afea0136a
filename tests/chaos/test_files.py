"""Issue 19, case 3: broken files get one line naming the file and what to do, never a
traceback and never silence; an empty or missing store never replaces one that existed."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.store import StoreError
from behavioral_analytics.stores.sqlite import SQLiteStore, files
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.conftest import cli


def _one_line_error(result: object, *names: str) -> str:
    stderr = result.stderr.decode()  # type: ignore[attr-defined]
    assert result.returncode == 1, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder with a store of 2,000 events, checkpointed into the main file."""
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": f"u{i % 20}",
                "event_type": "page_view",
                "timestamp": time.time() - 60,
                "properties": {"pad": "x" * 300},
            }
        )
        for i in range(2000)
    ]
    folder = tmp_path / "data"
    broker = LocalBroker(folder / "broker.db")
    store = SQLiteStore(folder / "store.db")
    broker.publish([OutgoingMessage(line.encode()) for line in lines])
    Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
        threading.Event(), until_idle=True
    )
    assert store.count_events() == 2000
    broker.close()
    store.close()
    db = sqlite3.connect(folder / "store.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return folder


def _spoil_a_page(path: Path, page: int = 40) -> None:
    with path.open("r+b") as file:
        file.seek(4096 * page + 100)
        file.write(b"\xff" * 3000)


def test_case_3_a_file_that_is_not_sqlite_is_one_line(data: Path) -> None:
    (data / "store.db").write_bytes(b"\x13" * 8192)
    with pytest.raises(
        StoreError, match=r"store\.db is damaged \((not a SQLite|file is not a) database"
    ):
        SQLiteStore(data / "store.db")
    _one_line_error(cli("query", "profile", "u1", check=False), "store.db", "backup")


@pytest.mark.slow
def test_case_3_a_truncated_file_is_one_line(data: Path) -> None:
    path = data / "store.db"
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2 + 1000)
    _one_line_error(cli("query", "profile", "u1", check=False), "store.db", "damaged")
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 4096 * 4096)
    _one_line_error(cli("verify", check=False), "store.db", "truncated")


@pytest.mark.slow
def test_case_3_page_corruption_is_found_by_init_doctor_and_the_worker(data: Path) -> None:
    _spoil_a_page(data / "store.db")
    _one_line_error(cli("init", check=False), "store.db", "damaged")
    doctor = cli("doctor", check=False)
    assert doctor.returncode == 1 and "store.db is damaged" in doctor.stderr.decode()
    assert "✓ broker" in doctor.stdout.decode()
    _one_line_error(cli("worker", "--until-idle", check=False), "store.db", "damaged")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["empty", "missing"])
def test_case_3_an_empty_or_missing_store_does_not_replace_one_that_existed(
    data: Path, how: str
) -> None:
    path = data / "store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if how == "empty":
        path.write_bytes(b"")
    for command in (("verify",), ("worker", "--until-idle"), ("init",)):
        _one_line_error(cli(*command, check=False), "store.db", how, "store.db.created")
    assert not path.exists() or path.stat().st_size == 0  # nothing was created in its place
    (data / "store.db.created").unlink()  # the way to start over, as the message says
    cli("init")
    assert SQLiteStore(path).count_events() == 0


@pytest.mark.slow
def test_case_3_a_damaged_broker_file_is_one_line(data: Path) -> None:
    (data / "broker.db").write_bytes(b"\x00" * 4096)
    _one_line_error(cli("publish", "-", input=b"{}", check=False), "broker.db", "damaged")
    doctor = cli("doctor", check=False)
    assert doctor.returncode == 1 and "broker.db is damaged" in doctor.stderr.decode()
    assert "✓ store" in doctor.stdout.decode()


@pytest.mark.slow
def test_case_3_doctor_says_healthy_when_every_page_reads_back(data: Path) -> None:
    doctor = cli("doctor")
    assert "✓ store" in doctor.stdout.decode() and "✓ broker" in doctor.stdout.decode()


class _LockedFor:
    """A connection whose first `busy` statements find the file locked (SQLite gives up at
    once on some locks, its busy timeout notwithstanding: another worker creating the store or
    recovering its log at the same moment)."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def execute(self, sql: str) -> list[tuple[str]]:
        self.calls += 1
        if self.calls <= self.busy:
            raise sqlite3.OperationalError("database is locked")
        return [("ok",)]


def test_a_locked_file_is_waited_for_and_never_called_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers starting together: one reported the store "damaged (database is locked)"."""
    path = tmp_path / "store.db"
    briefly = _LockedFor(busy=3)
    files.quick_check(briefly, path)  # type: ignore[arg-type]  # a stand-in connection
    assert briefly.calls == 4
    monkeypatch.setattr(files, "BUSY_WAIT_S", 0.3)
    with pytest.raises(StoreError) as caught:
        files.quick_check(_LockedFor(busy=1000), path)  # type: ignore[arg-type]  # a stand-in
    message = str(caught.value)
    assert "is damaged" not in message and message.endswith("the file is not damaged")
    assert message.startswith(f"the file {path} stayed locked for 0.3 s (database is locked)")
