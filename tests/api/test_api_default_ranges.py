"""Without `from` every ranged route counts its default range back from `to` (the period of
now when `to` is absent), not from now; a filtered route's default range starts within the
raw-event retention unless `to` is before it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from api_helpers import READ
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"funnels": PURCHASE_FUNNEL})


@pytest.fixture
def fixed(settings: Settings, broker: Broker, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, broker, store, cache_ttl_s=0, clock=lambda: NOW)
    with TestClient(app) as client:
        yield client


def _range(client: TestClient, url: str) -> tuple[str, str]:
    response = client.get(url, headers=READ)
    assert response.status_code == 200, (url, response.text)
    body = response.json()
    return body["from"], body["to"]


@pytest.mark.parametrize(
    ("url", "first"),
    [
        ("/v1/series?granularity=day&to=2026-12-01", "2026-11-01"),
        # Counted back from now this was 400 invalid_range, naming a `from` nobody sent.
        ("/v1/series?granularity=day&to=2026-10-01", "2026-09-01"),
        ("/v1/series?granularity=hour&to=2026-10-01-05", "2026-09-29-05"),
        ("/v1/series?granularity=minute&to=2026-10-01-05-30", "2026-10-01-04-30"),
        ("/v1/sessions?to=2026-10-01", "2026-09-01"),
        ("/v1/sessions?granularity=hour&to=2026-10-01", "2026-09-01-23"),
        ("/v1/funnels/purchase?to=2026-10-01", "2026-09-01"),
        ("/v1/breakdowns/page?to=2026-10-01", "2026-09-25"),
        ("/v1/breakdowns/page?granularity=hour&to=2026-10-01", "2026-09-29-23"),
        ("/v1/retention?to=2026-12-01", "2026-11-18"),
    ],
)
def test_the_default_from_counts_back_from_to(fixed: TestClient, url: str, first: str) -> None:
    assert _range(fixed, url)[0] == first


def test_without_to_it_counts_back_from_now(fixed: TestClient) -> None:
    assert _range(fixed, "/v1/series?granularity=day") == ("2026-11-04", "2026-12-04")
    assert _range(fixed, "/v1/breakdowns/page") == ("2026-11-28", "2026-12-04")


def test_a_filtered_default_range_starts_within_the_raw_retention(fixed: TestClient) -> None:
    # 30 days of retention at NOW: the first day wholly within it, 2026-11-05.
    assert _range(fixed, "/v1/series?granularity=day&to=2026-12-01&filter=page:/p") == (
        "2026-11-05",
        "2026-12-01",
    )
    assert _range(fixed, "/v1/series?granularity=day&to=2026-11-10&filter=page:/p") == (
        "2026-11-05",
        "2026-11-10",
    )


def test_a_filtered_default_range_before_the_retention_is_the_plain_one(fixed: TestClient) -> None:
    # From the aggregates (one kept dimension) it is answered ...
    assert _range(fixed, "/v1/series?granularity=day&to=2026-10-01&filter=page:/p") == (
        "2026-09-01",
        "2026-10-01",
    )
    # ... from the raw events it is refused as an explicit `from` there would be.
    response = fixed.get(
        "/v1/series?granularity=day&to=2026-10-01&filter=page:/p&filter=device:mobile",
        headers=READ,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "before_horizon"


def test_a_default_range_before_year_1000_asks_for_from(fixed: TestClient) -> None:
    response = fixed.get("/v1/series?granularity=day&to=1000-01-05", headers=READ)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_range"
    assert "give `from`" in response.json()["detail"]
