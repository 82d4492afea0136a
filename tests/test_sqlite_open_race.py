"""Processes opening the same new data directory at the same instant (`up` starting its
workers, two `worker` commands): none may fail, and none may call a busy file damaged.

Switching a new file to write-ahead logging while another process opens it answers "database
is locked" without waiting (SQLite's busy timeout does not cover it): before `connect` tried
again, 6 of 40 such processes failed, and the broker told its user to move the file aside."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.sqlite_util import retrying_busy
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite.files import check_before_open

PROCESSES = 4
ROUNDS = 8
ROUND_TIMEOUT_S = 60.0


def _open_together(
    folder: str,
    barrier: multiprocessing.synchronize.Barrier,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    barrier.wait(ROUND_TIMEOUT_S)
    try:
        LocalBroker(Path(folder) / "broker.db")
        SQLiteStore(Path(folder) / "store.db").close()
        out.put("ok")
    except Exception as exc:  # reported to the test, which names it
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_data_directory_together_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round-{round_}"
        barrier = context.Barrier(PROCESSES)
        out = context.Queue()
        procs = [
            context.Process(target=_open_together, args=(str(folder), barrier, out))
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        outcomes += [out.get(timeout=ROUND_TIMEOUT_S) for _ in procs]
        for proc in procs:
            proc.join(ROUND_TIMEOUT_S)
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, f"{len(failures)} of {len(outcomes)} opens failed: {failures[:3]}"


class _CreatedMeanwhile(type(Path())):  # type: ignore[misc]
    """A store path (or its marker, made from it) whose `after`-th look at the file system is
    followed at once by another process finishing the creation of the store there: the
    moment a worker starting beside another one can be paused at."""

    looks = 0
    after = 0

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        try:
            return super().stat(follow_symlinks=follow_symlinks)
        finally:
            _CreatedMeanwhile.looks += 1
            if _CreatedMeanwhile.looks == _CreatedMeanwhile.after:
                SQLiteStore(Path(str(self).removesuffix(".created"))).close()


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_store_created_by_another_process_between_two_looks_is_not_called_missing(
    tmp_path: Path, after: int
) -> None:
    """The CI run that found it: 1 of 32 opens said "the store file … is empty (0 bytes), but
    a store existed there" (the file looked at while another worker had just created it
    empty, its marker looked at after that worker had finished)."""
    store = tmp_path / "store.db"
    store.touch()  # the empty file `sqlite3.connect` of the other process has just made
    _CreatedMeanwhile.looks, _CreatedMeanwhile.after = 0, after
    check_before_open(_CreatedMeanwhile(store))
    assert _CreatedMeanwhile.looks >= after  # the other process did finish meanwhile
    SQLiteStore(store).close()


class _BusyFor:
    """An attempt that raises SQLite's busy error `busy` times, then answers."""

    def __init__(self, busy: int, message: str = "database is locked") -> None:
        self.busy = busy
        self.calls = 0
        self.message = message

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.busy:
            raise sqlite3.OperationalError(self.message)
        return "answered"


def test_a_busy_attempt_is_tried_again_until_it_answers() -> None:
    attempt = _BusyFor(busy=3)
    assert retrying_busy(attempt, wait_s=5.0) == "answered"
    assert attempt.calls == 4


def test_a_file_locked_past_the_wait_raises_the_busy_error() -> None:
    attempt = _BusyFor(busy=1000)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        retrying_busy(attempt, wait_s=0.3)
    assert time.monotonic() - started < 5.0
    assert attempt.calls >= 2


def test_any_other_error_is_raised_at_once() -> None:
    attempt = _BusyFor(busy=1000, message="no such table: events")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retrying_busy(attempt, wait_s=5.0)
    assert attempt.calls == 1


def test_a_broker_file_locked_past_the_wait_is_named_locked_not_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "broker.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a rollback-journal file, locked for every reader
    monkeypatch.setattr("behavioral_analytics.sqlite_util.BUSY_WAIT_S", 0.3)
    monkeypatch.setattr(
        "behavioral_analytics.sqlite_util.sqlite3.connect",
        _with_timeout(sqlite3.connect, 0.05),
    )
    try:
        with pytest.raises(Exception) as caught:
            LocalBroker(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(caught.value)
    assert "is damaged" not in message and message.endswith("the file is not damaged")
    assert message.startswith(f"the broker file {path} stayed locked")


def _with_timeout(connect: object, timeout_s: float) -> object:
    def connecting(*args: object, **kwargs: object) -> sqlite3.Connection:
        kwargs["timeout"] = timeout_s
        return connect(*args, **kwargs)  # type: ignore[operator,no-any-return]

    return connecting
