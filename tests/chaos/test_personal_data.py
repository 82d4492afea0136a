"""Issue 19, case 8: no key and no unmasked IP address in any log line, even at DEBUG; dead
letters (which keep the original bytes, IPs included) expire and are purged, counts by reason
kept; on Firestore every dead letter carries the `expire_at` its TTL policy reads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from behavioral_analytics.events import Event
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import FakeClock, cli, wait_until

READ_KEY = "rk_must_not_be_logged_5e1"
WRITE_KEY = "wk_must_not_be_logged_9a3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_case_8_debug_access_lines_hold_no_key_and_no_full_ip(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "api.log"
    env = {
        **os.environ,
        "BA_LOG_LEVEL": "DEBUG",
        "BA_READ_KEYS": READ_KEY,
        "BA_WRITE_KEYS": WRITE_KEY,
        "BA_DATA_DIR": str(tmp_path / "data"),
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "behavioral_analytics.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "the API to start")
        assert httpx.get(f"{base}/?key={READ_KEY}", timeout=5).status_code == 200
        httpx.get(f"{base}/v1/dashboard?key={READ_KEY}", timeout=5)
        httpx.post(f"{base}/v1/events?writeKey={WRITE_KEY}", json={}, timeout=5)
        httpx.get(f"{base}/v1/projects/{WRITE_KEY}/settings", timeout=5)  # analytics.js's
        wait_until(lambda: log.read_text().count('"uvicorn.access"') >= 4, 10, "access lines")
    finally:
        server.terminate()
        server.wait(15)
    text = log.read_text()
    access = [json.loads(line) for line in text.splitlines() if '"uvicorn.access"' in line]
    assert len(access) >= 4
    assert READ_KEY not in text and WRITE_KEY not in text
    assert "127.0.0.1" not in " ".join(line["message"] for line in access)
    assert all("127.0.0.0" in line["message"] for line in access)
    assert any("key=REDACTED" in line["message"] for line in access)
    assert any("/v1/projects/REDACTED/settings" in line["message"] for line in access)


def _letter(n: int, source: str) -> NewDeadLetter:
    data = json.dumps({"user_id": "u", "ip": "203.0.113.9", "n": n}).encode()
    return NewDeadLetter(f"reason_{source}", "bad", data, f"m{n}", source=source)


def test_case_8_dead_letters_expire_and_purging_keeps_counts_by_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "store.db", dead_letter_retention_s=3600.0, clock=clock)
    event = Event("k1", "e1", "u", None, "view", clock(), None, {}, clock())
    store.commit([event], [_letter(1, "worker"), _letter(2, "worker")])  # the worker's path
    store.add_dead_letters([_letter(3, "collector")])  # the collector's
    clock.advance(1800)
    store.add_dead_letters([_letter(4, "collector")])
    assert store.purge_dead_letters(clock()) == {}  # none expired yet, none ever purged
    clock.advance(1801)  # the first three are 3601 s old, the last 1801 s
    store.purge_expired(clock())  # the worker's periodic purge
    assert [d.message_id for d in store.dead_letters().items] == ["m4"]
    assert store.purge_dead_letters(clock()) == {"reason_worker": 2, "reason_collector": 1}
    assert store.count_events() == 1  # raw events keep their own retention
    clock.advance(1800)
    assert store.purge_dead_letters(clock()) == {"reason_worker": 2, "reason_collector": 2}
    assert store.count_dead_letters() == 0
    store.close()


def test_case_8_dlq_purge_deletes_and_reports_counts(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "data" / "store.db")
    store.add_dead_letters([_letter(1, "collector"), _letter(2, "worker")])
    store.close()
    assert json.loads(cli("dlq", "purge", "--json").stdout)["purged"] == 0  # none expired
    report = json.loads(cli("dlq", "purge", "--older-than-days", "0", "--yes", "--json").stdout)
    assert report["purged"] == 2
    assert report["purged_ever_by_reason"] == {"reason_collector": 1, "reason_worker": 1}
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 0


def test_case_8_firestore_dead_letters_carry_expire_at() -> None:
    documents = pytest.importorskip(
        "behavioral_analytics.stores.firestore.documents",
        reason="NO FIRESTORE CLIENT: install the gcp extra to check the dead-letter document",
    )
    now = time.time()
    doc = documents.dead_letter_doc(_letter(1, "worker"), now, 7 * 86400.0)
    assert doc["expire_at"].timestamp() == pytest.approx(now + 7 * 86400.0, abs=0.001)


def test_case_8_forget_leaves_no_copy_in_the_store_file_or_its_log(tmp_path: Path) -> None:
    """The tombstone keeps the forgotten id (it drops their redelivered events); nothing else
    of theirs stays, not even in free pages or the write-ahead log."""
    clock = FakeClock()
    path = tmp_path / "store.db"
    wal = Path(f"{path}-wal")
    store = SQLiteStore(path, clock=clock)
    events = [
        Event(
            f"{who}{i}",
            f"e{i}",
            who,
            None,
            "view",
            clock() - i,
            None,
            {"email": f"{who}-mail-{i}"},
            clock(),
        )
        for i in range(300)
        for who in ("alice", "bob")
    ]
    store.commit(events)
    assert b"alice-mail-1" in path.read_bytes() + wal.read_bytes()
    store.forget("alice")
    kept = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"alice-mail-" not in kept
    assert b"bob-mail-1" in kept  # the others' data is still there
    store.close()
