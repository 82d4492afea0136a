"""A call whose own properties have a `context` (or a `client_time`) keeps them and its call's
context too: `$context` (and `$client_time`) hold the call's, and everything read from the
context (page, referrer, campaign, browser, device, country, the address's truncation, hashed
fields) reads it there. Before, such a call lost its context: every breakdown value `(none)`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from api_helpers import WRITE, make_settings, run_worker
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.dimensions import dimension_values
from behavioral_analytics.store import Store

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
DIMENSIONS = ("page", "referrer", "utm_source", "utm_campaign", "browser", "device", "country")


def _track(message_id: str, properties: dict[str, object]) -> dict[str, object]:
    return {
        "type": "track",
        "messageId": message_id,
        "userId": "kim",
        "event": "Clicked CTA",
        "properties": properties,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5)),
        "sentAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4)),
        "context": {
            "ip": "81.2.69.160",
            "userAgent": CHROME,
            "page": {"url": "https://shop.example/pricing", "referrer": "https://l.facebook.com/"},
            "campaign": {"source": "newsletter", "name": "winter"},
            "traits": {"email": "kim@example.test"},
        },
    }


def test_a_property_named_context_keeps_the_calls_context_beside_it(
    tmp_path: Path, broker: Broker, store: Store
) -> None:
    settings = make_settings(
        tmp_path, hashed_fields="context.traits.email", hash_salt="a salt of 16+ characters"
    )
    plain = _track("plain", {"plan": "pro"})
    own = _track("own", {"context": "pricing_table", "client_time": "morning", "plan": "pro"})
    with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as client:
        answer = client.post("/v1/batch", json={"batch": [plain, own]}, headers=WRITE)
    assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text
    run_worker(broker, store, settings)

    stored = {e.event.event_id: e.event for e in store.timeline("kim", limit=10).items}
    kept = stored["own"].properties
    assert kept["context"] == "pricing_table" and kept["client_time"] == "morning"
    moved = kept["$context"]
    assert moved["ip"] == "81.2.69.0"  # truncated where it was moved to
    assert moved["traits"]["email"] != "kim@example.test"  # hashed there too
    assert moved["traits"]["email"] == stored["plain"].properties["context"]["traits"]["email"]
    assert set(kept["$client_time"]) == {"timestamp", "sentAt"}
    values = dimension_values(stored["own"], DIMENSIONS)
    assert values == dimension_values(stored["plain"], DIMENSIONS)
    assert values == {
        "page": "/pricing",
        "referrer": "l.facebook.com",
        "utm_source": "newsletter",
        "utm_campaign": "winter",
        "browser": "Chrome",
        "device": "desktop",
        "country": "GB",
    }
    assert json.loads(json.dumps(kept))  # stored as JSON like any property
