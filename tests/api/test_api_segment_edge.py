"""The collector's HTTP edge as Segment's and RudderStack's libraries meet it: analytics.js's short
paths and `text/plain` bodies, the answers the libraries count as success, the error shape they
read, CORS for retries, the write key in the body, the settings analytics.js loads, the caller's
address, clock-skew correction, lone surrogates and dead letters of retried requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_helpers import WRITE, WRITE_KEY, basic, make_settings, recipe_event, run_worker
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.store import Store

PLAIN = {"Content-Type": "text/plain"}
BROWSER_ADDRESS = ("198.51.100.7", 50123)
ORIGIN = "https://app.example.com"


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def published(broker: Broker) -> list[dict[str, Any]]:
    deliveries = broker.pull(1000, 0.5)
    broker.nack([d.ack_id for d in deliveries], "test peeked")
    return [json.loads(d.data) for d in deliveries]


def call(kind: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    """A call as analytics.js sends it to a short path: type, ids, times, context, writeKey."""
    body: dict[str, Any] = {
        "type": kind,
        "messageId": f"ajs-{kind}-{n}",
        "anonymousId": "anon-1",
        "userId": "user-1",
        "timestamp": iso(time.time() - 2),
        "sentAt": iso(time.time() - 1),
        "context": {"library": {"name": "analytics.js", "version": "npm:next-1.84.3"}},
        "writeKey": WRITE_KEY,
        "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
    }
    body.update(
        {
            "track": {"event": "Signed Up", "properties": {"plan": "pro"}},
            "page": {"name": "Pricing", "category": "Docs", "properties": {"url": "/pricing"}},
            "screen": {"name": "Home"},
            "identify": {"traits": {"email": "a@b.test"}},
            "alias": {"previousId": "anon-1"},
            "group": {"groupId": "acme", "traits": {"plan": "b2b"}},
        }[kind]
    )
    body.update(fields)
    return body


@pytest.fixture
def browser(tmp_path: Path, broker: Broker, store: Store) -> Iterator[TestClient]:
    """A client at a known address, with CORS for ORIGIN and addresses kept whole."""
    settings = make_settings(tmp_path, cors_origins=ORIGIN, truncate_ips=False)
    app = create_app(settings, broker, store, cache_ttl_s=0)
    with TestClient(app, client=BROWSER_ADDRESS) as client:
        yield client


# -- paths and bodies ---------------------------------------------------------------------------


SHORT = {"t": "track", "p": "page", "i": "identify", "s": "screen", "a": "alias", "g": "group"}


@pytest.mark.parametrize("prefix", ["", "/v1"])
@pytest.mark.parametrize("short", sorted(SHORT))
def test_analytics_js_short_paths_take_text_plain_bodies(
    client: TestClient, broker: Broker, prefix: str, short: str
) -> None:
    kind = SHORT[short]
    body = json.dumps(call(kind))
    response = client.post(f"{prefix}/{short}", content=body, headers={**basic(WRITE_KEY), **PLAIN})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": [f"ajs-{kind}-1"], "rejected": []}
    (event,) = published(broker)
    assert event["event_id"] == f"ajs-{kind}-1"
    assert "writeKey" not in json.dumps(event)


@pytest.mark.parametrize("path", ["/b", "/v1/b", "/v1/batch", "/v1/import"])
def test_batches_on_every_batch_path(client: TestClient, broker: Broker, path: str) -> None:
    calls = [call(kind, 1) for kind in SHORT.values()]
    for message in calls:
        del message["sentAt"]  # analytics.js's batching mode sends one sentAt for the batch
    body = json.dumps({"writeKey": WRITE_KEY, "batch": calls, "sentAt": iso(time.time())})
    response = client.post(path, content=body, headers={**basic(WRITE_KEY), **PLAIN})
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) == len(SHORT)
    assert sorted(e["event_type"] for e in published(broker)) == sorted(
        ["Signed Up", "page_view", "identify", "screen_view", "alias", "group"]
    )


def test_a_scripted_session_is_stored_alias_and_group_included(
    client: TestClient, store: Store, process: Callable[[], None]
) -> None:
    for short, kind in SHORT.items():
        response = client.post(f"/v1/{short}", content=json.dumps(call(kind)), headers=PLAIN)
        assert response.status_code == 200, response.text
    process()
    types = sorted(i.event.event_type for i in store.timeline("user-1").items)
    assert types == ["Signed Up", "alias", "group", "identify", "page_view", "screen_view"]
    assert store.dead_letters(10).items == []


# -- answers ------------------------------------------------------------------------------------


def test_segment_routes_answer_200_even_when_every_event_is_rejected(
    client: TestClient, store: Store
) -> None:
    response = client.post("/v1/track", json={"userId": "u-1"}, headers=WRITE)
    assert response.status_code == 200
    assert response.json()["rejected"][0]["reason"] == "missing_field:event"
    assert store.count_dead_letters() == 1


def test_the_recipe_route_answers_400_with_code_and_message_when_nothing_is_accepted(
    client: TestClient,
) -> None:
    response = client.post("/v1/events", json=[{"user_id": "u"}], headers=WRITE)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["code"]) == ("rejected", "rejected")
    assert body["message"] == body["detail"] and body["message"]
    assert body["rejected"][0]["reason"] == "missing_field:event_type"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("post", "/v1/track", b'{"userId": "u"}', {}, 401),
        ("post", "/v1/batch", b"{not json", WRITE, 400),
        ("post", "/v1/batch", b'{"batch": 5}', WRITE, 400),
        ("post", "/v1/nowhere", b"{}", WRITE, 404),
        ("get", "/v1/batch", None, {}, 405),
        ("get", "/v1/series?granularity=week", None, {"X-Read-Key": "rk_test_91c2"}, 422),
    ],
)
def test_every_error_body_carries_code_and_message(
    client: TestClient,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    answer = response.json()
    assert answer["code"] == answer["error"] and answer["code"]
    assert answer["message"] == answer["detail"]


def test_a_retry_of_a_rejected_call_is_one_dead_letter(client: TestClient, store: Store) -> None:
    """analytics.js and the Python libraries retry with a new sentAt (and _metadata)."""
    bad = call("track", event=None)
    for n in range(3):
        retry = {**bad, "sentAt": iso(time.time() + n), "_metadata": {"retry": n}}
        response = client.post("/v1/t", content=json.dumps(retry), headers=PLAIN)
        assert response.status_code == 200
        assert response.json()["rejected"][0]["reason"] == "missing_field:event"
    (letter,) = store.dead_letters(10).items
    assert b"writeKey" not in letter.data
    assert json.loads(letter.data)["messageId"] == "ajs-track-1"


# -- the write key ------------------------------------------------------------------------------


def test_the_write_key_may_come_in_the_body_only(client: TestClient, broker: Broker) -> None:
    response = client.post("/v1/t", content=json.dumps(call("track")), headers=PLAIN)
    assert response.status_code == 200, response.text
    batch = {"writeKey": WRITE_KEY, "batch": [call("page")]}
    del batch["batch"][0]["writeKey"]
    assert client.post("/b", content=json.dumps(batch), headers=PLAIN).status_code == 200
    assert len(published(broker)) == 2
    wrong = call("track", writeKey="nope")
    refused = client.post("/v1/t", content=json.dumps(wrong), headers=PLAIN)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"


def test_analytics_js_loads_its_settings_from_the_collector(client: TestClient) -> None:
    response = client.get(f"/v1/projects/{WRITE_KEY}/settings")
    assert response.status_code == 200
    segment = response.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == WRITE_KEY
    assert segment["apiHost"] == "testserver/v1"
    assert segment["protocol"] == "http"
    assert response.json()["metrics"]["sampleRate"] == 0
    # Behind Cloud Run's front end, which ends TLS: the page is on https, so are its events.
    behind = client.get(
        f"/v1/projects/{WRITE_KEY}/settings", headers={"X-Forwarded-Proto": "https, http"}
    )
    assert behind.json()["integrations"]["Segment.io"]["protocol"] == "https"
    unknown = client.get("/v1/projects/nope/settings")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown_write_key"


# -- CORS ---------------------------------------------------------------------------------------


def test_a_browser_may_retry_with_x_retry_count_and_read_retry_after(
    browser: TestClient,
) -> None:
    preflight = browser.options(
        "/v1/b",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "x-retry-count" in allowed
    response = browser.post(
        "/v1/t",
        content=json.dumps(call("track")),
        headers={**PLAIN, "Origin": ORIGIN, "X-Retry-Count": "1"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    other = browser.options(
        "/v1/b",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-retry-count",
        },
    )
    assert "access-control-allow-origin" not in other.headers


# -- the caller's address -----------------------------------------------------------------------


def test_a_browser_call_gets_the_connection_address(browser: TestClient, broker: Broker) -> None:
    plain = call("track", context={})
    browser.post("/v1/t", content=json.dumps(plain), headers={**PLAIN, "Origin": ORIGIN})
    library = call("track", 2)  # analytics.js's context.library, no Origin (a webview, say)
    browser.post("/v1/t", content=json.dumps(library), headers=PLAIN)
    server = call("track", 3, context={"library": {"name": "analytics-python"}})
    browser.post("/v1/t", content=json.dumps(server), headers={**PLAIN, **basic(WRITE_KEY)})
    spoofed = call("track", 4, context={"library": {"name": "analytics-python"}})
    browser.post(
        "/v1/t",
        content=json.dumps(spoofed),
        headers={**PLAIN, "Origin": ORIGIN, "X-Forwarded-For": "203.0.113.99"},
    )
    ips = {e["event_id"]: e["properties"]["context"].get("ip") for e in published(broker)}
    assert ips == {
        "ajs-track-1": "198.51.100.7",
        "ajs-track-2": "198.51.100.7",
        "ajs-track-3": None,
        "ajs-track-4": "198.51.100.7",  # X-Forwarded-For is not trusted by default
    }


def test_x_forwarded_for_is_read_only_through_the_configured_proxies(
    tmp_path: Path, broker: Broker, store: Store
) -> None:
    settings = make_settings(tmp_path, trusted_proxy_hops=1, truncate_ips=True)
    app = create_app(settings, broker, store)
    with TestClient(app, client=("169.254.1.1", 443)) as client:
        headers = {**PLAIN, "Origin": ORIGIN, "X-Forwarded-For": "10.9.9.9, 203.0.113.99"}
        client.post("/v1/t", content=json.dumps(call("track")), headers=headers)
    (event,) = published(broker)
    assert event["properties"]["context"]["ip"] == "203.0.113.0"  # the caller's, truncated


# -- the cases --------------------------------------------------------------------------


def test_a_device_clock_two_hours_ahead_is_corrected(
    client: TestClient, store: Store, process: Callable[[], None]
) -> None:
    now = time.time()
    ahead = 7200
    first = {
        "messageId": "skew-1",
        "userId": "u-1",
        "event": "Skewed Clock",
        "properties": {"k": 1},
        "timestamp": iso(now - 60 + ahead),
        "sentAt": iso(now + ahead),
    }
    response = client.post("/v1/track", json=first, headers=WRITE)
    assert response.json() == {"accepted": ["skew-1"], "rejected": []}
    retry = {**first, "sentAt": iso(now + ahead + 30)}  # a retry, 30 s later on the device
    again = client.post("/v1/batch", json={"batch": [{**retry, "type": "track"}]}, headers=WRITE)
    assert again.json() == {"accepted": ["skew-1"], "rejected": []}
    process()
    (item,) = store.timeline("u-1").items
    assert abs(item.event.timestamp - (now - 60)) < 5
    assert item.event.properties["client_time"]["timestamp"] == first["timestamp"]
    assert item.event.properties["k"] == 1


def test_a_device_clock_ten_minutes_behind_is_stored_at_the_right_time(
    client: TestClient, broker: Broker
) -> None:
    now = time.time()
    behind = {
        "userId": "u-1",
        "event": "Late Clock",
        "originalTimestamp": iso(now - 600 - 5),
        "sentAt": iso(now - 600),
    }
    client.post("/v1/track", json=behind, headers=WRITE)
    (event,) = published(broker)
    assert abs(event["timestamp"] - (now - 5)) < 3


def test_page_category_from_the_python_libraries_is_kept(
    client: TestClient, broker: Broker
) -> None:
    page = {"userId": "user-1", "name": "Getting Started", "category": "Docs", "properties": {}}
    client.post("/v1/page", json=page, headers=basic(WRITE_KEY))
    (event,) = published(broker)
    assert event["properties"]["name"] == "Getting Started"
    assert event["properties"]["category"] == "Docs"


@pytest.mark.parametrize(
    "text",
    ["Dev \U0001f469\u200d\U0001f4bb Login", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"],
)
def test_names_and_ids_with_joiners_are_accepted(
    client: TestClient, broker: Broker, text: str
) -> None:
    response = client.post("/v1/track", json={"userId": text, "event": text}, headers=WRITE)
    assert response.json()["rejected"] == []
    (event,) = published(broker)
    assert (event["user_id"], event["event_type"]) == (text, text)


def test_rudderstacks_empty_user_id_is_an_anonymous_visitor(
    client: TestClient, broker: Broker
) -> None:
    body = {"userId": "", "anonymousId": "anon-9", "event": "Viewed", "messageId": "r-1"}
    response = client.post("/v1/track", json=body, headers=WRITE)
    assert response.json() == {"accepted": ["r-1"], "rejected": []}
    (event,) = published(broker)
    assert (event["user_id"], event["anonymous_id"]) == (None, "anon-9")


def test_a_lone_surrogate_affects_only_its_own_event(
    client: TestClient, broker: Broker, store: Store
) -> None:
    stamp = iso(time.time() - 1)
    calls = [
        f'{{"type":"track","messageId":"ok","userId":"u","event":"Search","timestamp":"{stamp}"}}',
        '{"type":"track","messageId":"cut","userId":"u","event":"Search",'
        '"properties":{"q":"burger \\ud83c"}}',
        '{"type":"track","messageId":"bad","userId":"u \\ud83c","event":"Search"}',
    ]
    body = '{"batch":[' + ",".join(calls) + "]}"
    response = client.post("/v1/batch", content=body, headers={**WRITE, **PLAIN})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == ["ok", "cut"]
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (2, "invalid_characters:user_id")
    ]
    events = {e["event_id"]: e for e in published(broker)}
    assert events["cut"]["properties"]["q"] == "burger \ufffd"
    (letter,) = store.dead_letters(10).items
    assert b'"userId":"u \\ud83c"' in letter.data


def test_recipe_events_with_an_empty_user_id_and_an_anonymous_id_are_accepted(
    client: TestClient, broker: Broker, store: Store, settings: Any
) -> None:
    event = recipe_event(1, user="", anonymous_id="anon-3")
    response = client.post("/v1/events", json=event, headers=WRITE)
    assert response.status_code == 202, response.text
    run_worker(broker, store, settings)
    assert len(store.timeline("anonymous:anon-3").items) == 1


def test_a_non_finite_number_is_kept_in_its_dead_letter_as_sent(
    client: TestClient, store: Store
) -> None:
    """A lenient reader takes `NaN` and `1e400`; written back as `null` they made a dead letter
    whose replay the worker would take, changed (helper trial: `properties.x: nan`, data
    `"x":null`)."""
    calls = [
        '{"type":"track","messageId":"n","userId":"u","event":"E","properties":{"x":NaN}}',
        '{"type":"track","messageId":"i","userId":"u","event":"E","properties":{"x":1e400}}',
        '{"type":"track","messageId":"b","userId":"u","event":"E",'
        '"properties":{"x":123456789012345678901234567890,"y":[[1]]}}',
    ]
    body = '{"batch":[' + ",".join(calls) + "]}"
    response = client.post("/v1/batch", content=body, headers={**WRITE, **PLAIN})
    assert response.status_code == 200, response.text
    assert len(response.json()["rejected"]) == 3
    data = {d.message_id: d.data for d in store.dead_letters(10).items}
    assert b'"x":NaN' in data["n"]
    assert b'"x":Infinity' in data["i"]
    assert b'"x":123456789012345678901234567890' in data["b"]


def test_an_integer_too_long_to_convert_rejects_its_event_alone_and_is_kept_whole(
    client: TestClient, broker: Broker, store: Store
) -> None:
    """Past 4,300 digits Python's `int` refuses the literal: the whole request was `not_json`,
    its good batch-mates lost with it."""
    digits = "9" * 5000
    calls = [
        '{"type":"track","messageId":"ok","userId":"u","event":"E"}',
        '{"type":"track","messageId":"long","userId":"u","event":"E",'
        f'"properties":{{"x":-{digits},"q":"\\u0000long-integer-0"}}}}',
    ]
    body = '{"batch":[' + ",".join(calls) + "]}"
    response = client.post("/v1/batch", content=body, headers={**WRITE, **PLAIN})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == ["ok"]
    (rejected,) = answer["rejected"]
    assert rejected["reason"] == "invalid_number"
    assert "properties.x" in rejected["detail"]
    assert [e["event_id"] for e in published(broker)] == ["ok"]
    (letter,) = store.dead_letters(10).items
    assert f'"x":-{digits},'.encode() in letter.data
    assert b'"q":"\\u0000long-integer-0"' in letter.data
    again = client.post("/v1/batch", content=body, headers={**WRITE, **PLAIN})
    assert again.status_code == 200, again.text
    assert len(store.dead_letters(10).items) == 1  # a retry is the same dead letter


def test_a_user_id_spelled_as_a_visitors_is_refused_not_merged_with_them(
    client: TestClient, broker: Broker, store: Store, settings: Any
) -> None:
    """`userId: "anonymous:zz"` was counted as the anonymous visitor `zz` (one profile, one
    unique user), and `forget anonymous:zz` deleted the user's events with the visitor's."""
    calls = [
        {"type": "track", "messageId": "v", "anonymousId": "zz", "event": "E"},
        {"type": "track", "messageId": "u", "userId": "anonymous:zz", "event": "E"},
    ]
    response = client.post("/v1/batch", json={"batch": calls}, headers=WRITE)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == ["v"]
    (rejected,) = answer["rejected"]
    assert rejected["reason"] == "invalid_value:user_id"
    assert rejected["detail"].startswith("userId: may not start with 'anonymous:'")
    run_worker(broker, store, settings)
    assert len(store.timeline("anonymous:zz").items) == 1


def test_odd_calls_beside_a_good_one_are_rejected_alone_and_kept(
    client: TestClient, broker: Broker, store: Store
) -> None:
    """A week-old call holding an integer too long to convert (its kept event cannot be
    made: its letter keeps the call as sent, digits whole), and a call nested deeper than a
    walk in Python goes: each was a 500 for the whole batch in a first version."""
    week_ago = iso(time.time() - 8 * 86400)
    digits = "5" * 5000
    old = (
        '{"type":"track","messageId":"old","userId":"u","event":"E",'
        f'"timestamp":"{week_ago}","properties":{{"n":{digits}}}}}'
    )
    deep = (
        '{"type":"track","messageId":"deep","userId":"u","event":"E","properties":'
        + '{"a":' * 600
        + "1"
        + "}" * 600
        + "}"
    )
    for odd, reason in ((old, "timestamp_too_old"), (deep, "too_deep")):
        good = f'{{"type":"track","messageId":"good-{reason}","userId":"u","event":"E"}}'
        body = '{"batch":[' + odd + "," + good + "]}"
        response = client.post("/v1/batch", content=body, headers={**WRITE, **PLAIN})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["accepted"] == [f"good-{reason}"]
        assert [r["reason"] for r in answer["rejected"]] == [reason]
    letters = {d.message_id: d for d in store.dead_letters(10).items}
    assert set(letters) == {"old", "deep"}
    assert letters["old"].attributes == {}  # the call as sent
    assert f'"n":{digits}'.encode() in letters["old"].data
