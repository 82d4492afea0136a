"""The API reads period bounds by the CLI's rules (`period_bounds`): a coarser label spans its
period, a finer one and nonsense are 400 `invalid_period`, a reversed range 400
`invalid_range`."""

from __future__ import annotations

import pytest
from api_helpers import READ
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("path", "params", "error"),
    [
        ("/v1/series", {"granularity": "hour", "from": "2026-13-45-99"}, "invalid_period"),
        ("/v1/series", {"granularity": "day", "to": "2026-10-24-13"}, "invalid_period"),
        ("/v1/series", {"granularity": "hour", "from": "foo"}, "invalid_period"),
        (
            "/v1/series",
            {"granularity": "hour", "from": "2026-10-25", "to": "2026-10-24"},
            "invalid_range",
        ),
        ("/v1/sessions", {"granularity": "hour", "from": "2026-13-45-99"}, "invalid_period"),
        (
            "/v1/top-event-types",
            {"granularity": "day", "period": "2026-10-24-13"},
            "invalid_period",
        ),
    ],
)
def test_a_bound_that_names_no_period_is_400(
    client: TestClient, path: str, params: dict[str, str], error: str
) -> None:
    response = client.get(path, params=params, headers=READ)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == body["code"] == error


def test_a_coarser_label_spans_its_period(client: TestClient) -> None:
    response = client.get(
        "/v1/series",
        params={"granularity": "hour", "from": "2026-10-24", "to": "2026-10-24"},
        headers=READ,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["from"], response.json()["to"]) == ("2026-10-24-00", "2026-10-24-23")


def test_a_request_fastapi_refuses_is_answered_in_the_documented_error_shape(
    client: TestClient,
) -> None:
    response = client.get("/v1/series", params={"granularity": "week"}, headers=READ)
    assert response.status_code == 422
    body = response.json()
    assert {"error", "detail", "code", "message"} <= body.keys()
    assert body["error"] == body["code"] == "invalid_request"
    assert body["detail"] == body["message"] and body["detail"].startswith("query.granularity")
