"""The worker: bad input never fails a batch; failures are isolated; shutdown drains."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics import worker as worker_module
from behavioral_analytics.broker import BrokerError, OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.events import Event
from behavioral_analytics.store import CommitResult, ConfigChanged, NewDeadLetter, StoreError
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite.layout import LAYOUT
from behavioral_analytics.worker import Worker, WorkerOptions
from tests.conftest import cli, wait_until
from tests.test_events import MALFORMED


def good(n: int, user: str = "user_1", event_type: str = "page_view") -> bytes:
    return json.dumps(
        {
            "event_id": f"evt_{n}",
            "user_id": user,
            "event_type": event_type,
            "timestamp": time.time() - n,
            "properties": {"n": n},
        }
    ).encode()


def as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def test_bad_events_are_dead_lettered_and_good_ones_committed(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    # The table's timestamps are relative to a fixed date; here messages are received now.
    table = [(as_bytes(p), r) for _, p, r in MALFORMED if not r.startswith("timestamp_")]
    bad = [data for data, _ in table]
    goods = [good(i) for i in range(5)]
    mixed = [m for pair in zip(bad, goods * 10, strict=False) for m in pair]
    broker.publish([OutgoingMessage(m) for m in mixed])
    worker = Worker(broker, store)
    result = worker.process(broker.pull(1000, 0))
    assert result is not None
    assert result.created == 5 and result.dead_letters == len(bad)
    assert broker.backlog() == 0  # everything acked, nothing left to retry
    stored = sorted((d.data, d.reason) for d in store.dead_letters(1000).items)
    # A message over the size limit keeps its first 32 KiB in its dead letter, as the collector.
    limit = WorkerOptions().limits.max_message_bytes
    assert stored == sorted((data[:limit], reason) for data, reason in table)
    assert any(len(data) > limit for data, _ in table)
    snap = worker.metrics.snapshot()
    assert snap.processed == 5 and snap.rejected == len(bad)


def test_a_huge_message_is_dead_lettered_with_its_first_bytes(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    """A 12 MB line published straight to the broker was kept whole in its dead letter (and
    `GET /v1/dead-letters` answered 28 MB); the collector kept 32 KiB of such a request."""
    huge = json.dumps({"event_type": "x", "properties": {"blob": "a" * 3_000_000}}).encode()
    broker.publish([OutgoingMessage(huge), OutgoingMessage(good(1))])
    result = Worker(broker, store).process(broker.pull(10, 0))
    assert result is not None and (result.created, result.dead_letters) == (1, 1)
    (letter,) = store.dead_letters().items
    limit = WorkerOptions().limits.max_message_bytes
    assert letter.reason == "too_large" and letter.data == huge[:limit]
    assert letter.detail == f"{len(huge)} bytes > {limit} (the first {limit} kept)"


class PoisonStore(SQLiteStore):
    """Fails any commit that holds the poison event, as a store bug would."""

    poison = "evt_poison"

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        if any(e.event_id == self.poison for e in events):
            raise RuntimeError("cannot store evt_poison")
        return super().commit(events, dead_letters, give_up=give_up)


def test_a_poison_message_is_isolated_and_dead_lettered_with_its_reason(
    tmp_path: Path, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("behavioral_analytics.worker._COMMIT_RETRIES", ())
    store = PoisonStore(tmp_path / "store.db")
    poison = json.dumps({"event_id": "evt_poison", "user_id": "u", "event_type": "x"}).encode()
    broker.publish([OutgoingMessage(m) for m in [good(1), poison, good(2), good(3)]])
    worker = Worker(broker, store)
    for _ in range(6):
        deliveries = broker.pull(100, 0)
        if deliveries:
            worker.process(deliveries)
    assert store.profile("user_1").total_events == 3  # type: ignore[union-attr]
    assert worker.drain_dead_letters() == 1
    dead = store.dead_letters().items
    assert len(dead) == 1 and dead[0].source == "broker" and dead[0].data == poison
    assert "cannot store evt_poison" in dead[0].reason
    assert len(dead[0].attempts) == 5


def test_a_dead_lettered_message_of_someone_forgotten_meanwhile_is_not_recorded(
    tmp_path: Path,
    broker: LocalBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker gave up on u's message; u is forgotten before the worker drains it: the
    message, published before the tombstone, is not recorded, and the log says so."""
    monkeypatch.setattr("behavioral_analytics.worker._COMMIT_RETRIES", ())
    caplog.set_level(logging.WARNING, logger="behavioral_analytics")
    store = PoisonStore(tmp_path / "store.db")
    poison = json.dumps({"event_id": "evt_poison", "user_id": "u", "event_type": "x"}).encode()
    broker.publish([OutgoingMessage(poison)])
    worker = Worker(broker, store)
    for _ in range(6):
        deliveries = broker.pull(100, 0)
        if deliveries:
            worker.process(deliveries)
    store.forget("u")
    assert worker.drain_dead_letters() == 1
    assert store.count_dead_letters() == 0
    [said] = [r for r in caplog.records if r.getMessage() == "dead-lettered messages recorded"]
    assert (said.count, said.forgotten) == (0, 1)  # type: ignore[attr-defined]


def test_a_workers_housekeeping_writes_nothing_to_a_store_a_newer_release_upgraded(
    tmp_path: Path, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead-letter drain and the purge of expired events, which a running worker makes
    between commits, are refused once a newer release has upgraded the store's files: they
    raise ConfigChanged, which stops the worker, and write nothing; the dead letter stays with
    the broker for the newer release's workers."""
    monkeypatch.setattr("behavioral_analytics.worker._COMMIT_RETRIES", ())
    store = PoisonStore(tmp_path / "store.db")
    poison = json.dumps({"event_id": "evt_poison", "user_id": "u", "event_type": "x"}).encode()
    broker.publish([OutgoingMessage(m) for m in [good(1), poison]])
    worker = Worker(broker, store)
    for _ in range(6):
        deliveries = broker.pull(100, 0)
        if deliveries:
            worker.process(deliveries)
    _upgrade_by_a_newer_release(store)
    with pytest.raises(ConfigChanged, match="by a newer release"):
        worker.drain_dead_letters()
    with pytest.raises(ConfigChanged, match="by a newer release"):
        worker._purge()
    assert store.count_dead_letters() == 0
    assert len(broker.pull_dead_letters(10)) == 1
    assert store.count_events() == 1


def test_store_down_gives_everything_back(
    tmp_path: Path, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("behavioral_analytics.worker._COMMIT_RETRIES", ())
    store = SQLiteStore(tmp_path / "store.db")

    def down(*_: object, **__: object) -> None:
        raise RuntimeError("store unreachable")

    monkeypatch.setattr(store, "commit", down)
    monkeypatch.setattr(store, "ping", down)
    broker.publish([OutgoingMessage(good(i)) for i in range(3)])
    Worker(broker, store).process(broker.pull(10, 0))
    monkeypatch.undo()
    again = broker.pull(10, 0)  # backoff is zero in the fixture
    assert len(again) == 3 and all(d.delivery_attempt == 2 for d in again)


def test_run_until_idle_drains_and_flushes_in_batches(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    broker.publish([OutgoingMessage(good(i, user=f"u{i % 7}")) for i in range(2500)])
    worker = Worker(broker, store, options=WorkerOptions(flush_max_events=1000, idle_after_s=0.2))
    worker.run(threading.Event(), until_idle=True)
    assert store.count_events() == 2500
    assert worker.metrics.snapshot().batches == 3


@pytest.mark.slow
def test_until_idle_returns_beside_traffic_that_never_stops(
    broker: LocalBroker, store: SQLiteStore, tmp_path: Path
) -> None:
    # `worker --until-idle` in a second terminal while `up` keeps publishing demo traffic: it
    # drains what was published before it started, then returns.
    broker.publish([OutgoingMessage(good(i, user=f"u{i % 7}")) for i in range(300)])
    publishing = threading.Event()
    stop_publishing = threading.Event()

    def publish_forever() -> None:  # bounded: 60 s or 100,000 messages
        with closing(LocalBroker(tmp_path / "data" / "broker.db")) as other:
            deadline = time.monotonic() + 60
            for n in range(1000, 101_000, 10):
                if stop_publishing.is_set() or time.monotonic() > deadline:
                    return
                other.publish([OutgoingMessage(good(n + k, user="live")) for k in range(10)])
                publishing.set()
                time.sleep(0.01)

    publisher = threading.Thread(target=publish_forever)
    publisher.start()
    try:
        assert publishing.wait(30), "the publisher never started"
        worker = Worker(broker, store, options=WorkerOptions(idle_after_s=0.2))
        worker.run(threading.Event(), until_idle=True)
        assert publisher.is_alive(), "the worker returned only once the traffic stopped"
    finally:
        stop_publishing.set()
        publisher.join(30)
    stored = {event.event_id for event in store.iter_raw_events()}
    assert {f"evt_{i}" for i in range(300)} <= stored


def test_flush_interval_bounds_staleness(broker: LocalBroker, store: SQLiteStore) -> None:
    worker = Worker(
        broker, store, options=WorkerOptions(flush_interval_s=0.3, flush_max_events=10_000)
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        broker.publish([OutgoingMessage(good(1))])
        wait_until(lambda: store.count_events() == 1, 10, "a lone event to be flushed")
    finally:
        stop.set()
        thread.join(10)


def _worker_env(tmp_path: Path) -> dict[str, str]:
    return {
        "BA_DATA_DIR": str(tmp_path / "data"),
        "BA_FLUSH_INTERVAL": "5",
        "BA_FLUSH_MAX_EVENTS": "20000",
    }


def test_sigterm_flushes_acks_and_exits_within_8_seconds(tmp_path: Path) -> None:
    env = _worker_env(tmp_path)
    broker = LocalBroker(tmp_path / "data" / "broker.db")
    broker.publish([OutgoingMessage(good(i)) for i in range(300)])
    import os

    proc = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Held in the batch (flush interval 5 s): leased, not yet committed.
        wait_until(lambda: broker.stats()["outstanding"] == 300, 30, "the batch to be leased")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=8)
        assert time.monotonic() - started < 8
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    store = SQLiteStore(tmp_path / "data" / "store.db")
    assert store.count_events() == 300
    assert broker.backlog() == 0
    last = json.loads(proc.stdout.read().decode().strip().splitlines()[-1])  # type: ignore[union-attr]
    assert last["message"] == "worker stopped" and last["severity"] == "INFO"


class GatedStore(SQLiteStore):
    """Holds its first commit until `release` is set, so a test can stop a worker mid-commit.
    The worker parses beside its commits (as for a store over a network), so that three
    batches can be held at once."""

    commits_in_process = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.committing = threading.Event()
        self.release = threading.Event()

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        if not self.committing.is_set():
            self.committing.set()
            assert self.release.wait(30), "the test never released the first commit"
        return super().commit(events, dead_letters, give_up=give_up)


def _stop_mid_commit(
    broker: LocalBroker, store: GatedStore, stop_grace_s: float, held: int = 30
) -> None:
    """Run a worker over 30 messages in batches of 10 and stop it while `held` messages are
    leased (30: three batches, one committing (held by the store's gate), one parsed and
    queued, one in the feeder); return once it has stopped."""
    broker.publish([OutgoingMessage(good(i)) for i in range(30)])
    options = WorkerOptions(flush_max_events=10, flush_interval_s=60.0, stop_grace_s=stop_grace_s)
    stop = threading.Event()
    thread = threading.Thread(
        target=Worker(broker, store, options=options).run, args=(stop,), daemon=True
    )
    thread.start()
    try:
        wait_until(store.committing.is_set, 30, "the first commit")
        wait_until(lambda: broker.stats()["outstanding"] >= held, 30, f"{held} messages held")
    finally:
        stop.set()
        store.release.set()
        thread.join(30)
    assert not thread.is_alive(), "the worker did not stop"


@pytest.mark.parametrize(("stop_grace_s", "committed"), [(0.0, 10), (60.0, 30)])
def test_a_stop_commits_what_begins_in_its_grace_and_gives_back_the_rest(
    tmp_path: Path,
    broker: LocalBroker,
    stop_grace_s: float,
    committed: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop's drain is bounded by `stop_grace_s`, not by how much is held."""
    monkeypatch.setattr(logging.getLogger("behavioral_analytics"), "propagate", True)
    caplog.set_level(logging.INFO, logger="behavioral_analytics")
    with closing(GatedStore(tmp_path / "store.db")) as store:
        _stop_mid_commit(broker, store, stop_grace_s)
        assert store.count_events() == committed
        assert broker.backlog() == 30 - committed  # given back, not dead-lettered
        assert broker.pull_dead_letters(100) == []
        given_back = [r for r in caplog.records if "gave back" in r.getMessage()]
        assert sum(getattr(r, "messages", 0) for r in given_back) == 30 - committed
        Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
            threading.Event(), until_idle=True
        )
        assert store.count_events() == 30 and broker.backlog() == 0


class FailingGatedStore(GatedStore):
    """`GatedStore` whose commits fail (another process's lock outlasting the busy timeout,
    say), counted."""

    commits = 0

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        self.commits += 1
        self.committing.set()
        assert self.release.wait(30), "the test never released the commit"
        raise StoreError(f"commit failed: {self.path}: database is locked")


def test_a_commit_failing_during_a_stop_is_given_back_not_retried(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """Each retry could wait out a lock again (30 s on SQLite): a stop took 109 s."""
    broker.publish([OutgoingMessage(good(i)) for i in range(10)])
    options = WorkerOptions(flush_max_events=10, flush_interval_s=60.0, stop_grace_s=0.0)
    stop = threading.Event()
    with closing(FailingGatedStore(tmp_path / "store.db")) as store:
        worker = Worker(broker, store, options=options)
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        wait_until(store.committing.is_set, 30, "the first commit")
        stop.set()
        wait_until(lambda: worker._stopped_at is not None, 10, "the stop seen")
        store.release.set()
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"
        assert store.commits == 1
    assert broker.backlog() == 10 and broker.stats()["outstanding"] == 0
    assert broker.pull_dead_letters(100) == []


class TurnTakingGatedStore(GatedStore):
    """`GatedStore` whose commits take turns with the worker's parsing, as SQLite's do."""

    commits_in_process = True


def test_a_stop_while_the_feeder_waits_for_its_turn_gives_its_batch_back(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """Parsing waits for the commit in flight (SQLite): a stop then finds the feeder holding a
    batch it has not parsed (or a parsed one queued and the next waiting); the commit in flight
    ends, everything else is given back or never leased, and a later run takes all of it."""
    with closing(TurnTakingGatedStore(tmp_path / "store.db")) as store:
        _stop_mid_commit(broker, store, 0.0, held=20)
        assert store.count_events() == 10 and broker.backlog() == 20
        assert broker.stats()["outstanding"] == 0 and broker.pull_dead_letters(100) == []
        Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
            threading.Event(), until_idle=True
        )
        assert store.count_events() == 30 and broker.backlog() == 0


def test_an_idle_worker_stopping_commits_the_batch_its_feeder_holds(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    """Nothing is being committed when the stop comes: the feeder's batch is the next one, and
    is committed however long its hand-over takes, even with no time to drain at all."""
    broker.publish([OutgoingMessage(good(i)) for i in range(5)])
    options = WorkerOptions(flush_interval_s=60.0, stop_grace_s=0.0)
    worker = Worker(broker, store, options=options)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: broker.stats()["outstanding"] == 5, 30, "the batch to be held")
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the worker did not stop"
    assert store.count_events() == 5 and broker.backlog() == 0


class SlowCommits(SQLiteStore):
    """Each commit waits 50 ms first (the interpreter lock released, as a network wait would
    leave it), and notes when it ran (monotonic seconds)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.spans: list[tuple[float, float]] = []

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        began = time.monotonic()
        time.sleep(0.05)
        try:
            return super().commit(events, dead_letters, give_up=give_up)
        finally:
            self.spans.append((began, time.monotonic()))


@pytest.mark.parametrize("in_process", [True, False])
def test_parsing_waits_for_a_commit_that_is_this_processs_own_work(
    broker: LocalBroker, tmp_path: Path, in_process: bool
) -> None:
    """Where the store says a commit is this process's CPU work (SQLite), the feeder parses
    the next batch only between commits; a store over a network has it parsed beside one."""
    store = SlowCommits(tmp_path / "slow.db")
    store.commits_in_process = in_process
    broker.publish([OutgoingMessage(good(i)) for i in range(60)])
    worker = Worker(broker, store, options=WorkerOptions(flush_max_events=10, idle_after_s=0.2))
    parsed: list[tuple[float, float]] = []
    prepare = worker._prepare

    def timed(deliveries: Sequence[Any]) -> Any:
        began = time.monotonic()
        try:
            return prepare(deliveries)
        finally:
            parsed.append((began, time.monotonic()))

    worker._prepare = timed  # type: ignore[method-assign]
    worker.run(threading.Event(), until_idle=True)
    store.close()
    assert len(store.spans) == 6 and len(parsed) == 6
    beside = [p for p in parsed for c in store.spans if p[0] < c[1] and c[0] < p[1]]
    assert (beside == []) is in_process, (parsed, store.spans)


class RefusingNacks(LocalBroker):
    """A broker whose nack fails, as a locked or full broker file makes it."""

    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        raise BrokerError("the broker's file is locked")


def test_a_stop_whose_give_back_fails_still_returns(tmp_path: Path) -> None:
    """The messages a failed nack leaves leased come back when their leases run out."""
    broker = RefusingNacks(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    with closing(broker), closing(GatedStore(tmp_path / "store.db")) as store:
        _stop_mid_commit(broker, store, stop_grace_s=0.0)
        assert store.count_events() == 10 and broker.stats()["outstanding"] == 20


def test_a_changed_configuration_with_failing_nacks_still_ends_the_run(tmp_path: Path) -> None:
    """The committing thread's error, its give-back failing too: the feeder is not left blocked
    on a queue nobody reads, and `run` raises the error."""
    broker = RefusingNacks(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    with closing(broker), closing(SQLiteStore(tmp_path / "store.db")) as store:
        store.record_config()
        with closing(SQLiteStore(store.path, timezone="Europe/Paris")) as other:
            other.record_config(replace=True)
        broker.publish([OutgoingMessage(good(i)) for i in range(30)])
        options = WorkerOptions(flush_max_events=10, flush_interval_s=0.05)
        done: list[BaseException] = []

        def run() -> None:
            try:
                Worker(broker, store, options=options).run(threading.Event())
            except BaseException as exc:
                done.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "the run hung on its feeder"
        [exc] = done
        assert isinstance(exc, ConfigChanged)


class FailingFirstAck(LocalBroker):
    """A broker whose first ack fails after the commit, recording the reasons of its nacks."""

    nacked: list[str]

    def ack(self, ack_ids: Iterable[str]) -> None:
        if not hasattr(self, "nacked"):
            self.nacked = []
            raise BrokerError("ack lost")
        super().ack(ack_ids)

    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        self.nacked.append(reason)
        super().nack(ack_ids, reason)


@pytest.mark.slow
def test_a_batch_left_unsettled_is_given_back_not_left_leased(tmp_path: Path) -> None:
    """A broker that holds leases (Pub/Sub's extends them) would otherwise keep them for ever."""
    broker = FailingFirstAck(tmp_path / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    with closing(broker), closing(SQLiteStore(tmp_path / "store.db")) as store:
        broker.publish([OutgoingMessage(good(i)) for i in range(5)])
        Worker(broker, store, options=WorkerOptions(idle_after_s=0.2)).run(
            threading.Event(), until_idle=True
        )
        assert [r for r in broker.nacked if r.startswith("batch left unsettled")]
        assert store.count_events() == 5 and broker.backlog() == 0


class RecordingReturns(LocalBroker):
    """Records what went back unprocessed (`give_back`) and what was nacked, with reasons."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, min_backoff_s=0.0, max_backoff_s=0.0)
        self.given_back = 0
        self.nacks: list[tuple[str, int]] = []

    def give_back(self, ack_ids: Iterable[str]) -> None:
        ids = list(ack_ids)
        self.given_back += len(ids)
        LocalBroker.nack(self, ids, "worker stopping")

    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        ids = list(ack_ids)
        self.nacks.append((reason, len(ids)))
        super().nack(ids, reason)


def test_a_stop_gives_back_through_give_back_not_nack(tmp_path: Path) -> None:
    """On Pub/Sub a nack writes a failure record per message; a stop is no failure."""
    broker = RecordingReturns(tmp_path / "broker.db")
    with closing(broker), closing(GatedStore(tmp_path / "store.db")) as store:
        _stop_mid_commit(broker, store, stop_grace_s=0.0)
        assert (broker.given_back, broker.nacks) == (20, [])


class FailingCommits(SQLiteStore):
    """Every commit fails (the store answers pings); the first sets `stop`."""

    def __init__(self, path: Path, stop: threading.Event) -> None:
        super().__init__(path)
        self.stop = stop
        self.commits = 0

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        self.commits += 1
        self.stop.set()
        raise RuntimeError("disk says no")


def test_a_stop_during_isolation_gives_back_what_is_left_instead_of_splitting_on(
    tmp_path: Path,
) -> None:
    """Splitting a failing batch costs a commit per half, down to single messages: thousands
    for a large batch, past the platform's SIGKILL."""
    broker = RecordingReturns(tmp_path / "broker.db")
    stop = threading.Event()
    with closing(broker), closing(FailingCommits(tmp_path / "store.db", stop)) as store:
        broker.publish([OutgoingMessage(good(i)) for i in range(8)])
        options = WorkerOptions(flush_interval_s=0.05, stop_grace_s=0.0)
        Worker(broker, store, options=options).run(stop)
        assert store.commits == 1  # the batch; no retry in a stop, no half
        # Given back, never nacked (a failure record each, on Pub/Sub); a pull in flight as the
        # stop came may take them once more, to give them back again.
        assert broker.given_back >= 8 and broker.nacks == []
        assert broker.backlog() == 8


@pytest.mark.slow
def test_dlq_replay_counts_a_fixed_event_once(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    no_id = json.dumps({"user_id": "replayed", "event_type": "signup"}).encode()
    broker = LocalBroker(tmp_path / "data" / "broker.db", min_backoff_s=0, max_backoff_s=0)
    broker.publish([OutgoingMessage(no_id)])
    # The broker gives up on it (say a store outage outlasted every attempt).
    for _ in range(5):
        broker.nack([broker.pull(1, 0)[0].ack_id], "store outage")
    cli("worker", "--until-idle", env=env)
    listed = json.loads(cli("dlq", "list", "--json", env=env).stdout)
    assert listed["total"] == 1 and listed["items"][0]["reason"] == "store outage"
    dead_id = listed["items"][0]["id"]
    cli("dlq", "replay", "--id", dead_id, env=env)
    cli("dlq", "replay", "--id", dead_id, env=env)  # an operator's double click
    cli("worker", "--until-idle", env=env)
    profile = json.loads(cli("query", "profile", "replayed", "--json", env=env).stdout)
    assert profile["total_events"] == 1
    again = json.loads(cli("dlq", "list", "--json", env=env).stdout)
    assert again["items"][0]["replayed_at"] is not None
    assert cli("dlq", "replay", "--all", env=env).stderr.decode().strip() == "nothing to replay"


def test_a_failed_ack_does_not_stop_the_worker_nor_double_count(
    broker: LocalBroker, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.publish([OutgoingMessage(good(i)) for i in range(3)])
    real_ack = broker.ack
    calls = []

    def flaky_ack(ack_ids: list[str]) -> None:
        calls.append(ack_ids)
        if len(calls) == 1:
            raise RuntimeError("network blip")
        real_ack(ack_ids)

    monkeypatch.setattr(broker, "ack", flaky_ack)
    broker.ack_deadline_s = 0.5  # the unacked batch comes back soon
    worker = Worker(broker, store, options=WorkerOptions(flush_interval_s=0.05, idle_after_s=0.3))
    worker.run(threading.Event(), until_idle=True)
    assert len(calls) >= 2
    assert store.count_events() == 3
    assert worker.metrics.snapshot().duplicates == 3  # the redelivery, absorbed


def test_debug_logging_of_a_batch_works(broker: LocalBroker, store: SQLiteStore) -> None:
    import io
    import logging

    from behavioral_analytics.telemetry import configure_logging

    out = io.StringIO()
    configure_logging("DEBUG", out)
    try:
        broker.publish([OutgoingMessage(good(1))])
        Worker(broker, store).process(broker.pull(10, 0))
    finally:
        configure_logging("INFO")
        logging.getLogger("behavioral_analytics").handlers[:] = []
    entry = json.loads(out.getvalue().strip().splitlines()[-1])
    assert entry["message"] == "batch committed" and entry["events_created"] == 1


def test_an_event_dated_before_a_forget_is_counted_as_forgotten_not_duplicate(
    broker: LocalBroker, store: SQLiteStore
) -> None:
    worker = Worker(broker, store)
    broker.publish([OutgoingMessage(good(1, user="gone"))])
    worker.process(broker.pull(10, 0))
    store.forget("gone")
    broker.publish([OutgoingMessage(good(2, user="gone"))])  # dated before the tombstone
    result = worker.process(broker.pull(10, 0))
    assert result is not None and (result.created, result.forgotten) == (0, 1)
    snapshot = worker.metrics.snapshot()
    assert (snapshot.forgotten, snapshot.duplicates) == (1, 0)
    assert snapshot.to_dict()["forgotten"] == 1


def _apply_another_timezone(store: SQLiteStore) -> None:
    with closing(SQLiteStore(store.path, timezone="Europe/Paris")) as other:
        other.record_config(replace=True)  # what `config apply` does


def _upgrade_by_a_newer_release(store: SQLiteStore) -> None:
    with closing(sqlite3.connect(store.path)) as db:
        db.execute(f"PRAGMA user_version = {LAYOUT + 1}")  # what a newer release's upgrade does


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (_apply_another_timezone, ("timezone", "restart")),
        (_upgrade_by_a_newer_release, (f"upgraded to layout {LAYOUT + 1}", "newer release")),
    ],
)
def test_a_worker_whose_store_configuration_changed_stops_and_gives_its_messages_back(
    broker: LocalBroker,
    store: SQLiteStore,
    change: Callable[[SQLiteStore], None],
    said: tuple[str, str],
) -> None:
    """Another configuration recorded (`config apply`), or the files upgraded by a newer
    release, while the worker runs."""
    store.record_config()  # the worker's configuration (UTC)
    change(store)
    broker.publish([OutgoingMessage(good(i)) for i in range(30)])
    worker = Worker(
        broker, store, options=WorkerOptions(flush_max_events=10, flush_interval_s=0.05)
    )
    done: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(threading.Event())
        except BaseException as exc:
            done.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker kept going with a stale configuration"
    [exc] = done
    assert isinstance(exc, ConfigChanged) and all(part in str(exc) for part in said)
    assert list(store.iter_raw_events()) == []
    # Given back, not dead-lettered: every message is delivered again to the restarted worker.
    assert broker.pull_dead_letters(100) == []
    assert len(broker.pull(100, 1.0)) == 30


def test_a_run_until_idle_gives_up_on_a_broker_that_keeps_failing(
    broker: LocalBroker, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exited 0, "idle", when every pull failed (Pub/Sub unreachable); a long-running worker
    keeps retrying instead."""
    pulls: list[float] = []

    def unreachable(max_messages: int, timeout: float) -> list[object]:
        pulls.append(time.monotonic())
        raise BrokerError("Pub/Sub at 127.0.0.1:1 unavailable: connection refused")

    monkeypatch.setattr(broker, "pull", unreachable)
    monkeypatch.setattr(worker_module, "UNTIL_IDLE_PULL_FAILURES_S", 1.0)
    worker = Worker(broker, store, options=WorkerOptions(flush_interval_s=0.05, idle_after_s=0.1))
    stop = threading.Event()
    deadline = threading.Timer(10.0, stop.set)  # without giving up, it would retry until stopped
    deadline.start()
    try:
        with pytest.raises(BrokerError) as caught:
            worker.run(stop, until_idle=True)
    finally:
        deadline.cancel()
    assert caught.value.permanent
    assert str(caught.value) == (
        f"no pull succeeded for 1 s ({len(pulls)} tries), the last: Pub/Sub at 127.0.0.1:1 "
        "unavailable: connection refused"
    )
    assert len(pulls) >= 2 and pulls[-1] - pulls[0] >= 1.0


class NoExtending(LocalBroker):
    """A broker whose lease extensions fail (its disk full, say)."""

    def extend(self, ack_ids: Iterable[str], seconds: float) -> None:
        raise BrokerError("extend on the local broker failed: the disk is full")


class AlwaysFailing(SQLiteStore):
    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        raise StoreError("commit failed: the disk is full")


def test_a_commit_failure_is_counted_when_extending_the_leases_fails_too(tmp_path: Path) -> None:
    """The progress line said `commit_failures: 0` through a full disk: the extension's error
    escaped before the failure was counted."""
    broker = NoExtending(tmp_path / "broker.db")
    broker.publish([OutgoingMessage(good(0))])
    stop = threading.Event()
    with closing(broker), closing(AlwaysFailing(tmp_path / "store.db")) as store:
        worker = Worker(broker, store, options=WorkerOptions(flush_interval_s=0.05))
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: worker.metrics.snapshot().commit_failures >= 1, 10, "a failure")
        finally:
            stop.set()
            thread.join(30)
        assert broker.pull_dead_letters(10) == []  # given back, not lost
