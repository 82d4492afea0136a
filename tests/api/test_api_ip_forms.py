"""The collector truncates every form of an IP before publishing (issue #16, case 2;
docs/behavior.md, "Privacy"): host:port, `X-Forwarded-For` lists, bracketed IPv6 with a port,
IPv4-mapped IPv6; a value it cannot read is removed, never published in full."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_helpers import WRITE, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.broker import Broker
from behavioral_analytics.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_every_form_of_an_ip_is_truncated_by_the_collector(
    client: TestClient, broker: Broker
) -> None:
    track = {
        "type": "track",
        "userId": "u1",
        "event": "x",
        "properties": {"ip": "203.0.113.77:8443"},
        "context": {"ip": "203.0.113.77, 10.0.0.1"},
    }
    assert client.post("/v1/track", json=track, headers=WRITE).status_code == 200
    recipe = [
        recipe_event(1, properties={"ip": "[2001:db8:1:2::1]:443", "ip_address": "::ffff:1.2.3.4"}),
        recipe_event(2, properties={"ip": "unknown", "context.ip": "198.51.100.9:80"}),
    ]
    assert client.post("/v1/events", json=recipe, headers=WRITE).status_code == 202
    sent = [json.loads(d.data)["properties"] for d in broker.pull(10, 0)]
    assert sent[0]["ip"] == "203.0.113.0"
    assert sent[0]["context"]["ip"] == "203.0.113.0, 10.0.0.0"
    assert (sent[1]["ip"], sent[1]["ip_address"]) == ("2001:db8:1::", "1.2.3.0")
    assert "ip" not in sent[2] and sent[2]["context.ip"] == "198.51.100.0"
    assert "203.0.113.77" not in json.dumps(sent) and "unknown" not in json.dumps(sent)
