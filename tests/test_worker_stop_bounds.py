"""What bounds a stopping worker's drain beside other workers (issue 19, case 9: four workers
sharing a store took their turns at its write lock, one commit each, and a drain outgrew its
5 s on a slow machine): a commit still waiting for the lock once the stop is `stop_grace_s` old
gives its batch back instead of waiting out the lock, and what the feeder hands over after the
stop goes back unparsed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from behavioral_analytics import worker as worker_module
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.sqlite_util import connect, transaction
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.conftest import wait_until
from tests.test_worker import TurnTakingGatedStore, good


class _Stop(Exception):
    pass


def test_a_transaction_asks_between_tries_while_the_lock_is_held_and_not_otherwise(
    tmp_path: Path,
) -> None:
    path = tmp_path / "some.db"
    with closing(connect(path)) as holder, closing(connect(path)) as waiter:
        asked: list[float] = []

        def waiting() -> None:
            asked.append(time.monotonic())
            if len(asked) == 3:
                raise _Stop

        with transaction(waiter, waiting):  # the lock is free: never asked
            pass
        assert asked == []
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(_Stop), transaction(waiter, waiting):
            pytest.fail("the transaction began while another connection held the lock")
        assert len(asked) == 3 and time.monotonic() - started < 5  # tries of 0.1 s, not 30 s
        assert not waiter.in_transaction
        assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # as it was
        holder.execute("ROLLBACK")
        with transaction(waiter, waiting):  # released: taken at once
            pass
        assert len(asked) == 3


def test_a_stopping_worker_gives_back_a_batch_still_waiting_for_the_write_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("behavioral_analytics"), "propagate", True)
    caplog.set_level(logging.INFO, logger="behavioral_analytics")
    broker = LocalBroker(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    store = SQLiteStore(tmp_path / "store.db")
    store.init()
    broker.publish([OutgoingMessage(good(i)) for i in range(10)])
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's long write (`backup`, a worker)
    options = WorkerOptions(flush_max_events=10, flush_interval_s=0.05, stop_grace_s=0.2)
    worker = Worker(broker, store, options=options)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    try:
        thread.start()
        # Leased: committed or not, the batch can only wait for the lock from now on.
        wait_until(lambda: broker.stats()["outstanding"] == 10, 30, "the batch leased")
        stop.set()
        stopped = time.monotonic()
        thread.join(10)
        assert not thread.is_alive(), "the worker waited out the lock"
        assert time.monotonic() - stopped < 5  # the busy timeout is 30 s
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.count_events() == 0
    assert broker.backlog() == 10 and broker.stats()["outstanding"] == 0
    assert worker.metrics.snapshot().commit_failures == 0  # given back, not failed
    messages = [r.getMessage() for r in caplog.records]
    assert "commit abandoned: stopping" in messages and "commit failed" not in messages
    assert broker.pull_dead_letters(10) == []
    Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
        threading.Event(), until_idle=True
    )
    assert store.count_events() == 10 and broker.backlog() == 0
    store.close()
    broker.close()


def test_what_the_feeder_hands_over_after_a_stop_goes_back_unparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feeder holds a batch waiting for its turn at parsing while the commit in flight runs
    (SQLite): once stopped, it hands the batch over as it came, and it goes back so. No parse
    begins after the stop."""
    broker = LocalBroker(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    broker.publish([OutgoingMessage(good(i)) for i in range(30)])
    parse_starts: list[float] = []
    parse = worker_module.parse_deliveries

    def timed(deliveries, **kw):  # type: ignore[no-untyped-def]
        parse_starts.append(time.monotonic())
        return parse(deliveries, **kw)

    monkeypatch.setattr(worker_module, "parse_deliveries", timed)
    options = WorkerOptions(flush_max_events=10, flush_interval_s=60.0, stop_grace_s=0.0)
    stop = threading.Event()
    with closing(TurnTakingGatedStore(tmp_path / "store.db")) as store:
        thread = threading.Thread(
            target=Worker(broker, store, options=options).run, args=(stop,), daemon=True
        )
        thread.start()
        try:
            wait_until(store.committing.is_set, 30, "the first commit")
            wait_until(lambda: broker.stats()["outstanding"] >= 20, 30, "a batch in the feeder")
        finally:
            stopped_at = time.monotonic()
            stop.set()
            store.release.set()
            thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"
        assert store.count_events() == 10 and broker.backlog() == 20
        assert broker.stats()["outstanding"] == 0
    assert parse_starts and all(t < stopped_at for t in parse_starts), (parse_starts, stopped_at)
    broker.close()
