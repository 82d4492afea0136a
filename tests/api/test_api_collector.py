"""The collector over HTTP: keys, limits, per-event results, dead letters, exactly once."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import READ, READ_KEY, WRITE, WRITE_KEY, basic, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.api.bodies import MAX_GZIP_MEMBERS
from behavioral_analytics.broker import Broker, BrokerError, OutgoingMessage
from behavioral_analytics.settings import ConfigError, Settings
from behavioral_analytics.store import Store
from behavioral_analytics.wiring import build_api

TRACK = {"type": "track", "userId": "u1", "event": "Signed Up"}


def published(broker: Broker) -> list[dict[str, Any]]:
    deliveries = broker.pull(1000, 0.5)
    broker.nack([d.ack_id for d in deliveries], "test peeked")
    return [json.loads(d.data) for d in deliveries]


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/events", "/v1/track", "/v1/page", "/v1/identify", "/v1/batch"]
)
def test_ingest_without_a_write_key_is_401(client: TestClient, path: str) -> None:
    response = client.post(path, json=recipe_event())
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Write-Key": "nope"},
        basic("nope"),
        {"Authorization": "Bearer nope"},
        READ,
        basic(READ_KEY),
    ],
)
def test_wrong_or_read_keys_cannot_write(client: TestClient, headers: dict[str, str]) -> None:
    assert client.post("/v1/events", json=recipe_event(), headers=headers).status_code == 401


@pytest.mark.parametrize(
    "headers", [WRITE, basic(WRITE_KEY), {"Authorization": f"Bearer {WRITE_KEY}"}]
)
def test_every_way_of_presenting_the_write_key_works(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/v1/events", json=recipe_event(), headers=headers)
    assert response.status_code == 202, response.text


def test_query_routes_need_a_read_key(client: TestClient) -> None:
    for path in ["/v1/profiles/user_1", "/v1/events?type=x", "/v1/dashboard", "/metrics"]:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=WRITE).status_code == 401, path
        assert client.get(path, headers={"X-Read-Key": READ_KEY}).status_code != 401, path


def test_answers_with_data_are_kept_by_no_cache(client: TestClient) -> None:
    for path in ["/v1/profiles/user_1", "/v1/series?granularity=day", "/metrics"]:
        for method in ("GET", "HEAD"):
            answer = client.request(method, path, headers=READ)
            assert answer.headers["cache-control"] == "no-store", (method, path)
    assert client.get("/v1/projects/any/settings").headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/static/dashboard.js").headers.get("cache-control", "")


def test_without_keys_the_api_refuses_to_start_off_loopback(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, write_keys="", read_keys="", api_host="0.0.0.0")
    with pytest.raises(ConfigError, match="BA_WRITE_KEYS and BA_READ_KEYS"):
        build_api(settings)


def test_without_keys_on_loopback_the_api_is_open(
    tmp_path: Any, broker: Broker, store: Store, process: Callable[[], None]
) -> None:
    settings = make_settings(tmp_path, write_keys="", read_keys="", api_host="::1")
    app = create_app(settings, broker, store, cache_ttl_s=0)
    with TestClient(app, base_url=f"http://[::1]:{settings.api_port}") as client:
        assert client.post("/v1/events", json=recipe_event()).status_code == 202
        process()
        assert client.get("/v1/profiles/user_1").json()["profile"]["total_events"] == 1


# -- limits -------------------------------------------------------------------------------------


def test_an_event_over_32_kb_is_413(client: TestClient) -> None:
    event = recipe_event(properties={"blob": "x" * 33_000})
    for path, body in [
        ("/v1/events", event),
        ("/v1/track", {"userId": "u", "event": "e", "properties": event["properties"]}),
    ]:
        response = client.post(path, json=body, headers=WRITE)
        assert response.status_code == 413, path
        assert response.json()["error"] == "too_large"


def test_a_request_over_500_kb_is_413(client: TestClient, broker: Broker) -> None:
    events = [recipe_event(i, properties={"pad": "y" * 20_000}) for i in range(30)]
    response = client.post("/v1/events", json=events, headers=WRITE)
    assert response.status_code == 413
    assert published(broker) == []


def test_a_gzip_bomb_is_413(client: TestClient) -> None:
    body = gzip.compress(json.dumps([recipe_event(properties={"pad": " " * 600_000})]).encode())
    assert len(body) < 10_000
    headers = {**WRITE, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert client.post("/v1/events", content=body, headers=headers).status_code == 413


def test_a_gzip_body_of_too_many_members_is_400(client: TestClient) -> None:
    headers = {**WRITE, "Content-Encoding": "gzip"}
    event = json.dumps(recipe_event()).encode()
    several = gzip.compress(event) + gzip.compress(b"") * (MAX_GZIP_MEMBERS - 1)
    assert client.post("/v1/events", content=several, headers=headers).status_code == 202
    many = gzip.compress(b"") * 25_000
    refused = client.post("/v1/events", content=many, headers=headers)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_gzip"
    assert refused.json()["detail"] == f"the gzip body has over {MAX_GZIP_MEMBERS} members"


def test_gzip_bodies_are_accepted(client: TestClient) -> None:
    body = gzip.compress(json.dumps([recipe_event(1), recipe_event(2)]).encode())
    headers = {**WRITE, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 202
    assert response.json()["accepted"] == ["evt_000001", "evt_000002"]


def test_an_event_over_32_kb_inside_a_batch_is_rejected_alone(client: TestClient) -> None:
    big = {f"p{i}": "x" * 7000 for i in range(5)}
    batch = [recipe_event(1), recipe_event(2, properties=big)]
    response = client.post("/v1/events", json=batch, headers=WRITE)
    assert response.status_code == 202
    assert response.json()["rejected"][0]["reason"] == "too_large"


def test_the_rate_limit_answers_429_with_retry_after(
    tmp_path: Any, broker: Broker, store: Store
) -> None:
    settings = make_settings(tmp_path, rate_limit=5)
    with TestClient(create_app(settings, broker, store)) as client:
        first = client.post("/v1/events", json=[recipe_event(i) for i in range(20)], headers=WRITE)
        assert first.status_code == 202  # the bucket had tokens: the batch goes into debt
        second = client.post("/v1/events", json=recipe_event(99), headers=WRITE)
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) >= 3
        assert second.json()["error"] == "rate_limited"


def test_a_client_flooding_a_write_key_slows_only_itself(
    tmp_path: Any, broker: Broker, store: Store
) -> None:
    """A browser's write key ships in every page: one client sending a large batch of events
    that are all refused puts its own bucket in debt, not the key's other clients'."""
    settings = make_settings(tmp_path, rate_limit=5, trusted_proxy_hops=1)
    flood = {"batch": [{"type": "track"}] * 200}
    with TestClient(create_app(settings, broker, store)) as client:

        def send(address: str, body: Any) -> int:
            forwarded = {**WRITE, "X-Forwarded-For": address}
            return client.post("/v1/batch", json=body, headers=forwarded).status_code

        assert send("203.0.113.7", flood) == 200  # every call refused, and charged
        assert send("203.0.113.7", {"batch": [TRACK]}) == 429
        assert send("198.51.100.8", {"batch": [TRACK]}) == 200


# -- per-event results --------------------------------------------------------------------------


def test_nothing_valid_is_400_listing_each_reason(
    client: TestClient, store: Store, broker: Broker
) -> None:
    now = time.time()
    batch = [
        {"event_type": "page_view", "timestamp": now},
        {"user_id": "u1", "event_type": "page_view", "timestamp": now + 86400 * 3},
        "not an object",
        {"user_id": "u1", "event_id": "e4", "timestamp": now},
    ]
    response = client.post("/v1/events", json=batch, headers=WRITE)
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == []
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (0, "missing_field:user_id"),
        (1, "timestamp_in_future"),
        (2, "not_an_object"),
        (3, "missing_field:event_type"),
    ]
    assert body["rejected"][3]["event_id"] == "e4"
    assert published(broker) == []
    letters = store.dead_letters(10).items
    assert {letter.source for letter in letters} == {"collector"}
    assert sorted(letter.reason for letter in letters) == sorted(
        r["reason"] for r in body["rejected"]
    )
    assert any(json.loads(letter.data) == "not an object" for letter in letters)


def test_a_partly_bad_batch_is_accepted_in_part(
    client: TestClient, store: Store, broker: Broker, process: Callable[[], None]
) -> None:
    batch = [recipe_event(1), {"user_id": "u"}, recipe_event(3, event_type="purchase")]
    response = client.post("/v1/events", json=batch, headers=WRITE)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == ["evt_000001", "evt_000003"]
    assert body["rejected"] == [
        {
            "index": 1,
            "event_id": None,
            "reason": "missing_field:event_type",
            "detail": "event_type is required: the event's name",
        }
    ]
    assert store.count_dead_letters() == 1
    process()
    profile = store.profile("user_1")
    assert profile is not None
    assert profile.total_events == 2


def test_ids_and_received_at_are_assigned_before_publishing(
    client: TestClient, broker: Broker
) -> None:
    event = recipe_event()
    del event["event_id"]
    before = time.time()
    response = client.post("/v1/events", json=event, headers=WRITE)
    assert response.status_code == 202
    (event_id,) = response.json()["accepted"]
    assert len(event_id) == 32
    (message,) = published(broker)
    assert message["event_id"] == event_id
    assert before <= message["received_at"] <= time.time()
    assert message["properties"] == event["properties"]


def test_the_same_message_id_twice_is_one_event_end_to_end(
    client: TestClient, store: Store, process: Callable[[], None]
) -> None:
    track = {
        "messageId": "msg-7d1e",
        "userId": "team/alice",
        "event": "checkout.step_2",
        "timestamp": "2026-01-01T00:00:00Z",
        "properties": {"amount": 12.5},
    }
    track["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    for _ in range(2):
        response = client.post("/v1/track", json=track, headers=WRITE)
        assert response.status_code == 200
        assert response.json()["accepted"] == ["msg-7d1e"]
    batch = {"batch": [{**track, "type": "track"}]}
    assert client.post("/v1/batch", json=batch, headers=basic(WRITE_KEY)).status_code == 200
    process()
    profile = client.get("/v1/profiles/team/alice", headers=READ).json()["profile"]
    assert profile["total_events"] == 1
    assert profile["events_by_type"] == {"checkout.step_2": 1}


def test_segment_calls_are_normalized(
    client: TestClient, store: Store, process: Callable[[], None]
) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    context = {"library": {"name": "analytics.js"}}
    batch = {
        "context": context,
        "batch": [
            {
                "type": "page",
                "messageId": "p1",
                "anonymousId": "anon-1",
                "name": "Home",
                "timestamp": stamp,
                "properties": {"url": "https://example.com/"},
            },
            {
                "type": "identify",
                "messageId": "i1",
                "userId": "u9",
                "timestamp": stamp,
                "traits": {"plan": "pro"},
            },
            {"type": "group", "messageId": "g1", "userId": "u9"},
        ],
    }
    response = client.post("/v1/batch", json=batch, headers=WRITE)
    assert response.status_code == 200
    # group calls are published; the worker refuses one without a groupId (named_calls).
    assert response.json() == {"accepted": ["p1", "i1", "g1"], "rejected": []}
    process()
    (letter,) = store.dead_letters(10).items
    assert (letter.reason, letter.source) == ("missing_field:group_id", "worker")
    assert json.loads(letter.data)["call"] == "group"
    (page,) = store.timeline("anonymous:anon-1").items
    assert page.event.event_type == "page_view"
    assert page.event.properties["name"] == "Home"
    assert page.event.properties["url"] == "https://example.com/"
    assert page.event.properties["context"] == context
    (identify,) = store.timeline("u9").items
    assert identify.event.event_type == "identify"
    assert identify.event.properties["plan"] == "pro"


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{not json", "not_json"), (b"", "empty_body"), (b"[]", "empty_batch")],
)
def test_malformed_bodies_are_400(client: TestClient, body: bytes, error: str) -> None:
    response = client.post("/v1/events", content=body, headers=WRITE)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_a_batch_without_a_list_is_400(client: TestClient) -> None:
    response = client.post("/v1/batch", json={"batch": {}}, headers=WRITE)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_batch"


class _DownBroker:
    def __init__(self, inner: Broker) -> None:
        self._inner = inner

    def publish(self, messages: list[OutgoingMessage]) -> list[str]:
        raise BrokerError("unreachable")

    def ping(self) -> None:
        raise BrokerError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_failed_publish_is_503_not_a_silent_success(
    settings: Settings, broker: Broker, store: Store
) -> None:
    app = create_app(settings, _DownBroker(broker), store)  # type: ignore[arg-type]
    with TestClient(app) as client:
        response = client.post("/v1/events", json=recipe_event(), headers=WRITE)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"].startswith("unavailable")


def test_cors_is_configurable(tmp_path: Any, broker: Broker, store: Store) -> None:
    settings = make_settings(tmp_path, cors_origins="https://app.example.com")
    with TestClient(create_app(settings, broker, store)) as client:
        preflight = client.options(
            "/v1/track",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.options(
            "/v1/track",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origins", ["https://app.example.com", "*"])
def test_with_open_reads_cors_answers_writes_only(
    tmp_path: Any, broker: Broker, store: Store, process: Callable[[], None], origins: str
) -> None:
    """Without read keys, a page of an allowed origin may send events and load analytics.js's
    settings, but a read gets no CORS header: the browser keeps the data from the page. With
    read keys, a read answers the origin (it still needs its key)."""
    page = {"Origin": "https://app.example.com"}
    settings = make_settings(tmp_path, write_keys="", read_keys="", cors_origins=origins)
    app = create_app(settings, broker, store, cache_ttl_s=0)
    with TestClient(app, base_url=f"http://127.0.0.1:{settings.api_port}") as http:
        sent = http.post("/v1/track", json={"userId": "u", "event": "e"}, headers=page)
        assert sent.status_code == 200 and "access-control-allow-origin" in sent.headers
        preflight = http.options(
            "/v1/batch", headers={**page, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert "access-control-allow-origin" in preflight.headers
        loaded = http.get("/v1/projects/any-key/settings", headers=page)
        assert loaded.status_code == 200 and "access-control-allow-origin" in loaded.headers
        process()
        for path in ("/v1/profiles/u", "/v1/events?type=track", "/v1/dead-letters"):
            read = http.get(path, headers=page)
            assert read.status_code == 200, path
            assert "access-control-allow-origin" not in read.headers, path
        asked = http.options(
            "/v1/profiles/u", headers={**page, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in asked.headers
    keyed = make_settings(tmp_path, cors_origins=origins)
    with TestClient(create_app(keyed, broker, store, cache_ttl_s=0)) as http:
        read = http.get("/v1/profiles/u", headers={**page, **READ})
        assert read.status_code == 200 and "access-control-allow-origin" in read.headers


def test_behind_a_path_prefix_reads_and_writes_are_told_apart_the_same(
    tmp_path: Any, broker: Broker, store: Store
) -> None:
    """Served under a prefix (uvicorn's `--root-path`), the paths are matched from the app's
    root: data answers keep `no-store`, and with open reads analytics.js's settings keep CORS."""
    page = {"Origin": "https://app.example.com"}
    settings = make_settings(tmp_path, read_keys="", cors_origins="https://app.example.com")
    app = create_app(settings, broker, store, cache_ttl_s=0)
    base = f"http://127.0.0.1:{settings.api_port}"
    with TestClient(app, base_url=base, root_path="/ba") as http:
        loaded = http.get(f"/ba/v1/projects/{WRITE_KEY}/settings", headers=page)
        assert loaded.status_code == 200 and "access-control-allow-origin" in loaded.headers
        read = http.get("/ba/v1/profiles/u", headers=page)
        assert read.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in read.headers


def test_ingest_paths_keep_their_http_semantics(client: Any) -> None:
    """The fast path takes POSTs to the exact ingest paths; FastAPI answers the rest."""
    assert client.get("/v1/batch").status_code == 405
    assert client.post("/v1/nope", json={}).status_code == 404
    unauthorized = client.post("/v1/batch", json={"batch": []})
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"] == "unauthorized"
    assert "WWW-Authenticate" in unauthorized.headers
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/events", "/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/batch"):
        assert paths[path]["post"]["security"]


def test_cors_headers_on_ingest_responses(tmp_path: Any, broker: Broker, store: Store) -> None:
    settings = make_settings(tmp_path, cors_origins="https://app.example.com")
    with TestClient(create_app(settings, broker, store)) as http:
        response = http.post(
            "/v1/track",
            json={"userId": "u", "event": "e"},
            headers={**WRITE, "Origin": "https://app.example.com"},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        refused = http.post("/v1/track", json={}, headers={"Origin": "https://app.example.com"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://app.example.com"
