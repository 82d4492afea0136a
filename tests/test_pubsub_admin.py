"""`init` on Pub/Sub resources that exist already: what it sets on them. The emulator refuses
to update an expiration policy, so a fake client stands in for the service here."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as gexc

from behavioral_analytics.brokers.pubsub import PubSubBroker


class _Existing:
    """Topics and subscriptions that all exist: each update a subscription gets is kept."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, list[str], Any]] = []

    def create_topic(self, **_: Any) -> None:
        raise gexc.AlreadyExists("exists")

    def create_subscription(self, **_: Any) -> None:
        raise gexc.AlreadyExists("exists")

    def update_subscription(self, *, request: dict[str, Any], **_: Any) -> None:
        fields = request["subscription"]
        self.updates.append((fields["name"], sorted(request["update_mask"].paths), fields))


def test_init_sets_never_expire_on_the_subscriptions_it_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An earlier `init` made them without an expiration policy: Pub/Sub deletes a
    subscription idle for 31 days, a dead-letter subscription nobody pulls first."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    client = _Existing()
    broker = PubSubBroker("p", publisher=client, subscriber=client)
    lines = broker.init()
    expiring = {name for name, paths, _ in client.updates if paths == ["expiration_policy"]}
    assert expiring == {broker.subscription, broker.dead_letter_subscription}
    for _, paths, fields in client.updates:
        if paths == ["expiration_policy"]:
            assert "ttl" not in fields["expiration_policy"]
    settings = [paths for name, paths, _ in client.updates if name == broker.subscription]
    assert [
        "ack_deadline_seconds",
        "dead_letter_policy",
        "message_retention_duration",
        "retry_policy",
    ] in settings
    assert sum("updated its deadline" in line for line in lines) == 2


def test_init_on_the_emulator_leaves_the_expiration_policy_of_what_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The emulator refuses the update ("currently unsupported"), which left every other
    setting of an existing subscription as it was."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    client = _Existing()
    broker = PubSubBroker("p", publisher=client, subscriber=client)
    broker.init()
    assert client.updates
    assert all("expiration_policy" not in paths for _, paths, _ in client.updates)
