"""A page cursor continues only the listing it came from: another route, user or event type
refuses it (`400 invalid_cursor`), another `limit` takes it, and a cursor in the store's bare
form (what the API handed out before cursors were bound) is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import READ, WRITE, recipe_event
from fastapi.testclient import TestClient


@pytest.fixture
def loaded(client: TestClient, process: Callable[[], None]) -> None:
    events = [recipe_event(i, event_type="bulk") for i in range(4)]
    events += [recipe_event(10 + i, event_type="Viewed") for i in range(4)]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()


def _get(client: TestClient, url: str, **params: Any) -> Any:
    return client.get(url, params=params, headers=READ)


def test_a_cursor_continues_its_own_listing(client: TestClient, loaded: None) -> None:
    first = _get(client, "/v1/events", type="bulk", limit=2).json()
    cursor = first["next_cursor"]
    assert cursor and cursor.startswith("c1.")
    rest = _get(client, "/v1/events", type="bulk", limit=5, cursor=cursor)
    assert rest.status_code == 200, rest.text
    keys = [item["key"] for item in first["items"] + rest.json()["items"]]
    assert len(keys) == len(set(keys)) == 4


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/v1/events", {"type": "Viewed"}),
        ("/v1/users/user_1/timeline", {}),
        ("/v1/dead-letters", {}),
    ],
)
def test_a_cursor_of_another_listing_is_refused(
    client: TestClient, loaded: None, url: str, params: dict[str, str]
) -> None:
    cursor = _get(client, "/v1/events", type="bulk", limit=2).json()["next_cursor"]
    response = _get(client, url, **params, cursor=cursor)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_cursor"
    assert "another listing" in body["detail"]


def test_a_timeline_cursor_is_the_users_own(client: TestClient, loaded: None) -> None:
    cursor = _get(client, "/v1/users/user_1/timeline", limit=2).json()["next_cursor"]
    assert _get(client, "/v1/users/user_1/timeline", cursor=cursor).status_code == 200
    other = _get(client, "/v1/users/user_2/timeline", cursor=cursor)
    assert other.status_code == 400 and other.json()["error"] == "invalid_cursor"


def test_a_bare_store_cursor_is_refused_with_the_reason(client: TestClient, loaded: None) -> None:
    cursor = _get(client, "/v1/events", type="bulk", limit=2).json()["next_cursor"]
    bare = cursor.split(".", 2)[2]
    response = _get(client, "/v1/events", type="bulk", cursor=bare)
    assert response.status_code == 400
    assert "start again from the first page" in response.json()["detail"]
