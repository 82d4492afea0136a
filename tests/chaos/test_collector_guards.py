"""Issue 19, cases 6 and 7: a gzip body is read whole or refused; an API without keys on
loopback answers only its own host names, and takes writes only from its own pages (or
BA_CORS_ORIGINS, or no browser at all) with a JSON or text/plain body."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.settings import load_settings
from behavioral_analytics.wiring import build_broker, build_store

WRITE_KEY = "wk_chaos_6"
PORT = 8123


def event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"evt_{n}",
        "user_id": "u1",
        "event_type": "page_view",
        "timestamp": time.time() - 5,
    }


def _client(tmp_path: Path, base_url: str, **overrides: Any) -> Iterator[TestClient]:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "backend": "local",
        "api_host": "127.0.0.1",
        "api_port": PORT,
        **overrides,
    }
    settings = load_settings(**values)
    broker, store = build_broker(settings), build_store(settings)
    broker.init()
    store.init()
    try:
        with TestClient(create_app(settings, broker, store, cache_ttl_s=0), base_url=base_url) as c:
            yield c
    finally:
        broker.close()
        store.close()


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, "http://testserver", write_keys=WRITE_KEY, read_keys="rk_6")


@pytest.fixture
def open_api(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, f"http://127.0.0.1:{PORT}", cors_origins="https://app.test")


GZIP = {"X-Write-Key": WRITE_KEY, "Content-Encoding": "gzip", "Content-Type": "application/json"}


def test_case_6_every_gzip_member_is_read(keyed: TestClient) -> None:
    first, second = (
        json.dumps([event(1), event(2)]).encode()[:-1],
        b"," + json.dumps(event(3)).encode() + b"]",
    )
    body = gzip.compress(first) + gzip.compress(second)
    response = keyed.post("/v1/events", content=body, headers=GZIP)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == ["evt_1", "evt_2", "evt_3"]


@pytest.mark.parametrize(
    "tail",
    [b"garbage after the member", b"\x00\x00\x00\x00", gzip.compress(b"[]")[:-4]],
    ids=["text", "zeros", "truncated_member"],
)
def test_case_6_bytes_after_the_last_member_are_refused_not_dropped(
    keyed: TestClient, tail: bytes
) -> None:
    body = gzip.compress(json.dumps([event(1)]).encode()) + tail
    response = keyed.post("/v1/events", content=body, headers=GZIP)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_gzip"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_case_7_loopback_names_on_the_bound_port_are_the_same_place(
    open_api: TestClient, host: str
) -> None:
    headers = {"Host": f"{host}:{PORT}", "Content-Type": "text/plain"}
    response = open_api.post("/v1/events", content=json.dumps(event(1)), headers=headers)
    assert response.status_code == 202, response.text
    assert open_api.get("/v1/dashboard", headers={"Host": f"{host}:{PORT}"}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    "host", ["evil.example", f"evil.example:{PORT}", "127.0.0.1:9999", "localhost", "[::1"]
)
def test_case_7_a_foreign_host_is_refused(open_api: TestClient, host: str) -> None:
    for response in (
        open_api.get("/v1/dashboard", headers={"Host": host}),
        open_api.post("/v1/events", json=event(1), headers={"Host": host}),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden_host"


def test_case_7_another_origins_no_cors_post_is_refused(open_api: TestClient) -> None:
    headers = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    response = open_api.post(
        "/v1/t", content=json.dumps({"type": "track", "event": "x", "userId": "u"}), headers=headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden_origin"
    for origin in ("null", f"http://evil.example:{PORT}"):
        assert (
            open_api.post("/v1/events", json=event(1), headers={"Origin": origin}).status_code
            == 403
        )


@pytest.mark.parametrize("origin", [f"http://localhost:{PORT}", "https://app.test", None])
def test_case_7_own_pages_listed_origins_and_non_browsers_may_write(
    open_api: TestClient, origin: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if origin:
        headers["Origin"] = origin
    response = open_api.post("/v1/events", content=json.dumps(event(1)), headers=headers)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_case_7_form_bodies_are_refused(open_api: TestClient, content_type: str) -> None:
    response = open_api.post(
        "/v1/events", content=json.dumps(event(1)), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_content_type"


def test_case_7_allowed_hosts_are_answered(tmp_path: Path) -> None:
    for client in _client(
        tmp_path, "http://analytics.test:8443", allowed_hosts="analytics.test,other.test:1"
    ):
        assert client.get("/v1/dashboard").status_code == 200
        assert client.get("/v1/dashboard", headers={"Host": "other.test:1"}).status_code == 200
        assert client.get("/v1/dashboard", headers={"Host": "other.test:2"}).status_code == 403


def test_case_7_with_keys_the_key_decides(keyed: TestClient) -> None:
    headers = {"X-Write-Key": WRITE_KEY, "Origin": "https://evil.example"}
    assert keyed.post("/v1/events", json=event(1), headers=headers).status_code == 202
