"""A filtered series returns only the periods with matching events, whether it is answered
from the aggregates or from the raw events (docs/api.md: "only periods with events are
returned")."""

from __future__ import annotations

from collections.abc import Callable

from api_helpers import READ, WRITE, recipe_event
from fastapi.testclient import TestClient


def test_a_value_nobody_has_gives_no_points_from_either_source(
    client: TestClient, process: Callable[[], None]
) -> None:
    events = [recipe_event(i) for i in range(3)]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    asked = {"granularity": "day", "filter": "page:/nonexistent"}
    from_aggregates = client.get("/v1/series", params=asked, headers=READ).json()
    assert from_aggregates["answered_from"] == "aggregates"
    assert from_aggregates["points"] == []
    raw = client.get(
        "/v1/series",
        params={**asked, "filter": ["page:/nonexistent", "device:mobile"]},
        headers=READ,
    ).json()
    assert raw["answered_from"] == "raw_events"
    assert raw["points"] == []
    seen = client.get(
        "/v1/series", params={"granularity": "day", "filter": "page:/page/1"}, headers=READ
    ).json()
    assert seen["answered_from"] == "aggregates"
    assert [point["total_events"] for point in seen["points"]] == [1]
