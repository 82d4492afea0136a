"""`GET /v1/breakdowns/{dimension}` over the SQLite store: values sorted by events with their
share, unique users for a one-day range only (a range's cannot be summed from days: the answer
says so), `limit`, `compare=true`, an unknown dimension, and the dashboard's panel document."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from api_helpers import READ, WRITE, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.breakdown_report import HOUR_NOTE, MULTI_DAY_NOTE


def _today() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def _day(today: datetime, ago: int) -> str:
    return (today - timedelta(days=ago)).strftime("%Y-%m-%d")


# (days ago, user, page path, device)
VISITS = [
    (1, "u1", "/a", "mobile"),
    (1, "u2", "/a", "desktop"),
    (1, "u1", "/a", "mobile"),
    (1, "u3", "/b", "mobile"),
    (1, "u3", "/b", "mobile"),
    (1, "u4", "/c", "tablet"),
    (2, "u1", "/a", "mobile"),
    (2, "u5", "/c", "desktop"),
    (4, "u6", "/b", "desktop"),
    (4, "u6", "/b", "desktop"),
]


def _publish(client: TestClient, process: Callable[[], None]) -> datetime:
    today = _today()
    events = [
        recipe_event(
            i,
            user=user,
            timestamp=(today - timedelta(days=ago, hours=-10)).timestamp() + i,
            properties={"page_url": f"https://shop.example{page}?q=1", "device_type": device},
        )
        for i, (ago, user, page, device) in enumerate(VISITS)
    ]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    return today


def _values(body: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    return [(v["value"], v["events"], v["unique_users"]) for v in body["values"]]


def test_one_day_by_page_sorted_by_events_with_unique_users(
    client: TestClient, process: Callable[[], None]
) -> None:
    today = _publish(client, process)
    day = _day(today, 1)
    response = client.get("/v1/breakdowns/page", params={"from": day, "to": day}, headers=READ)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dimension"], body["granularity"], body["from"], body["to"]) == (
        "page",
        "day",
        day,
        day,
    )
    assert _values(body) == [("/a", 3, 2), ("/b", 2, 1), ("/c", 1, 1)]
    assert [v["share"] for v in body["values"]] == [0.5, 0.3333, 0.1667]
    assert body["total_events"] == 6 and body["unique_users_note"] is None
    assert [p["period"] for p in body["points"]] == [day]
    assert "freshness" in body

    limited = client.get(
        "/v1/breakdowns/device", params={"from": day, "to": day, "limit": 1}, headers=READ
    ).json()
    assert _values(limited) == [("mobile", 4, 2)]
    assert limited["values_not_shown"] == 2 and limited["total_events"] == 6


def test_a_range_of_days_sums_events_and_does_not_sum_unique_users(
    client: TestClient, process: Callable[[], None]
) -> None:
    today = _publish(client, process)
    params = {"from": _day(today, 2), "to": _day(today, 1)}
    body = client.get("/v1/breakdowns/page", params=params, headers=READ).json()
    # u1 viewed /a on both days: one person over the range, two in the days' sum.
    assert _values(body) == [("/a", 4, None), ("/b", 2, None), ("/c", 2, None)]
    assert body["unique_users_note"] == MULTI_DAY_NOTE
    by_day = {p["period"]: p["unique_users"] for p in body["points"]}
    assert by_day[_day(today, 2)]["/a"] == 1 and by_day[_day(today, 1)]["/a"] == 2

    hourly = client.get(
        "/v1/breakdowns/page", params={**params, "granularity": "hour"}, headers=READ
    ).json()
    assert _values(hourly) == [("/a", 4, None), ("/b", 2, None), ("/c", 2, None)]
    assert hourly["unique_users_note"] == HOUR_NOTE
    assert hourly["from"] == f"{_day(today, 2)}-00" and hourly["to"] == f"{_day(today, 1)}-23"


def test_compare_answers_the_days_before(client: TestClient, process: Callable[[], None]) -> None:
    today = _publish(client, process)
    params = {"from": _day(today, 2), "to": _day(today, 1), "compare": "true"}
    body = client.get("/v1/breakdowns/page", params=params, headers=READ).json()
    assert (body["current"]["from"], body["current"]["to"]) == (_day(today, 2), _day(today, 1))
    assert (body["previous"]["from"], body["previous"]["to"]) == (_day(today, 4), _day(today, 3))
    assert _values(body["previous"]) == [("/b", 2, None)]
    assert body["current"]["total_events"] == 8


def test_an_unknown_dimension_is_400_naming_the_configured_ones(client: TestClient) -> None:
    response = client.get("/v1/breakdowns/planet", headers=READ)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_dimension"
    assert "'planet'" in body["detail"] and "page, referrer" in body["detail"]
    assert client.get("/v1/breakdowns/page").status_code == 401


def test_the_dashboard_panels_document(client: TestClient, process: Callable[[], None]) -> None:
    today = _publish(client, process)
    day = _day(today, 1)
    body = client.get(
        "/v1/dashboard/breakdowns", params={"from": day, "to": day}, headers=READ
    ).json()
    assert body["dimensions"][:2] == ["page", "referrer"] and "country" in body["dimensions"]
    assert _values(body["panels"]["page"]) == [("/a", 3, 2), ("/b", 2, 1), ("/c", 1, 1)]
    assert _values(body["panels"]["device"]) == [
        ("mobile", 4, 2),
        ("desktop", 1, 1),
        ("tablet", 1, 1),
    ]

    week = client.get("/v1/dashboard/breakdowns", params={"compare": "true"}, headers=READ).json()
    assert (week["current"]["from"], week["current"]["to"]) == (_day(today, 6), _day(today, 0))
    assert (week["previous"]["from"], week["previous"]["to"]) == (_day(today, 13), _day(today, 7))
    assert week["current"]["panels"]["page"]["total_events"] == len(VISITS)


def test_a_series_filtered_by_one_value_comes_from_the_breakdowns(
    client: TestClient, process: Callable[[], None]
) -> None:
    today = _publish(client, process)
    params = {"granularity": "day", "from": _day(today, 4), "to": _day(today, 1)}
    body = client.get("/v1/series", params={**params, "filter": "page:/a"}, headers=READ).json()
    assert body["filters"] == [{"dimension": "page", "value": "/a"}]
    assert body["answered_from"] == "aggregates"
    assert [
        (p["period"], p["total_events"], p["unique_users"], p["exact"]) for p in body["points"]
    ] == [  # day 4 has events of other pages only: no point (only periods with matches)
        (_day(today, 2), 1, 1, True),
        (_day(today, 1), 3, 2, True),
    ]
    compared = client.get(
        "/v1/series",
        params={
            "granularity": "day",
            "from": _day(today, 1),
            "filter": "device:mobile",
            "compare": "1",
            "to": _day(today, 1),
        },
        headers=READ,
    ).json()
    assert [p["total_events"] for p in compared["current"]["points"]] == [4]
    assert [p["total_events"] for p in compared["previous"]["points"]] == [1]

    # With an event type or per minute: from the raw events (tests/api/test_api_filters.py).
    for bad in ({**params, "filter": "planet:mars"}, {**params, "filter": "page"}):
        response = client.get("/v1/series", params=bad, headers=READ)
        assert response.status_code == 400 and response.json()["code"] == "invalid_filter"
