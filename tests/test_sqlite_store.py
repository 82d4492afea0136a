"""What only the SQLite store does: its commit transaction and `verify` of drift made in its
tables. What every store does is in the contract suite (tests/contract)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.bots import BOT_PROPERTY
from behavioral_analytics.events import Event, dedupe_key
from behavioral_analytics.identity import IDENTIFY
from behavioral_analytics.settings import load_settings
from behavioral_analytics.store import NewDeadLetter
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite import commit as sqlite_commit
from behavioral_analytics.verification import verify

T0 = 1_764_320_000.0  # 2025-11-28 08:53:20 UTC


def ev(n: int, who: str = "user_1", event_type: str = "page_view", ts: float = T0) -> Event:
    return Event(
        key=dedupe_key(f"evt_{n}", who, event_type, ts),
        event_id=f"evt_{n}",
        user_id=who,
        anonymous_id=None,
        event_type=event_type,
        timestamp=ts,
        session_id="s1",
        properties={"page_url": f"/p/{n}"},
        received_at=ts + 1,
    )


def test_commit_is_atomic(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sqlite_commit, "apply_deltas", explode)
    with pytest.raises(RuntimeError):
        store.commit([ev(1)], [NewDeadLetter("not_json", "", b"x", "m1")])
    monkeypatch.undo()
    assert store.count_events() == 0 and store.count_dead_letters() == 0
    assert store.commit([ev(1)]).created == 1  # and the retry counts it


def test_a_live_batch_is_folded_before_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "store.db", rules=load_settings().behavior_rules())
    folds: list[tuple[str, bool]] = []  # (which fold, whether inside the transaction)

    def watched(name: str, real: object) -> object:
        def call(*args: object, **kwargs: object) -> object:
            folds.append((name, store._db.in_transaction))
            return real(*args, **kwargs)  # type: ignore[operator]

        return call

    monkeypatch.setattr(sqlite_commit, "fold", watched("fold", sqlite_commit.fold))
    monkeypatch.setattr(
        sqlite_commit,
        "fold_breakdowns",
        watched("breakdowns", sqlite_commit.fold_breakdowns),
    )
    now = time.time()
    live = [ev(i, who=f"u{i % 3}", ts=now - 300 + i) for i in range(30)]
    assert store.commit(live).created == 30
    assert sorted(folds) == [("breakdowns", False), ("fold", False)]

    # A batch whose events to fold are not those folded ahead (one event stored already) makes
    # the transaction fold afresh; an anonymous event counted for the user its stored link
    # names (the identify in the batch before), beside a bot's, is folded ahead for that user
    # (the attribution is read before the lock too). Both count exactly.
    identify = dataclasses.replace(
        ev(200, who="u0", event_type=IDENTIFY, ts=now - 150), anonymous_id="anon-1"
    )
    anonymous = dataclasses.replace(
        ev(201, who="anon-1", ts=now - 100), user_id=None, anonymous_id="anon-1", who=""
    )
    anonymous.key = dedupe_key("evt_201", anonymous.who, "page_view", anonymous.timestamp)
    bot = dataclasses.replace(ev(202, who="crawler", ts=now - 90), properties={BOT_PROPERTY: True})
    for batch, stored, inside in (
        ([live[0], *(ev(100 + i, ts=now - 200 + i) for i in range(5))], 1, True),
        ([identify], 0, False),
        ([anonymous, bot, ev(203, ts=now - 80)], 0, False),
    ):
        folds.clear()
        result = store.commit(batch)
        assert (result.created, result.duplicates) == (len(batch) - stored, stored)
        assert (("fold", True) in folds, ("breakdowns", True) in folds) == (inside, inside)
    profile = store.profile("u0")
    assert profile is not None and profile.total_events == 12
    report = verify(store, store.periods, now=now, retention_s=None)
    assert report.ok, report.drift
    assert store.count_events() == 39
    store.close()


def test_verify_finds_drift_and_repair_fixes_it(store: SQLiteStore) -> None:
    now = time.time()
    store.commit([ev(i, who=f"u{i % 4}", ts=now - i * 50) for i in range(40)])
    periods = Periods()
    assert verify(store, periods, now=now, retention_s=86400 * 30).ok
    store._db.execute("UPDATE buckets SET total_events = total_events + 1 WHERE granularity='day'")
    store._db.execute("UPDATE profiles SET total_events = 0 WHERE who = 'u1'")
    store._db.execute("DELETE FROM unique_markers WHERE who = 'u2'")
    store._db.execute("UPDATE buckets SET unique_users = 9 WHERE granularity = 'hour'")
    report = verify(store, periods, now=now, retention_s=86400 * 30)
    kinds = {d.what for d in report.drift}
    assert kinds == {"bucket", "profile", "unique_users", "unique_markers"}
    repaired = verify(store, periods, now=now, retention_s=86400 * 30, repair=True)
    assert repaired.repaired
    assert verify(store, periods, now=now, retention_s=86400 * 30).ok


_OTHER_PROCESS = """
import sys
from pathlib import Path
from behavioral_analytics.stores.sqlite import SQLiteStore
store = SQLiteStore(Path(sys.argv[1]), clock=lambda: {now})
if sys.argv[2] == "read":
    print(store.snapshot().profiles["user_1"][0])
else:
    from tests.test_sqlite_store import ev
    store.commit([ev(int(sys.argv[2]))])
store.close()
"""


def test_checking_the_files_keeps_commits_visible_to_other_processes(
    store: SQLiteStore,
) -> None:
    """Closing any descriptor of a file drops the process's POSIX locks on it, SQLite's too:
    checking an open store's header with a descriptor of our own would let another process
    delete the write-ahead log this one writes into, hiding its later commits from everyone."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = _OTHER_PROCESS.format(now=T0 + 5)

    def other(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, str(store.path), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    store.commit([ev(1)])
    store.check_files()  # what a worker does at start, and `doctor`
    other("2")
    store.commit([ev(3)])
    assert other("read") == "3"


def test_verify_reads_one_state_while_another_process_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `verify` beside running workers (`up`): a commit landing between the aggregates and the
    # raw events must not look like drift.
    from tests.contract.builders import NOW, ev

    path = tmp_path / "store.db"
    store, other = SQLiteStore(path, clock=lambda: NOW), SQLiteStore(path, clock=lambda: NOW)
    store.commit([ev(1, 0, user="u1"), ev(2, 60, user="u2", kind="search")])
    read_snapshot = store.snapshot

    def snapshot_then_another_commit() -> object:
        snapshot = read_snapshot()
        assert other.commit([ev(3, 120, user="u3"), ev(4, 7200, anon="a4")]).created == 2
        return snapshot

    monkeypatch.setattr(store, "snapshot", snapshot_then_another_commit)
    report = verify(store, Periods(), now=NOW, retention_s=None)
    assert report.ok, report.drift[:5]
    assert report.raw_events == 2
    monkeypatch.undo()
    assert verify(store, Periods(), now=NOW, retention_s=None).raw_events == 4
    store.close()
    other.close()
