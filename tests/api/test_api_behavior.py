"""The behavioral routes: sessions, funnels, identity links, read key required."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import READ, WRITE, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.broker import Broker
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.settings import Settings

FUNNEL = ("page_view", "search", "add_to_cart", "purchase")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, funnels=PURCHASE_FUNNEL)


def test_sessions_funnel_and_links_are_served(
    client: TestClient, process: Callable[[], None]
) -> None:
    now = time.time() - 600
    events = [
        recipe_event(
            i, user=f"user_{u}", event_type=kind, timestamp=now + 10 * i, session_id=f"s{u}"
        )
        for u in range(3)
        for i, kind in enumerate(FUNNEL[: u + 2])
    ]
    events.append(
        recipe_event(
            50,
            user="user_0",
            event_type="identify",
            anonymous_id="anon-9",
            timestamp=now + 99,
            session_id="s0",
        )
    )
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()

    assert client.get("/v1/sessions").status_code == 401
    body = client.get("/v1/sessions", params={"granularity": "day"}, headers=READ).json()
    [point] = body["points"]
    assert point["sessions"] == 3 and point["final"] is False
    assert point["events_per_session"] == round(len(events) / 3, 3)
    assert set(body["freshness"]) >= {"newest_event_at", "lag_s"}

    listed = client.get("/v1/funnels", headers=READ).json()["funnels"]
    assert [f["name"] for f in listed] == ["purchase"]
    funnel = client.get("/v1/funnels/purchase", headers=READ).json()
    [day] = funnel["days"]
    assert day["users"] == [3, 3, 2, 1]
    assert day["conversion"] == [1.0, 0.6667, 0.5]
    assert client.get("/v1/funnels/nope", headers=READ).status_code == 404

    links = client.get("/v1/users/user_0/links", headers=READ).json()["links"]
    assert [(link["anonymous_id"], link["status"]) for link in links] == [("anon-9", "active")]
    bad = client.get(
        "/v1/sessions", params={"from": "2026-12-02", "to": "2026-12-01"}, headers=READ
    )
    assert bad.status_code == 400


def test_the_collector_truncates_ip_addresses_before_publishing(
    client: TestClient, broker: Broker
) -> None:
    ip = {"ip": "203.0.113.77"}
    fast = {"batch": [{"type": "track", "userId": "u1", "event": "x", "context": ip}]}
    slow = [recipe_event(1, properties={"ip": "2001:db8:1234:5678::1"}), {"bad": True}]
    assert client.post("/v1/batch", json=fast, headers=WRITE).status_code == 200
    assert client.post("/v1/events", json=slow, headers=WRITE).status_code == 202
    sent = [json.loads(d.data) for d in broker.pull(10, 0)]
    assert [p["properties"].get("context", p["properties"]).get("ip") for p in sent] == [
        "203.0.113.0",
        "2001:db8:1234::",
    ]
