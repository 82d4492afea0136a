"""The Firestore bench's row of several workers (`bench/firestore_writes.py --workers`, here with
counter shards too): stores on clients of one database commit each flush's events at once,
every event is stored once, `verify` is exact, the floor counts each worker's share apart, and
every worker's commits are counted."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import REPO
from tests.emulators import Emulators

sys.path.insert(0, str(REPO / "bench"))

import firestore_writes


def test_two_workers_on_one_database_store_every_event_once_and_verify_exact(
    emulators: Emulators,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from google.cloud import firestore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    made: list[bool] = []
    clients: list[firestore.Client] = []

    def client_for(same: bool = False) -> firestore.Client:
        made.append(same)
        clients.append(firestore.Client(project=emulators.project, database=database))
        return clients[-1]

    # 600 events from 40 people in sessions: a person's events often dealt to both workers.
    events = firestore_writes.make_events(600, 40, 100.0, seed=7, identify=0.3)
    row = firestore_writes.run_adapter(client_for, events, 1.0, 2, check=True, workers=2)

    assert made == [False, True]
    output = capsys.readouterr().out
    assert "verify after the flush 1 s, 2 shards, 2 workers row: ok (600 raw events" in output
    commits = re.search(r"flush 1 s: ([\d,]+) commits, (\d+) conflicts", output)
    assert commits is not None
    flushes = len(firestore_writes.flush_groups(events, 1.0))
    assert int(commits[1].replace(",", "")) > flushes  # flushes dealt to both workers
    one_worker_floor = firestore_writes.structural_floor(firestore_writes.flush_groups(events, 1.0))
    assert row.floor_writes is not None and row.floor_writes > one_worker_floor
    assert row.writes >= row.floor_writes
    assert row.written_bytes is not None and row.written_bytes > 0
    # Both workers' commits are counted: each client's commit call is wrapped.
    assert [c._firestore_api.commit.__name__ for c in clients] == ["counted", "counted"]
    assert row.name == "this adapter, flush 1 s, 2 shards, 2 workers"
