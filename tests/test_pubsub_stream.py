"""What the broker asks of the client library's streaming pull. A fake subscriber stands in:
what the settings change (how soon a message lost in an ending stream comes back) shows on the
emulator only now and then (tests/gcp/test_pubsub_broker.py's give-back test)."""

from __future__ import annotations

from typing import Any

import pytest

from behavioral_analytics.brokers.pubsub import PubSubBroker


class _Subscriber:
    def __init__(self) -> None:
        self.flow_control: Any = None

    def subscribe(self, subscription: str, *, callback: Any, flow_control: Any) -> Any:
        self.flow_control = flow_control
        return _Stream()


class _Stream:
    def done(self) -> bool:
        return False

    def cancel(self) -> None:
        pass

    def result(self, timeout: float | None = None) -> None:
        pass


def test_the_stream_leases_messages_for_the_least_pubsub_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10 s, not the library's 60: the stream's ack deadline is how long a message Pub/Sub sent
    into a stream that ended unread (a nacked message redelivered at once) stays away."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    subscriber = _Subscriber()
    broker = PubSubBroker("p", publisher=object(), subscriber=subscriber, max_outstanding=7)
    assert broker.pull(10, 0.0) == []
    flow = subscriber.flow_control
    assert flow.max_duration_per_lease_extension == 10
    assert flow.max_messages == 7
    assert flow.max_lease_duration == 3600
    broker.close()
