"""The OpenAPI document describes the read routes' answers as they are: a JSON object for a
200, and the API's error body (`error`, `detail`, `code`, `message`, and an error's own fields)
for each error status, the keys of real error answers included."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import READ
from fastapi.testclient import TestClient

READ_STATUSES = {"400", "401", "403", "422", "500", "503"}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: Any = document
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _read_operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operations["get"])
        for path, operations in document["paths"].items()
        if path.startswith("/v1/")
        and "get" in operations
        and "collector" not in operations["get"].get("tags", [])
    ]


def test_every_read_route_answers_an_object_and_declares_its_errors(
    document: dict[str, Any],
) -> None:
    operations = _read_operations(document)
    assert operations
    for path, operation in operations:
        responses = operation["responses"]
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok.get("type") == "object", (path, ok)
        assert responses.keys() >= READ_STATUSES, (path, sorted(responses))
        for status, response in responses.items():
            if status == "200":
                continue
            schema = _resolve(document, response["content"]["application/json"]["schema"])
            assert schema.get("title") == "ErrorBody", (path, status, schema)


def test_only_the_routes_that_answer_404_declare_it(document: dict[str, Any]) -> None:
    """A profile, a funnel and a group by name answer 404; a series or a listing never does."""
    declaring = {
        path for path, operation in _read_operations(document) if "404" in operation["responses"]
    }
    assert declaring == {
        "/v1/profiles/{user_id}",
        "/v1/funnels/{name}",
        "/v1/groups/{group_id}",
    }


def _error_schema(document: dict[str, Any], path: str, status: str) -> dict[str, Any]:
    response = document["paths"][path]["get"]["responses"][status]
    return _resolve(document, response["content"]["application/json"]["schema"])


@pytest.mark.parametrize(
    ("url", "path", "status"),
    [
        ("/v1/series?granularty=day", "/v1/series", 400),
        ("/v1/series?from=2026-13-45", "/v1/series", 400),
        ("/v1/series?granularity=week", "/v1/series", 422),
        ("/v1/profiles/nobody", "/v1/profiles/{user_id}", 404),
        ("/v1/retention?max=x", "/v1/retention", 422),
    ],
)
def test_the_declared_error_schema_has_a_real_error_answers_keys(
    client: TestClient, document: dict[str, Any], url: str, path: str, status: int
) -> None:
    response = client.get(url, headers=READ)
    assert response.status_code == status, response.text
    schema = _error_schema(document, path, str(status))
    body = response.json()
    assert set(schema["required"]) <= body.keys()
    assert body.keys() <= schema["properties"].keys()


def test_an_unauthorized_answer_matches_the_declared_schema(
    client: TestClient, document: dict[str, Any]
) -> None:
    response = client.get("/v1/series")
    assert response.status_code == 401
    schema = _error_schema(document, "/v1/series", "401")
    assert set(schema["required"]) <= response.json().keys() <= schema["properties"].keys()
