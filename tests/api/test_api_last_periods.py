"""Bounds at the end of year 9999, which the docs call valid: answered (not a 500) in zones on
both sides of UTC, filtered answers and retention included; a day as `to` of an hourly range,
whose end no label names, is refused naming the hour to give instead, which is taken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import READ, make_settings
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.wiring import build_broker, build_store

# What a user asked for; every one was a 500 (OverflowError in `Periods.end_of`).
URLS = [
    "/v1/retention?from=9999-12-31&to=9999-12-31",
    "/v1/retention?from=9999-12-31&to=9999-12-31&filter=page:/p",
    "/v1/retention?from=9998-12-25&to=9999-12-31&unit=week&max=53",
    "/v1/breakdowns/page?to=9999-12-31&filter=page:/p",
    "/v1/breakdowns/page?from=9999-12-31&to=9999-12-31&filter=page:/p",
    "/v1/funnels/purchase?to=9999-12-31&filter=page:/p",
    "/v1/funnels/purchase?from=9999-12-31&to=9999-12-31&filter=page:/p",
    "/v1/series?granularity=day&to=9999-12-31&filter=page:/p&type=page_view",
    "/v1/sessions?to=9999-12-31&filter=page:/p",
    "/v1/dashboard/breakdowns?from=9999-12-31&to=9999-12-31",
]
# The last hour and minute a label names in each zone (none after 9999-12-31T23:59:59Z).
LAST_HOURS = {
    "UTC": "9999-12-31-23",
    "America/Los_Angeles": "9999-12-31-15",
    "Pacific/Kiritimati": "9999-12-31-23",
}


@pytest.fixture(params=sorted(LAST_HOURS))
def zoned(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, TestClient]]:
    settings = make_settings(tmp_path, timezone=request.param, funnels=PURCHASE_FUNNEL)
    broker, store = build_broker(settings), build_store(settings)
    broker.init()
    store.init()
    with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as client:
        yield request.param, client
    broker.close()
    store.close()


def _answered(client: TestClient, url: str) -> dict[str, Any]:
    response = client.get(url, headers=READ)
    assert response.status_code == 200, (url, response.text)
    body: dict[str, Any] = response.json()
    return body


def test_the_end_of_year_9999_is_answered_in_every_zone(zoned: tuple[str, TestClient]) -> None:
    zone, client = zoned
    hour = LAST_HOURS[zone]
    urls = [
        *URLS,
        f"/v1/series?granularity=hour&from=2026-12-01&to={hour}",
        f"/v1/series?granularity=minute&from=2026-12-04&to={hour}-59&filter=page:/p",
        f"/v1/breakdowns/page?granularity=hour&to={hour}&filter=page:/p",
        f"/v1/sessions?granularity=hour&from=9999-12-31&to={hour}&filter=page:/p",
    ]
    for url in urls:
        body = _answered(client, url)
        assert body["to"].startswith("9999-12-31"), (url, body["to"])
        listed = body.get("points", body.get("days", body.get("cohorts", body.get("values"))))
        assert listed in ([], None), url


@pytest.mark.parametrize(
    "url",
    [
        "/v1/series?granularity=hour&from=2026-12-01&to=9999-12-31",
        "/v1/series?granularity=minute&from=2026-12-04&to=9999-12-31&filter=page:/p",
        "/v1/breakdowns/page?granularity=hour&to=9999-12-31",
    ],
)
def test_the_last_day_as_to_of_a_finer_range_names_the_period_to_give(
    zoned: tuple[str, TestClient], url: str
) -> None:
    zone, client = zoned
    response = client.get(url, headers=READ)
    if zone == "Pacific/Kiritimati":  # the day ends at 9999-12-31T10:00Z: its end is named
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_period"
    given = LAST_HOURS[zone] + ("-59" if "minute" in url else "")
    # It named an unrelated example label (2026-11-28-13) before.
    assert f", {given}, instead" in body["detail"]
    assert _answered(client, url.replace("to=9999-12-31", f"to={given}"))["to"] == given


def test_west_of_utc_a_label_past_the_last_instant_names_the_last_one(
    zoned: tuple[str, TestClient],
) -> None:
    zone, client = zoned
    if zone != "America/Los_Angeles":
        return
    late = client.get("/v1/series?granularity=hour&to=9999-12-31-23", headers=READ)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_period"
    assert "give 9999-12-31-15 or earlier" in late.json()["detail"]
