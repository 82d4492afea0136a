"""A collector's `503 broker_unavailable` means what docs/api.md says: nothing was accepted.

The client library retried a publish that the broker had given up on for up to 600 s in the
background: a call answered 503 while Pub/Sub was unreachable was published once Pub/Sub was
back, and the client's retry of it (a Segment call without `messageId`, an item without
`event_id`: ids the collector makes afresh) was counted too, twice in all
(`brokers/pubsub_publish.py`). Here the publisher reaches the emulator through a `Relay`
(tests/gcp/helpers.py): a call is answered 503 while the relay refuses; after the restore, the
same call sent again is answered 200 within seconds (the channel reconnects within about a
second), and once a worker has taken everything, the event is counted once.

Why the old code fails here: when the collector answered 503, the library's future of that
publish was not done: it went on retrying (0.1 s growing by 4 up to 60 s, for 600 s).
`test_the_publisher_channel_reconnects_within_a_second` checks the channel's options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from google.auth.credentials import AnonymousCredentials
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from behavioral_analytics.api.app import create_app
from behavioral_analytics.brokers import pubsub_publish
from behavioral_analytics.grpc_channels import RECONNECT_OPTIONS
from behavioral_analytics.wiring import build_broker, worker_options
from behavioral_analytics.worker import Worker
from tests.emulators import Emulators

from .helpers import Relay

WRITE_KEY = "wk_publish_outage"
# Seconds after the restore within which a call is answered 200 again: the channel's next
# attempt (at most 1.2 s) and the library's next try (at most 1 s), with room for busy cores.
BOUND_S = 6.0
PATIENCE_S = 60.0

pytestmark = pytest.mark.timeout(240)


@dataclass
class Served:
    client: TestClient
    relay: Relay
    settings: Any
    futures: list[Any]  # of every message the collector's broker published


@pytest.fixture
def served(
    emulators: Emulators, settings_for: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    settings = settings_for(write_keys=WRITE_KEY, read_keys="rk_publish_outage")
    build_broker(settings).init()
    relay = Relay(emulators.pubsub_host)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)
    broker = build_broker(settings)
    futures: list[Any] = []
    publish = broker._publisher.publish  # type: ignore[attr-defined]  # a PubSubBroker's

    def kept(*args: Any, **kwargs: Any) -> Any:
        futures.append(publish(*args, **kwargs))
        return futures[-1]

    broker._publisher.publish = kept  # type: ignore[attr-defined]
    app = create_app(settings, broker, store)
    try:
        with TestClient(app, base_url="http://127.0.0.1:8080") as http:
            yield Served(http, relay, settings, futures)
    finally:
        relay.refuse()
        broker.close(timeout=2)


def _track(served: Served) -> Any:
    call = {"userId": "no-message-id", "event": "signed_up"}  # no messageId: a fresh id each
    return served.client.post("/v1/track", json=call, auth=(WRITE_KEY, ""))


def _drain(served: Served, store: Any) -> None:
    """Run a worker until the subscription has had nothing to deliver for a while."""
    broker = build_broker(served.settings)
    options = worker_options(served.settings, flush_interval_s=0.2)
    try:
        Worker(broker, store, options=options).run(threading.Event(), until_idle=True)
    finally:
        broker.close(timeout=2)


@pytest.mark.parametrize("cut", ["refuse", "hang"])
def test_a_call_answered_503_is_not_published_later(served: Served, store: Any, cut: str) -> None:
    """`refuse`: Pub/Sub refuses connections (a stopped host); `hang`: it answers nothing."""
    assert _track(served).status_code == 200  # the channel is up

    getattr(served.relay, cut)()
    refused = _track(served)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "broker_unavailable"
    # The library has given up too: nothing of it is left to go out once Pub/Sub is back.
    assert served.futures[-1].done(), "the publish answered 503 is still being retried"
    assert served.futures[-1].exception() is not None

    if cut == "hang":
        served.relay.refuse()  # its held connections closed, then forwarding again
    served.relay.restore()
    back = time.monotonic()
    while (answer := _track(served)).status_code != 200:  # the client's retry
        assert time.monotonic() - back < PATIENCE_S, answer.text
    took_s = time.monotonic() - back
    assert took_s < BOUND_S, f"answered 200 only {took_s:.1f} s after Pub/Sub answered again"

    _drain(served, store)
    profile = store.profile("no-message-id")
    assert profile is not None
    # The first call and the retry: the 503'd one was not published behind the client's back.
    assert profile.events_by_type == {"signed_up": 2}, profile


@pytest.mark.parametrize("emulator", [True, False], ids=["emulator", "pubsub"])
def test_the_publisher_channel_reconnects_within_a_second(
    emulator: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher's channel is made with the reconnection backoff (gRPC's default waited
    1 s growing by 1.6 up to 120 s after an outage), to the emulator or to Pub/Sub itself
    (no connection is made: gRPC connects on first use)."""
    made: list[list[tuple[str, Any]]] = []
    if emulator:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
        insecure = grpc.insecure_channel
        monkeypatch.setattr(
            pubsub_publish.grpc,
            "insecure_channel",
            lambda target, options: made.append(list(options)) or insecure(target, options),
        )
    else:
        monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
        create = PublisherGrpcTransport.create_channel

        def made_with(host: str, **kwargs: Any) -> Any:
            made.append(list(kwargs["options"]))
            return create(
                host,
                credentials=AnonymousCredentials(),
                **{k: v for k, v in kwargs.items() if k != "credentials"},
            )

        monkeypatch.setattr(PublisherGrpcTransport, "create_channel", made_with)
    client = pubsub_publish.publisher_client(ordering=False, wait_s=10.0)
    try:
        (options,) = made
        assert set(RECONNECT_OPTIONS) <= set(options)
        assert ("grpc.max_send_message_length", -1) in options
        assert client.publisher_options.timeout == 10.0
        assert client.publisher_options.retry._timeout == 9.0  # no attempt begun later
    finally:
        client.stop()
