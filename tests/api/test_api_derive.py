"""`$derived` end to end, as wiring builds the parts: the collector derives every accepted event
(Segment and recipe routes) before it truncates the address; the worker derives an event
published directly to the broker; the raw event stored keeps it."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from api_helpers import WRITE, make_settings, recipe_event, run_worker
from fastapi.testclient import TestClient

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.dimensions import DERIVED
from behavioral_analytics.wiring import build_api, build_broker, build_store

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
GEO = version("iptocc")


def test_the_collector_publishes_derived_values(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    track = {
        "type": "track",
        "userId": "u1",
        "event": "Signed Up",
        "context": {"ip": "193.0.6.139", "userAgent": IPHONE, "library": {"name": "analytics.js"}},
    }
    recipe = recipe_event(1)
    recipe["properties"].update(ip="1.0.16.1", user_agent=ANDROID_TABLET)
    with TestClient(build_api(settings)) as client:
        assert client.post("/v1/track", json=track, headers=WRITE).status_code == 200
        assert client.post("/v1/events", json=[recipe], headers=WRITE).status_code == 202
    broker = build_broker(settings)
    try:
        sent = [json.loads(d.data)["properties"] for d in broker.pull(10, 0)]
    finally:
        broker.close()
    assert sent[0]["context"]["ip"] == "193.0.6.0"
    assert {k: v for k, v in sent[0][DERIVED].items() if k != "parsers"} == {
        "browser": "Mobile Safari",
        "os": "iOS",
        "device": "mobile",
        "country": "NL",
    }
    assert sent[0][DERIVED]["parsers"]["geo"] == GEO
    assert sent[1]["ip"] == "1.0.16.0"
    assert (sent[1][DERIVED]["device"], sent[1][DERIVED]["country"]) == ("tablet", "JP")


def test_the_worker_derives_a_direct_publish(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    broker, store = build_broker(settings), build_store(settings)
    try:
        broker.init()
        store.init()
        direct = recipe_event(1)
        direct["properties"].update(ip="8.8.8.8", user_agent=IPHONE)
        forged = recipe_event(2)
        forged["properties"].update(user_agent=IPHONE, **{DERIVED: {"country": "AQ"}})
        broker.publish([OutgoingMessage(json.dumps(e).encode()) for e in (direct, forged)])
        run_worker(broker, store, settings)
        stored = {e.event_id: e.properties for e in store.iter_raw_events()}
    finally:
        broker.close()
        store.close()
    first = stored["evt_000001"]
    assert first["ip"] == "8.8.8.0"
    assert (first[DERIVED]["browser"], first[DERIVED]["country"]) == ("Mobile Safari", "US")
    assert first[DERIVED]["parsers"]["geo"] == GEO
    assert "country" not in stored["evt_000002"][DERIVED]  # not of ingestion's shape: replaced
