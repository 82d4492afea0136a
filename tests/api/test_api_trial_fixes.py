"""A new user's trial of the HTTP API: `X-Forwarded-For` under uvicorn at the default hops, the
ingest counter for answers the endpoints never give, missing versus unknown keys, and `HEAD`
on the pages uptime checkers poll."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import READ, READ_KEY, WRITE_KEY, basic, make_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

from behavioral_analytics.api import collector
from behavioral_analytics.api.app import create_app
from behavioral_analytics.api.server import make_server
from behavioral_analytics.broker import Broker
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store

PORT = 8123
ANALYTICS_JS = {"library": {"name": "analytics.js", "version": "npm:next-1.84.3"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def published(broker: Broker) -> list[dict[str, Any]]:
    deliveries = broker.pull(1000, 0.5)
    broker.nack([d.ack_id for d in deliveries], "test peeked")
    return [json.loads(d.data) for d in deliveries]


def track(n: int = 1, **fields: Any) -> dict[str, Any]:
    return {"messageId": f"s-{n}", "userId": "v2", "event": "ajs", **fields}


def ingest_count(app: FastAPI, route: str, status: int) -> float:
    value = app.state.api.metrics.registry.get_sample_value(
        "ba_api_ingest_requests_total", {"route": route, "status": str(status)}
    )
    return value or 0.0


@pytest.fixture
def open_app(tmp_path: Path, broker: Broker, store: Store) -> FastAPI:
    """No keys: the loopback guard stands in front, on port PORT."""
    settings = make_settings(tmp_path, write_keys="", read_keys="", api_port=PORT)
    return create_app(settings, broker, store, cache_ttl_s=0)


@pytest.fixture
def open_client(open_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(open_app, base_url=f"http://127.0.0.1:{PORT}") as client:
        yield client


def serving(settings: Settings, broker: Broker, store: Store) -> Iterator[str]:
    """The API for `settings` under uvicorn (as `api` serves it), in a thread; its base URL."""
    server = make_server(create_app(settings, broker, store, cache_ttl_s=0), settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 15 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(15)


# -- 1. X-Forwarded-For is read only through BA_TRUSTED_PROXY_HOPS, under uvicorn too -----------


@pytest.mark.slow
@pytest.mark.parametrize(("hops", "ip"), [(0, "127.0.0.1"), (1, "8.8.8.8")])
def test_a_served_api_reads_x_forwarded_for_only_through_the_configured_hops(
    tmp_path: Path, broker: Broker, store: Store, hops: int, ip: str
) -> None:
    settings = make_settings(
        tmp_path, api_port=free_port(), trusted_proxy_hops=hops, truncate_ips=False
    )
    for base_url in serving(settings, broker, store):
        response = httpx.post(
            f"{base_url}/v1/track",
            content=json.dumps(track(context=ANALYTICS_JS)),
            headers={
                **basic(WRITE_KEY),
                "Content-Type": "text/plain",
                "X-Forwarded-For": "8.8.8.8",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
    (event,) = published(broker)
    assert event["properties"]["context"]["ip"] == ip


# -- 2. every answer of an ingest route is counted --------------------------------------------


def test_the_guards_refusals_are_counted_as_ingest_requests(
    open_app: FastAPI, open_client: TestClient
) -> None:
    plain = {"Content-Type": "text/plain"}
    refusals = [
        ("/v1/track", {**plain, "Origin": "https://evil.example"}, "track", 403),
        ("/t", {"Content-Type": "application/x-www-form-urlencoded"}, "track", 415),
        ("/v1/import", {**plain, "Host": "evil.example"}, "batch", 403),
        ("/v1/events", {**plain, "Origin": "null"}, "events", 403),
    ]
    for path, headers, route, status in refusals:
        before = ingest_count(open_app, route, status)
        response = open_client.post(path, content=json.dumps(track()), headers=headers)
        assert response.status_code == status, response.text
        assert ingest_count(open_app, route, status) == before + 1, (path, status)
    text = open_client.get("/metrics").text
    assert 'ba_api_ingest_requests_total{route="track",status="415"} 1.0' in text


def test_an_answer_the_endpoint_gives_is_counted_once(
    open_app: FastAPI, open_client: TestClient
) -> None:
    response = open_client.post("/v1/t", content=json.dumps(track()))
    assert response.status_code == 200, response.text
    assert ingest_count(open_app, "track", 200) == 1
    assert open_client.get("/v1/track").status_code == 405  # another method: counted too
    assert ingest_count(open_app, "track", 405) == 1
    preflight = {"Origin": f"http://127.0.0.1:{PORT}", "Access-Control-Request-Method": "POST"}
    open_client.options("/v1/track", headers=preflight)
    assert ingest_count(open_app, "track", 200) == 1  # a preflight is not an ingest request


def test_the_guard_counts_each_path_under_its_endpoints_label(
    app: FastAPI, client: TestClient, open_app: FastAPI, open_client: TestClient
) -> None:
    """Each ingest path, refused by the key check (which the endpoint counts) with keys and by
    the guard without, is counted under the same route label both ways."""

    def new_label(
        counted_app: FastAPI, http: TestClient, path: str, headers: dict[str, str]
    ) -> str:
        def samples() -> dict[str, float]:
            return {
                sample.labels["route"]: sample.value
                for metric in counted_app.state.api.metrics.registry.collect()
                for sample in metric.samples
                if sample.name == "ba_api_ingest_requests_total"
            }

        before = samples()
        http.post(path, content=b"{}", headers=headers)
        (label,) = [r for r, n in samples().items() if n != before.get(r, 0.0)]
        return label

    paths = collector.routes(app.state.api)[1]
    assert len(paths) == 23  # events, 6 calls, batch, import, 7 short paths with and without /v1
    for path in paths:
        keyed = new_label(app, client, path, {})
        guarded = new_label(open_app, open_client, path, {"Origin": "null"})
        assert keyed == guarded, path


# -- 3. a missing key and an unknown one say which ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "detail"),
    [
        ({}, track(), "a write key is required"),
        (basic("bad"), track(), "unknown write key"),
        ({"X-Write-Key": "bad"}, track(), "unknown write key"),
        ({"Authorization": "Bearer bad"}, track(), "unknown write key"),
        ({"Authorization": "Basic %%%"}, track(), "unknown write key"),
        ({}, track(writeKey="bad"), "unknown write key"),
        ({}, track(writeKey=""), "a write key is required"),
        (basic(READ_KEY), track(), "unknown write key"),  # a read key does not write
    ],
    ids=["none", "basic", "header", "bearer", "garbled_basic", "body", "empty_body", "read_key"],
)
def test_an_unknown_write_key_is_not_called_missing(
    client: TestClient, headers: dict[str, str], body: dict[str, Any], detail: str
) -> None:
    response = client.post("/v1/track", content=json.dumps(body), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.json()["detail"].startswith(detail + ": ")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_known_key_in_the_body_still_passes_an_unknown_one_in_the_headers(
    client: TestClient,
) -> None:
    response = client.post(
        "/v1/track", content=json.dumps(track(writeKey=WRITE_KEY)), headers=basic("stale")
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "a read key is required"),
        ({"Authorization": "Bearer bad"}, "unknown read key"),
        (basic("bad"), "unknown read key"),
        ({"X-Read-Key": "bad"}, "unknown read key"),
        (basic(WRITE_KEY), "unknown read key"),  # a write key does not read
    ],
    ids=["none", "bearer", "basic", "header", "write_key"],
)
def test_an_unknown_read_key_is_not_called_missing(
    client: TestClient, headers: dict[str, str], detail: str
) -> None:
    response = client.get("/v1/events?type=x", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith(detail + ": ")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert client.get("/v1/events?type=x", headers=READ).status_code == 200


# -- 4. HEAD answers as GET without the body --------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/static/dashboard.css", "/docs"])
def test_head_answers_as_get_without_a_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == 200, got.text
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))


def test_head_under_uvicorn_answers_the_pages_uptime_checkers_poll(
    tmp_path: Path, broker: Broker, store: Store
) -> None:
    settings = make_settings(tmp_path, api_port=free_port())
    for base_url in serving(settings, broker, store):
        with httpx.Client(base_url=base_url, timeout=10) as http:
            for path in ("/", "/healthz", "/readyz"):
                response = http.head(path)
                assert response.status_code == 200, path
                assert response.content == b""
                assert int(response.headers["content-length"]) > 0
            assert http.head("/v1/events?type=x").status_code == 401  # a key, as for GET
            assert http.head("/v1/track").status_code == 405
            assert http.get("/healthz").status_code == 200  # the connection still works


# -- 5. docs/api.md names every route, and what compare does without `from` --------------------

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_route_table_of_api_md_lists_every_route(app: FastAPI) -> None:
    def shape(text: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", text)

    table = shape(API_MD.read_text().split("\n## ", 1)[0])
    missing = [
        path
        for path in app.openapi()["paths"]
        if not re.search(f"[` ]{re.escape(shape(path))}`", table)
    ]
    assert missing == []


def test_compare_without_from_compares_the_default_range(client: TestClient) -> None:
    answer = client.get("/v1/series?granularity=day&compare=true", headers=READ).json()
    current, previous = answer["current"], answer["previous"]
    days = (date.fromisoformat(current["to"]) - date.fromisoformat(current["from"])).days + 1
    assert days == 31
    assert date.fromisoformat(previous["to"]) == date.fromisoformat(current["from"]) - timedelta(1)
    assert (
        date.fromisoformat(previous["to"]) - date.fromisoformat(previous["from"])
    ).days + 1 == 31


def test_a_request_refused_whole_is_one_dead_letter_its_events_none(
    client: TestClient, store: Store
) -> None:
    """A call over 32 KB on its own route is refused whole (its request kept once, as
    `request:too_large`); inside a batch it is rejected alone, as an event."""
    oversized = track(properties={"blob": "x" * 40_000})
    response = client.post("/v1/track", content=json.dumps(oversized), headers=basic(WRITE_KEY))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert [d.reason for d in store.dead_letters(10).items] == ["request:too_large"]
    kept = client.post(
        "/v1/batch", json={"batch": [{**oversized, "type": "track"}]}, headers=basic(WRITE_KEY)
    )
    assert kept.json()["accepted"] == []
    assert sorted(d.reason for d in store.dead_letters(10).items) == [
        "request:too_large",
        "string_too_long",
    ]


def test_a_405_names_every_method_its_path_answers(open_client: TestClient) -> None:
    for method, path, allowed in [
        ("PATCH", "/v1/events", "GET, HEAD, POST"),  # two routes: collect and read
        ("GET", "/v1/track", "POST"),
        ("POST", "/v1/series", "GET, HEAD"),  # HEAD: wherever GET is answered
        ("DELETE", "/v1/profiles/u1", "GET, HEAD"),
        ("POST", "/static/app.js", "GET, HEAD"),  # a mount's own
        ("POST", "/static/v1/events", "GET, HEAD"),  # not the routes at the mount's rest
    ]:
        response = open_client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed, (method, path)
        assert response.json()["error"] == "method_not_allowed"
    assert open_client.head("/v1/series").status_code == 200


def test_a_405_behind_a_path_prefix_names_every_method(open_app: FastAPI) -> None:
    """Served under a prefix (uvicorn's `--root-path /analytics` behind a proxy)."""
    with TestClient(open_app, base_url=f"http://127.0.0.1:{PORT}", root_path="/analytics") as c:
        for method, path, allowed in [
            ("PATCH", "/analytics/v1/events", "GET, HEAD, POST"),
            ("POST", "/analytics/static/app.js", "GET, HEAD"),
        ]:
            response = c.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed, (method, path)
