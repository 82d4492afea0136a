"""The local broker keeps Pub/Sub's promises."""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from behavioral_analytics.broker import BrokerError, OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from tests.conftest import FakeClock


def make(tmp_path: Path, clock: FakeClock, **kw: object) -> LocalBroker:
    options: dict[str, object] = {
        "ack_deadline_s": 60.0,
        "min_backoff_s": 10.0,
        "max_backoff_s": 600.0,
        "clock": clock,
    }
    options.update(kw)
    return LocalBroker(tmp_path / "broker.db", **options)  # type: ignore[arg-type]


def msgs(*texts: str, key: str | None = None) -> list[OutgoingMessage]:
    return [OutgoingMessage(t.encode(), ordering_key=key) for t in texts]


def test_publish_pull_ack(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock)
    ids = broker.publish(msgs("a", "b", "c"))
    assert len(set(ids)) == 3
    got = broker.pull(10, 0)
    assert [d.data for d in got] == [b"a", b"b", b"c"]
    assert [d.message_id for d in got] == ids
    assert all(d.delivery_attempt == 1 and d.publish_time == clock.now for d in got)
    assert broker.pull(10, 0) == []  # leased
    broker.ack([d.ack_id for d in got])
    assert broker.backlog() == 0


def test_every_subscription_receives_every_message(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock)
    broker.create_subscription("audit")
    broker.publish(msgs("x", "y"))
    audit = broker.for_subscription("audit")
    assert [d.data for d in broker.pull(10, 0)] == [b"x", b"y"]
    assert [d.data for d in audit.pull(10, 0)] == [b"x", b"y"]


def test_expired_lease_is_redelivered_and_stale_ack_is_ignored(
    tmp_path: Path, clock: FakeClock
) -> None:
    broker = make(tmp_path, clock, ack_deadline_s=30.0)
    broker.publish(msgs("a"))
    first = broker.pull(1, 0)
    clock.advance(29)
    assert broker.pull(1, 0) == []
    clock.advance(2)  # the worker "crashed": lease ran out
    second = broker.pull(1, 0)
    assert [d.data for d in second] == [b"a"] and second[0].delivery_attempt == 2
    broker.ack([first[0].ack_id])  # the old lease's ack no longer counts
    assert broker.backlog() == 1
    broker.ack([second[0].ack_id])
    assert broker.backlog() == 0


def test_extend_keeps_the_lease(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock, ack_deadline_s=30.0)
    broker.publish(msgs("a"))
    got = broker.pull(1, 0)
    clock.advance(25)
    broker.extend([got[0].ack_id], 60)
    clock.advance(50)
    assert broker.pull(1, 0) == []
    clock.advance(11)
    assert len(broker.pull(1, 0)) == 1


def test_nack_backs_off_exponentially(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock, min_backoff_s=10.0, max_backoff_s=25.0, max_delivery_attempts=9)
    broker.publish(msgs("a"))
    for attempt, backoff in ((1, 10), (2, 20), (3, 25)):
        got = broker.pull(1, 0)
        assert got[0].delivery_attempt == attempt
        broker.nack([got[0].ack_id], "boom")
        clock.advance(backoff - 0.5)
        assert broker.pull(1, 0) == []
        clock.advance(0.5)


def test_one_nack_backs_each_message_off_by_its_own_attempt(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A nack (a stopping worker's give-back) of messages at different attempts, with an ack id
    of an ended lease among them: each leased message waits by its own attempt and records it."""
    broker = make(tmp_path, clock, min_backoff_s=10.0, max_backoff_s=600.0, max_delivery_attempts=3)
    broker.publish(msgs("old"))
    first = broker.pull(1, 0)
    broker.nack([first[0].ack_id], "boom")
    clock.advance(10)
    broker.publish(msgs("new"))
    held = broker.pull(10, 0)
    assert sorted((d.data, d.delivery_attempt) for d in held) == [(b"new", 1), (b"old", 2)]
    broker.give_back([first[0].ack_id, *(d.ack_id for d in held)])  # the first: a stale lease
    clock.advance(10)
    assert [d.data for d in broker.pull(10, 0)] == [b"new"]  # 10 s for attempt 1
    clock.advance(10)
    assert [d.data for d in broker.pull(10, 0)] == [b"old"]  # 20 s for attempt 2
    clock.advance(61)  # both leases run out, the old one's third and last
    assert [(d.data, d.delivery_attempt) for d in broker.pull(10, 0)] == [(b"new", 3)]
    dead = broker.pull_dead_letters(10)
    assert [d.data for d in dead] == [b"old"]
    assert [(h["attempt"], h["outcome"], h.get("reason")) for h in dead[0].attempts] == [
        (1, "nack", "boom"),
        (2, "nack", "worker stopping"),
        (3, "lease_expired", None),
    ]


def test_dead_letter_after_max_attempts_with_history(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock, max_delivery_attempts=5, min_backoff_s=0, max_backoff_s=0)
    broker.publish(msgs("poison", "fine"))
    for attempt in range(1, 6):
        got = {d.data: d for d in broker.pull(10, 0)}
        assert got[b"poison"].delivery_attempt == attempt
        if b"fine" in got:
            broker.ack([got[b"fine"].ack_id])
        if attempt < 5:
            broker.nack([got[b"poison"].ack_id], f"commit failed #{attempt}")
        else:
            clock.advance(61)  # the last attempt's lease just runs out
    assert broker.pull(10, 0) == []  # a sixth delivery is not made...
    dead = broker.pull_dead_letters(10)
    assert [d.data for d in dead] == [b"poison"]  # ...the message is dead-lettered instead
    history = dead[0].attempts
    assert [h["outcome"] for h in history] == ["nack"] * 4 + ["lease_expired"]
    assert history[0]["reason"] == "commit failed #1"
    assert dead[0].reason == "lease_expired"
    broker.ack_dead_letters([dead[0].handle])
    assert broker.pull_dead_letters(10) == []
    assert broker.backlog() == 0


def test_dead_letter_reason_is_the_last_failure(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock, max_delivery_attempts=5, min_backoff_s=0, max_backoff_s=0)
    broker.publish(msgs("poison"))
    for attempt in range(5):
        broker.nack([broker.pull(1, 0)[0].ack_id], f"reason {attempt}")
    assert broker.pull(1, 0) == []
    assert broker.pull_dead_letters(1)[0].reason == "reason 4"


def test_ordering_keys_hold_a_key_until_the_earlier_message_is_acked(
    tmp_path: Path, clock: FakeClock
) -> None:
    broker = make(tmp_path, clock, ordering=True, min_backoff_s=0, max_backoff_s=0)
    broker.publish(msgs("a1", "a2", "a3", key="A"))
    broker.publish(msgs("b1", "b2", key="B"))
    broker.publish(msgs("free"))
    first = broker.pull(10, 0)
    assert sorted(d.data for d in first) == [b"a1", b"b1", b"free"]
    assert broker.pull(10, 0) == []  # a2 and b2 wait for a1 and b1
    by_data = {d.data: d for d in first}
    broker.ack([by_data[b"a1"].ack_id])
    assert [d.data for d in broker.pull(10, 0)] == [b"a2"]
    broker.nack([by_data[b"b1"].ack_id], "retry")
    assert [d.data for d in broker.pull(10, 0)] == [b"b1"]  # b1 again, before b2


def test_without_ordering_a_key_does_not_hold_messages(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock)
    broker.publish(msgs("a1", "a2", key="A"))
    assert len(broker.pull(10, 0)) == 2


def test_retention_drops_old_unacked_messages(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock, retention_s=3600.0)
    broker.publish(msgs("old"))
    clock.advance(3601)
    broker.publish(msgs("new"))
    assert [d.data for d in broker.pull(10, 0)] == [b"new"]


def test_pull_waits_up_to_the_timeout(tmp_path: Path, clock: FakeClock) -> None:
    broker = make(tmp_path, clock)
    assert broker.pull(10, 0.05) == []


def _lease_all(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    broker = LocalBroker(Path(path))
    seen = []
    while got := broker.pull(7, 0.2):
        seen.extend(d.data for d in got)
        broker.ack([d.ack_id for d in got])
    out.put(seen)


def test_several_processes_never_lease_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = LocalBroker(path)
    for start in range(0, 2000, 500):
        broker.publish([OutgoingMessage(str(i).encode()) for i in range(start, start + 500)])
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_lease_all, args=(str(path), out)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    delivered = [x for r in results for x in r]
    assert len(delivered) == 2000 and len(set(delivered)) == 2000


def test_another_programs_sqlite_file_is_refused_not_written_into(tmp_path: Path) -> None:
    """As the store refuses one: adopting it put the broker's tables into someone's file."""
    path = tmp_path / "broker.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (x)")
        db.commit()
    with pytest.raises(BrokerError, match="is a SQLite file but not a behavioral-analytics broker"):
        LocalBroker(path)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]


def test_a_broker_file_another_process_is_creating_is_not_refused(tmp_path: Path) -> None:
    """Its schema's statements commit one by one: `topics` before `messages`."""
    path = tmp_path / "broker.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE topics (name TEXT PRIMARY KEY)")
        db.commit()
    LocalBroker(path).close()
