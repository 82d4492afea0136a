"""The Pub/Sub broker against the emulator."""

from __future__ import annotations

import time

import pytest
from google.cloud import pubsub_v1

from behavioral_analytics.broker import BrokerError, OutgoingMessage
from behavioral_analytics.brokers.failure_log import InMemoryFailureLog
from behavioral_analytics.brokers.pubsub import PubSubBroker, resource_path
from behavioral_analytics.wiring import build_broker
from tests.conftest import wait_until


@pytest.fixture
def broker(settings_for):
    b = build_broker(settings_for())
    b.init()
    yield b
    b.close()


def _pull_all(broker: PubSubBroker, want: int, deadline_s: float = 20.0):
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(broker.pull(want - len(got), 0.5))
    return got


def test_init_is_idempotent_and_accepts_full_paths(settings_for, emulators, names) -> None:
    settings = settings_for()
    first = build_broker(settings).init()
    assert any(line.startswith("created subscription") for line in first)
    assert len([line for line in first if line.startswith("created topic")]) == 2
    full = settings_for(
        pubsub_topic=resource_path(emulators.project, "topics", names["pubsub_topic"]),
        pubsub_subscription=resource_path(
            emulators.project, "subscriptions", names["pubsub_subscription"]
        ),
    )
    broker = build_broker(full)
    again = broker.init()
    assert not any(line.startswith("created") for line in again)
    assert broker.subscription.endswith("/" + names["pubsub_subscription"])
    broker.ping()
    broker.close()


def test_init_makes_subscriptions_that_never_expire(settings_for) -> None:
    """Without an expiration policy Pub/Sub deletes a subscription idle for 31 days (a
    dead-letter subscription nobody pulls, say), as the deployments' own
    (`expiration_policy {}`, `--expiration-period=never`) are not."""
    broker = build_broker(settings_for())
    broker.init()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for name in (broker.subscription, broker.dead_letter_subscription):
            found = subscriber.get_subscription(request={"subscription": name})
            assert "expiration_policy" in found, name
            assert "ttl" not in found.expiration_policy, (name, found.expiration_policy)
    finally:
        subscriber.close()
        broker.close()


def test_publish_pull_ack(broker) -> None:
    ids = broker.publish([OutgoingMessage(f"m{i}".encode(), {"n": str(i)}) for i in range(30)])
    assert len(set(ids)) == 30
    got = _pull_all(broker, 30)
    assert sorted(d.data for d in got) == sorted(f"m{i}".encode() for i in range(30))
    assert all(d.delivery_attempt == 1 for d in got)  # the dead-letter policy makes it count
    assert all(d.publish_time > time.time() - 60 for d in got)
    broker.ack([d.ack_id for d in got])
    assert broker.pull(10, 2.0) == []


def test_nack_redelivers_and_records_reason(settings_for) -> None:
    failures = InMemoryFailureLog()
    settings = settings_for()
    broker = build_broker(settings)
    broker.failure_log = failures
    broker.init()
    broker.publish([OutgoingMessage(b"x")])
    [first] = _pull_all(broker, 1)
    broker.nack([first.ack_id], "TransientStoreError: boom")
    [second] = _pull_all(broker, 1)
    assert second.message_id == first.message_id
    assert second.delivery_attempt == 2
    [(_key, entries)] = failures._entries.items()
    assert entries[0]["reason"] == "TransientStoreError: boom"
    broker.ack([second.ack_id])
    broker.close()


def test_extend_and_close_give_back_unclaimed(settings_for, monkeypatch, log_lines) -> None:
    """`close` nacks what the stream delivered that the worker never took, and only that."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    broker = build_broker(settings_for())
    broker.init()
    broker.publish([OutgoingMessage(f"{i}".encode()) for i in range(5)])
    held = _pull_all(broker, 1)
    broker.extend([d.ack_id for d in held], 30)
    assert isinstance(broker, PubSubBroker)
    wait_until(lambda: broker.queued() == 4, 30, "the other four queued in the broker, unclaimed")
    unclaimed = {m.ack_id for m in list(broker._queue.queue)}
    nacked: list[set[str]] = []
    modack = broker._subscriber.modify_ack_deadline

    def recorded(*args, **kwargs):  # the broker's requests; the library's too, by keyword
        request = kwargs.get("request") or kwargs
        if request.get("ack_deadline_seconds") == 0:
            nacked.append(set(request["ack_ids"]))
        return modack(*args, **kwargs)

    monkeypatch.setattr(broker._subscriber, "modify_ack_deadline", recorded)
    started = time.monotonic()
    broker.close()
    assert time.monotonic() - started < 8
    assert nacked == [unclaimed]
    assert not log_lines.starting("could not give back")
    # The unclaimed four are nacked at once, the held one waits for its lease. The emulator
    # hands nacked messages of a closed stream to synchronous pulls, not to a new stream; and
    # a pull whose client stopped waiting still takes messages, so each pull here waits as long
    # as the test.
    client = pubsub_v1.SubscriberClient()
    back: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(back) < 4 and time.monotonic() < deadline:
        try:
            response = client.pull(
                request={"subscription": broker.subscription, "max_messages": 10},
                timeout=max(1.0, deadline - time.monotonic()),
                retry=None,
            )
        except gexc.DeadlineExceeded:
            continue
        back.extend(m.message.data for m in response.received_messages)
    client.close()
    unclaimed_data = {f"{i}".encode() for i in range(5)} - {held[0].data}
    assert set(back) <= {*unclaimed_data, held[0].data}
    if len(set(back) & unclaimed_data) < 4:
        # The nack (checked above) reached the emulator before it saw the stream end: it sent
        # them into that stream, whence it returns them only after long stalls.
        pytest.xfail("the emulator sent nacked messages into the stream that had ended")
    assert sorted(back) == sorted(unclaimed_data)


def test_ping_fails_fast_on_a_wrong_port(settings_for, monkeypatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
    broker = build_broker(settings_for())
    started = time.monotonic()
    with pytest.raises(BrokerError):
        broker.ping(timeout=2.0)
    assert time.monotonic() - started < 10
