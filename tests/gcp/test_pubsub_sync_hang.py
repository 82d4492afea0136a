"""A synchronous pull to a Pub/Sub host that hangs is an outage, not an empty subscription.

`worker --until-idle` pulls synchronously, and a pull that gets no answer within its deadline
was read as "nothing to deliver": with the host frozen (`kill -STOP` of the emulator, 200
messages waiting) it exited 0 in 6 s having counted nothing, so a script's `worker --until-idle
&& verify` reported success. The broker now asks Pub/Sub for an answer it always gives at once
(the refusal of an empty lease extension) before it takes a silent pull for an empty one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.wiring import build_broker
from tests.emulators import Emulators

from .helpers import Relay

PULL_TIMEOUT_S = 2.0
LIMIT_S = 20.0


def test_a_silent_pull_from_a_hung_host_raises_and_an_empty_one_does_not(
    emulators: Emulators, settings_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(pubsub_pull="sync")
    publisher = build_broker(settings)
    publisher.init()
    relay = Relay(emulators.pubsub_host)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)
    broker = build_broker(settings)
    try:
        assert broker.pull(10, PULL_TIMEOUT_S) == []  # an empty subscription: no error
        relay.hang()
        started = time.monotonic()
        with pytest.raises(BrokerError) as caught:
            broker.pull(10, PULL_TIMEOUT_S)
        took_s = time.monotonic() - started
        message = str(caught.value)
        assert took_s < LIMIT_S, (took_s, message)
        assert f"Pub/Sub unreachable at {relay.host}" in message, message
        assert "\n" not in message
    finally:
        broker.close(timeout=2)
        publisher.close(timeout=2)
        relay.refuse()
