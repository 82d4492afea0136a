"""`backup` while a worker runs, then a restore: nothing is lost and nothing counted twice.

The broker's file is copied before the store's, so a message acked between the two copies is
in both (delivered again after the restore, dropped as a duplicate by its key); `verify` on
the restored folder is exact, and its count of events equals the original's once both have
processed everything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_sqlite_access_errors import limited_command

COMMAND_TIMEOUT_S = 180
# Messages leased when the copy was taken are leased in it too: the restored worker takes them
# once the lease ends, after the ack deadline (the shortest the settings allow).
ENV = {"BA_METRICS_EXPORTER": "none", "BA_ACK_DEADLINE": "10"}


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "behavioral_analytics.cli", *args],
        env={**os.environ, **ENV, "BA_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def _raw_events(data_dir: Path) -> int:
    report = json.loads(_ok(_cli(data_dir, "verify", "--json")))
    assert report["ok"], report["drift"][:3]
    return int(report["raw_events"])


@pytest.mark.slow
def test_a_backup_taken_while_a_worker_runs_restores_every_event_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(_cli(data, "init"))
    _ok(_cli(data, "generate", "--events", "6000", "--via", "broker", "--seed", "8"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--until-idle"],
        env={**os.environ, **ENV, "BA_DATA_DIR": str(data)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "store.db-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # polled: the worker's first commit has begun
        copy = tmp_path / "copy"
        out = _ok(_cli(data, "backup", str(copy)))
    finally:
        assert worker.wait(COMMAND_TIMEOUT_S) == 0
    assert "To restore" in out
    assert {p.name for p in copy.iterdir()} >= {"store.db", "broker.db", "store.db.created"}
    restored = tmp_path / "restored"
    shutil.copytree(copy, restored)
    _ok(_cli(restored, "doctor"))
    _ok(_cli(restored, "worker", "--until-idle"))
    assert _raw_events(restored) == _raw_events(data) > 0


def test_backup_refuses_to_overwrite_and_names_a_missing_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = _cli(data, "backup", str(tmp_path / "copy"))
    assert missing.returncode == 1 and "no data at" in missing.stderr
    _ok(_cli(data, "init"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "store.db").write_text("an earlier copy")
    refused = _cli(data, "backup", str(taken))
    assert refused.returncode == 2 and "not an empty folder" in refused.stderr
    assert (taken / "store.db").read_text() == "an earlier copy"
    a_file = tmp_path / "env.sh"
    a_file.write_text("export BA_DATA_DIR=data\n")
    refused = _cli(data, "backup", str(a_file))
    assert refused.returncode == 2 and f"{a_file} is a file: name a new folder" in refused.stderr
    assert a_file.read_text() == "export BA_DATA_DIR=data\n"
    for inside in (data, data / "copy"):
        refused = _cli(data, "backup", str(inside))
        assert refused.returncode == 2 and "inside the data folder" in refused.stderr


def test_a_copy_that_cannot_be_written_names_the_copy_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _ok(_cli(data, "init"))
    _ok(_cli(data, "generate", "--events", "3000", "--via", "broker", "--seed", "8"))
    copy = tmp_path / "copy"

    done = subprocess.run(  # the copy's disk fills: a write past 64 KiB fails (EFBIG)
        limited_command(["backup", str(copy)], 65536),
        env={**os.environ, **ENV, "BA_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 1
    assert f"writing the copy {copy.resolve() / 'broker.db'} failed" in done.stderr
    assert str(data / "broker.db") not in done.stderr  # the data folder is not at fault
    assert not copy.exists()  # no partial copy to refuse the next run
    _ok(_cli(data, "backup", str(copy)))
