"""`forget` reaches the local broker's file: messages still waiting and dead-lettered ones that
name the person, under any spelling of their id, on every subscription, go with their history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import FakeClock, cli, processed


def _rows(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as db:
        return sorted(
            bytes(data)
            for (data,) in db.execute(
                "SELECT data FROM messages UNION ALL SELECT data FROM dead_letters"
            )
        )


def test_forget_messages_finds_every_spelling_waiting_and_dead_lettered(
    tmp_path: Path, clock: FakeClock
) -> None:
    broker = LocalBroker(tmp_path / "broker.db", max_delivery_attempts=1, clock=clock)
    broker.create_subscription("audit")
    dead = b'{"event_id": "d1", "userId": "12345", "properties": {"email": "n@example.test"}}'
    broker.publish([OutgoingMessage(dead)])
    for delivery in broker.pull(10, 0):
        broker.nack([delivery.ack_id], "invalid")
    clock.advance(3600)
    assert broker.pull(10, 0) == []  # attempts exhausted: moved to dead_letters
    assert [m.data for m in broker.pull_dead_letters(10)] == [dead]
    kept = [b'{"event_id": "k1", "user_id": "123456"}', b'{"event_id": "k2", "user_id": "x"}']
    broker.publish(
        [
            OutgoingMessage(b'{"event_id": "w1", "user_id": 12345}'),
            OutgoingMessage(b'{"event_id": "w2", "anonymous_id": "dev-A"}'),
            OutgoingMessage(b'{"batch": [{"type": "track", "userId": 12345}]}'),
            *(OutgoingMessage(data) for data in kept),
        ]
    )
    # Each of the 4 naming messages on both subscriptions (audit's copy of the dead one waits).
    assert broker.forget_messages({"12345"}, {"dev-A"}) == 4 * 2
    assert broker.pull_dead_letters(10) == []
    assert _rows(tmp_path / "broker.db") == sorted(kept * 2)
    assert broker.forget_messages({"12345"}, {"dev-A"}) == 0


@pytest.mark.slow
def test_forget_command_deletes_a_waiting_message_with_a_numeric_user_id(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    processed(
        b'{"event_id": "i1", "user_id": "12345", "anonymous_id": "dev-A", '
        b'"event_type": "identify"}\n',
        env,
    )
    waiting = (
        b'{"event_id": "p1", "user_id": 12345, "event_type": "page_view"}\n'
        b'{"event_id": "p2", "anonymous_id": "dev-A", "event_type": "page_view"}\n'
        b'{"event_id": "p3", "user_id": "someone-else", "event_type": "page_view"}\n'
    )
    cli("publish", env=env, input=waiting)
    broker_file = tmp_path / "data" / "broker.db"
    assert len(_rows(broker_file)) == 3

    report = json.loads(cli("forget", "12345", "--yes", "--json", env=env).stdout)

    assert report["broker_messages_deleted"] == 2
    assert report["raw_events_deleted"] == 1 and report["links_deleted"] == 1
    assert [json.loads(data)["event_id"] for data in _rows(broker_file)] == ["p3"]
    human = cli("forget", "someone-else", "--yes", env={**env, "COLUMNS": "200"}).stdout
    assert b"1 broker message (" in human
    assert _rows(broker_file) == []


def test_deleted_content_is_overwritten_on_every_connection_before_and_after_a_forget(
    tmp_path: Path, clock: FakeClock
) -> None:
    """`secure_delete` stays on, whatever the SQLite build's default (docs/behavior.md
    "Personal data"): acked messages and rows a commit replaces leave no copy either."""
    broker = LocalBroker(tmp_path / "broker.db", clock=clock)
    store = SQLiteStore(tmp_path / "store.db", clock=clock)
    try:
        broker.publish([OutgoingMessage(b'{"event_id": "w1", "user_id": "u1"}')])
        assert broker.forget_messages({"u1"}, set()) == 1
        store.forget("u1")
        for db in (broker._db, store._db):  # the connections themselves
            assert db.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        broker.close()
        store.close()


def test_forget_messages_erases_acked_messages_from_the_write_ahead_log(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Nothing left to delete (the person's messages were processed and acked), and still no
    copy of them stays in the log or the file while the broker is open."""
    path = tmp_path / "broker.db"
    broker = LocalBroker(path, clock=clock)
    secret = b"lee.secret@example.test"
    broker.publish([OutgoingMessage(b'{"user_id": "lee", "properties": {"e": "%s"}}' % secret)])
    broker.ack([delivery.ack_id for delivery in broker.pull(10, 0)])
    wal = path.with_name(path.name + "-wal")
    assert secret in wal.read_bytes()  # what the test is about: the acked message's old page

    assert broker.forget_messages({"lee"}, set()) == 0

    assert secret not in wal.read_bytes() and secret not in path.read_bytes()


@pytest.mark.slow
def test_forget_command_forgets_a_visitor_by_anonymous_id(tmp_path: Path) -> None:
    """`forget anonymous:ID`: the visitor's stored events and the waiting messages they sent go;
    a message of a user named like the visitor's id stays; a visitor linked to a user is
    refused with the user to forget instead (exit 2), and nothing is deleted."""
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    processed(
        b'{"event_id": "v1", "anonymous_id": "dev-V", "event_type": "page_view"}\n'
        b'{"event_id": "a1", "anonymous_id": "dev-A", "event_type": "page_view"}\n'
        b'{"event_id": "i1", "user_id": "ann", "anonymous_id": "dev-A", '
        b'"event_type": "identify"}\n',
        env,
    )
    cli(
        "publish",
        env=env,
        input=b'{"event_id": "v2", "anonymous_id": "dev-V", "event_type": "page_view"}\n'
        b'{"event_id": "u1", "user_id": "dev-V", "event_type": "page_view"}\n',
    )
    broker_file = tmp_path / "data" / "broker.db"

    report = json.loads(cli("forget", "anonymous:dev-V", "--yes", "--json", env=env).stdout)

    assert report["persons"] == ["anonymous:dev-V"]
    assert report["raw_events_deleted"] == 1 and report["broker_messages_deleted"] == 1
    assert [json.loads(data)["event_id"] for data in _rows(broker_file)] == ["u1"]
    # The user whose id is the same text is someone else, not named as one left behind.
    cli("worker", "--until-idle", env=env)
    cli(
        "publish",
        env=env,
        input=b'{"event_id": "v3", "anonymous_id": "dev-V", "event_type": "page_view"}\n',
    )
    cli("worker", "--until-idle", env=env)
    again = cli("forget", "anonymous:dev-V", "--yes", env={**env, "COLUMNS": "200"}).stdout
    assert b"forgot anonymous:dev-V: 1 raw event, 1 session," in again and b"note:" not in again

    refused = cli("forget", "anonymous:dev-A", "--yes", env=env, check=False)
    assert refused.returncode == 2
    assert b"anonymous:dev-A is linked to user ann" in refused.stderr
    assert b"forget ann" in refused.stderr
    timeline = json.loads(cli("query", "timeline", "ann", "--json", env=env).stdout)
    assert len(timeline["items"]) == 2
    blank = cli("forget", "anonymous: ", "--yes", env=env, check=False)
    assert blank.returncode == 2 and b"anonymous id" in blank.stderr
