"""A trial of the query API at its edges: bounds past the years periods can be named, blank
event types, made-up cursors, `max` past retention's bound, a key asked for before the
parameters, reads on an ingest path kept out of the ingest counter, and an error nobody
expected answered in the API's JSON shape."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from api_helpers import READ
from fastapi import FastAPI
from fastapi.testclient import TestClient

from behavioral_analytics.api import query
from behavioral_analytics.api.cursors import bind


def _error(client: TestClient, url: str, status: int = 400) -> str:
    response = client.get(url, headers=READ)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == body["error"] and body["message"] == body["detail"]
    return str(body["error"])


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/v1/series?to=9999-12-31", "invalid_period"),  # its last hour ends in year 10000
        ("/v1/series?granularity=day&from=999-06-01&to=999-06-03", "invalid_period"),
        ("/v1/series?granularity=hour&from=999-06-01-01", "invalid_period"),
        ("/v1/sessions?granularity=hour&to=9999-12-31", "invalid_period"),
        ("/v1/breakdowns/page?granularity=hour&to=9999-12-31", "invalid_period"),
        ("/v1/series?granularity=day&from=0999-01-01T00:00:00Z", "invalid_period"),
        (
            "/v1/series?granularity=day&from=0001-01-01T00:00:00%2B00:00&compare=true",
            "invalid_period",
        ),
        ("/v1/series?granularity=day&from=1970-01-01&to=9999-12-31&compare=true", "invalid_range"),
        ("/v1/series?granularity=day&from=1000-01-01&to=1000-01-05&compare=true", "invalid_range"),
    ],
)
def test_bounds_past_the_named_years_are_refused_not_a_500(
    client: TestClient, url: str, code: str
) -> None:
    assert _error(client, url) == code


def test_a_blank_or_too_long_event_type_is_refused_as_on_retention(client: TestClient) -> None:
    long = "x" * 129  # one more than the longest event type an event can have
    for url in ("/v1/series?type=%20%20", "/v1/events?type=%20", "/v1/events?type="):
        assert _error(client, url) == "invalid_event_type"
    for url in (f"/v1/series?type={long}", f"/v1/events?type={long}"):
        assert _error(client, url) == "invalid_event_type"
    for start_event in ("%20", long):
        assert _error(client, f"/v1/retention?start_event={start_event}") == "invalid_event_type"
    assert client.get(f"/v1/events?type={long[:128]}", headers=READ).status_code == 200


def test_max_past_retentions_bound_is_invalid_range_as_documented(client: TestClient) -> None:
    assert _error(client, "/v1/retention?max=367") == "invalid_range"
    assert _error(client, "/v1/retention?unit=week&max=54") == "invalid_range"
    assert _error(client, "/v1/retention?max=-1") == "invalid_range"


@pytest.mark.parametrize("raw", ["nan|abc", "1e400|abc", "inf|k", " 1.5|k"])
def test_a_cursor_the_api_cannot_have_written_is_refused(client: TestClient, raw: str) -> None:
    cursor = bind(base64.urlsafe_b64encode(raw.encode()).decode(), ("timeline", "u1"))
    assert _error(client, f"/v1/users/u1/timeline?cursor={cursor}") == "invalid_cursor"


@pytest.mark.parametrize("cursor", ["0", "3_0", "%2B3", "%D9%A3", "03", "-1"])
def test_a_dead_letter_cursor_is_an_id_as_pages_give_it(client: TestClient, cursor: str) -> None:
    listing = ("dead_letters",)
    assert _error(client, f"/v1/dead-letters?cursor={bind(cursor, listing)}") == "invalid_cursor"
    response = client.get(f"/v1/dead-letters?cursor={bind('5', listing)}", headers=READ)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/v1/series?granularity=week",
        "/v1/events",
        "/v1/retention?max=abc",
        "/v1/dashboard/breakdowns?compare=abc",
    ],
)
def test_a_read_key_is_asked_for_before_the_parameters(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


def test_reads_on_an_ingest_path_are_not_counted_as_ingest(
    app: FastAPI, client: TestClient
) -> None:
    registry = app.state.api.metrics.registry

    def counted(status: int) -> float:
        labels = {"route": "events", "status": str(status)}
        return registry.get_sample_value("ba_api_ingest_requests_total", labels) or 0.0

    assert client.get("/v1/events?type=page_view", headers=READ).status_code == 200
    assert client.head("/v1/events?type=page_view", headers=READ).status_code == 200
    assert client.get("/v1/events?type=%20", headers=READ).status_code == 400
    assert counted(200) == counted(400) == 0
    assert client.put("/v1/events").status_code == 405
    assert counted(405) == 1


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug on the way")

    monkeypatch.setattr(query, "asked_range", broken)
    yield


def test_an_unexpected_error_is_a_json_500(app: FastAPI, failing: None) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/series", headers=READ)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "internal_error" and "a bug" not in response.text


def test_the_filter_bounds_are_ten_filters_of_1024_characters(client: TestClient) -> None:
    many = "&".join(["filter=page:/a"] * 11)
    assert _error(client, f"/v1/series?{many}") == "invalid_filter"
    long_value = "/p/" + "x" * 1024
    response = client.get(f"/v1/series?filter=page:{long_value}", headers=READ)
    assert response.status_code == 400
    assert "a filter is at most 1024 characters" in response.json()["detail"]
    assert long_value not in response.text
    kept = "/p/" + "x" * 253  # a value as long as one kept: a filter the dashboard can build
    assert client.get(f"/v1/series?filter=page:{kept}", headers=READ).status_code == 200
