"""`compare=true` on the ranged routes: the asked range as `current`, the range of the same
length just before it as `previous` (same days, or same hour periods in the reporting zone),
each with its bounds and the fields of an answer without `compare`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_helpers import READ, WRITE, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_broker, build_store

FUNNELS = '[{"name": "signup", "steps": ["page_view", "signup"]}]'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, funnels=FUNNELS)


def _today() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def _day(today: datetime, ago: int) -> str:
    return (today - timedelta(days=ago)).strftime("%Y-%m-%d")


def test_series_sessions_and_funnels_compare_three_days_with_the_three_before(
    client: TestClient, process: Callable[[], None]
) -> None:
    today = _today()
    # Days 7 and 0 are outside both ranges; 6..4 are the previous range, 3..1 the current.
    per_day = {7: 5, 6: 2, 4: 1, 3: 3, 1: 4, 0: 1}
    events = [
        recipe_event(
            100 * ago + i,
            user=f"u{i}",
            timestamp=(today - timedelta(days=ago, minutes=-30)).timestamp() + i,
            session_id=f"s{ago}_{i}",
        )
        for ago, count in per_day.items()
        for i in range(count)
    ]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    params = {"from": _day(today, 3), "to": _day(today, 1), "compare": "true"}

    series = client.get("/v1/series", params={**params, "granularity": "day"}, headers=READ)
    assert series.status_code == 200, series.text
    body = series.json()
    assert "points" not in body and body["timezone"] == "UTC" and "freshness" in body
    assert (body["current"]["from"], body["current"]["to"]) == (_day(today, 3), _day(today, 1))
    assert (body["previous"]["from"], body["previous"]["to"]) == (_day(today, 6), _day(today, 4))
    assert {p["period"]: p["total_events"] for p in body["current"]["points"]} == {
        _day(today, 3): 3,
        _day(today, 1): 4,
    }
    assert {p["period"]: p["total_events"] for p in body["previous"]["points"]} == {
        _day(today, 6): 2,
        _day(today, 4): 1,
    }

    sessions = client.get("/v1/sessions", params=params, headers=READ).json()
    assert sum(p["sessions"] for p in sessions["current"]["points"]) == 7
    assert sum(p["sessions"] for p in sessions["previous"]["points"]) == 3
    assert sessions["previous"]["to"] == _day(today, 4)

    funnel = client.get("/v1/funnels/signup", params=params, headers=READ).json()
    assert funnel["funnel"]["name"] == "signup"
    assert sum(d["users"][0] for d in funnel["current"]["days"]) == 7
    assert sum(d["users"][0] for d in funnel["previous"]["days"]) == 3

    # Without compare: the shape it always had.
    plain = client.get("/v1/series", params={**params, "compare": "false"}, headers=READ).json()
    assert "current" not in plain and plain["from"] == f"{_day(today, 3)}-00"


@pytest.mark.parametrize(
    ("zone", "params", "current", "previous"),
    [
        # The 25-hour day New York's clocks go back: 25 hour periods before it.
        (
            "America/New_York",
            {"granularity": "hour", "from": "2026-11-01", "to": "2026-11-01"},
            ("2026-11-01-00", "2026-11-01-23"),
            ("2026-10-30-23", "2026-10-31-23"),
        ),
        # The day after it compares with 24 hours, the repeated one among them.
        (
            "America/New_York",
            {"granularity": "hour", "from": "2026-11-02", "to": "2026-11-02"},
            ("2026-11-02-00", "2026-11-02-23"),
            ("2026-11-01-01", "2026-11-01-23"),
        ),
        # By day that 25-hour day is one day.
        (
            "America/New_York",
            {"granularity": "day", "from": "2026-11-01", "to": "2026-11-03"},
            ("2026-11-01", "2026-11-03"),
            ("2026-10-29", "2026-10-31"),
        ),
        (
            "UTC",
            {"granularity": "minute", "from": "2026-11-01-00-00", "to": "2026-11-01-00-09"},
            ("2026-11-01-00-00", "2026-11-01-00-09"),
            ("2026-10-31-23-50", "2026-10-31-23-59"),
        ),
    ],
)
def test_the_previous_range_is_as_long_in_the_reporting_zone(
    tmp_path: Path,
    zone: str,
    params: dict[str, str],
    current: tuple[str, str],
    previous: tuple[str, str],
) -> None:
    settings = make_settings(tmp_path / "zone", timezone=zone)
    broker, store = build_broker(settings), build_store(settings)
    broker.init()
    store.init()
    try:
        with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as client:
            body = client.get(
                "/v1/series", params={**params, "compare": "true"}, headers=READ
            ).json()
            assert (body["current"]["from"], body["current"]["to"]) == current
            assert (body["previous"]["from"], body["previous"]["to"]) == previous
            if params["granularity"] != "minute":
                sessions = client.get(
                    "/v1/sessions", params={**params, "compare": "true"}, headers=READ
                ).json()
                assert (sessions["previous"]["from"], sessions["previous"]["to"]) == previous
    finally:
        broker.close()
        store.close()


def test_an_hourly_range_too_long_to_compare_is_400(client: TestClient) -> None:
    response = client.get(
        "/v1/series",
        params={"granularity": "hour", "from": "2020-01-01", "to": "2026-01-01", "compare": "1"},
        headers=READ,
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_range"
