"""The read routes refuse a query parameter they do not declare (a typo is not answered as if
it were absent) and an empty bound or cursor; the known names are the route's declaration,
as the OpenAPI document lists them."""

from __future__ import annotations

import re

import pytest
from api_helpers import READ, WRITE_KEY
from fastapi import FastAPI
from fastapi.testclient import TestClient


def _read_operations(app: FastAPI) -> list[tuple[str, list[str]]]:
    """(path, declared query parameters) of every GET under /v1 but the collector's."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        get = operations.get("get")
        if not path.startswith("/v1/") or get is None or "collector" in get.get("tags", []):
            continue
        names = [p["name"] for p in get.get("parameters", []) if p["in"] == "query"]
        found.append((re.sub(r"\{[^}]+\}", "x", path), sorted(names)))
    return found


def test_every_read_route_refuses_a_parameter_it_does_not_declare(
    app: FastAPI, client: TestClient
) -> None:
    operations = _read_operations(app)
    assert len(operations) >= 15
    for path, declared in operations:
        response = client.get(f"{path}?granularty=day", headers=READ)
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert body["error"] == body["code"] == "unknown_parameter"
        assert body["unknown"] == ["granularty"]
        assert body["known"] == declared, path
        assert "'granularty'" in body["detail"]


def test_a_typo_is_not_answered_as_the_default(client: TestClient) -> None:
    typo = client.get("/v1/series?granularty=day&from=2026-11-01", headers=READ)
    assert typo.status_code == 400
    assert "granularity" in typo.json()["known"]
    assert client.get("/v1/series?granularity=day&from=2026-11-01", headers=READ).status_code == 200


def test_the_key_is_asked_for_before_the_parameters(client: TestClient) -> None:
    assert client.get("/v1/series?granularty=day").status_code == 401


def test_the_collectors_routes_keep_their_own_conventions(client: TestClient) -> None:
    response = client.get(f"/v1/projects/{WRITE_KEY}/settings?writeKey={WRITE_KEY}&v=2")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "url",
    [
        "/v1/series?from=",
        "/v1/series?to=%20",
        "/v1/sessions?from=",
        "/v1/breakdowns/page?to=",
        "/v1/funnels?from=",
        "/v1/top-event-types?period=",
        "/v1/retention?from=",
        "/v1/dashboard/breakdowns?to=",
    ],
)
def test_an_empty_bound_is_invalid_period(client: TestClient, url: str) -> None:
    response = client.get(url, headers=READ)
    body = response.json()
    if url.startswith("/v1/funnels?"):  # the funnel list takes no bound at all
        assert body["error"] == "unknown_parameter"
        return
    assert response.status_code == 400, response.text
    assert body["error"] == "invalid_period"
    assert "is empty" in body["detail"]


def test_an_empty_cursor_is_invalid_cursor(client: TestClient) -> None:
    for url in (
        "/v1/events?type=x&cursor=",
        "/v1/users/u/timeline?cursor=",
        "/v1/dead-letters?cursor=",
    ):
        response = client.get(url, headers=READ)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "invalid_cursor"
