"""`filter=DIMENSION:VALUE` (repeatable) on series, sessions, funnels and breakdowns over the
SQLite store: one filter on a kept dimension from the aggregates, anything else from a bounded
raw scan, the answer saying which; the bound (`scan_too_large`) and the raw-retention horizon
(`before_horizon`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_helpers import READ, WRITE, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store

# (user, seconds after 10:00 yesterday, type, page, device): three people, one session each.
VISITS = [
    ("u1", 0, "page_view", "/pricing", "mobile"),
    ("u1", 60, "search", "/pricing", "mobile"),
    ("u1", 120, "add_to_cart", "/docs", "mobile"),
    ("u1", 180, "purchase", "/docs", "mobile"),
    ("u2", 10, "page_view", "/docs", "desktop"),
    ("u2", 70, "search", "/pricing", "desktop"),
    ("u2", 130, "add_to_cart", "/pricing", "mobile"),
    ("u2", 190, "purchase", "/pricing", "mobile"),
    ("u3", 20, "page_view", "/pricing", "desktop"),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, funnels=PURCHASE_FUNNEL)


def _publish(client: TestClient, process: Callable[[], None]) -> tuple[str, float]:
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = (today - timedelta(days=1, hours=-10)).timestamp()
    events = [
        recipe_event(
            i,
            user=user,
            event_type=kind,
            timestamp=start + at,
            session_id=f"s-{user}",
            properties={"page_url": f"https://shop.example{page}", "device_type": device},
        )
        for i, (user, at, kind, page, device) in enumerate(VISITS)
    ]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    return (today - timedelta(days=1)).strftime("%Y-%m-%d"), start


def _get(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers=READ)
    assert response.status_code == 200, response.text
    return response.json()


def test_series_with_two_filters_an_event_type_or_minutes_come_from_raw_events(
    client: TestClient, process: Callable[[], None]
) -> None:
    day, start = _publish(client, process)
    both = ["page:/pricing", "device:mobile"]
    body = _get(client, "/v1/series", granularity="day", to=day, filter=both)
    assert body["filters"] == [
        {"dimension": "page", "value": "/pricing"},
        {"dimension": "device", "value": "mobile"},
    ]
    assert (body["answered_from"], body["scanned_events"]) == ("raw_events", len(VISITS))
    [point] = body["points"]
    assert (point["period"], point["total_events"], point["unique_users"]) == (day, 4, 2)
    assert point["events_by_type"] == {"add_to_cart": 1, "page_view": 1, "purchase": 1, "search": 1}

    typed = _get(
        client, "/v1/series", granularity="day", to=day, type="search", filter="device:mobile"
    )
    assert typed["answered_from"] == "raw_events"
    assert [p["total_events"] for p in typed["points"]] == [1]

    minutes = _get(
        client,
        "/v1/series",
        granularity="minute",
        **{"from": str(start), "to": str(start + 300)},
        filter="page:/docs",
    )
    assert minutes["answered_from"] == "raw_events"
    assert [p["total_events"] for p in minutes["points"]] == [1, 1, 1]  # minutes 0, 2, 3

    compared = _get(
        client,
        "/v1/series",
        granularity="day",
        **{"from": day, "to": day},
        filter=both,
        compare="true",
    )
    assert compared["current"]["answered_from"] == "raw_events"
    assert compared["current"]["points"] == body["points"]
    assert compared["previous"]["points"] == []


def test_sessions_match_on_their_first_event(
    client: TestClient, process: Callable[[], None]
) -> None:
    day, _ = _publish(client, process)
    one = _get(client, "/v1/sessions", granularity="day", to=day, filter="page:/pricing")
    # u1 and u3 started on /pricing; u2 started on /docs (later /pricing events do not count).
    assert one["answered_from"] in ("aggregates", "raw_events"), one
    assert [(p["period"], p["sessions"]) for p in one["points"]] == [(day, 2)]
    two = _get(
        client,
        "/v1/sessions",
        granularity="day",
        to=day,
        filter=["page:/pricing", "device:desktop"],
    )
    assert two["answered_from"] == "raw_events" and two["scanned_events"] == len(VISITS)
    [point] = two["points"]
    assert (point["sessions"], point["bounce_rate"], point["events_per_session"]) == (1, 1.0, 1.0)


def test_a_funnel_over_the_matching_events(client: TestClient, process: Callable[[], None]) -> None:
    day, _ = _publish(client, process)
    every = _get(client, "/v1/funnels/purchase", to=day)
    assert [d["users"] for d in every["days"]] == [[3, 2, 2, 2]]
    mobile = _get(client, "/v1/funnels/purchase", to=day, filter="device:mobile")
    # u2 searched on a desktop: its mobile events hold no entry.
    assert [d["users"] for d in mobile["days"]] == [[1, 1, 1, 1]]
    assert mobile["answered_from"] == "raw_events" and mobile["filters"] == [
        {"dimension": "device", "value": "mobile"}
    ]


def test_a_breakdown_narrowed_by_another_dimension(
    client: TestClient, process: Callable[[], None]
) -> None:
    day, _ = _publish(client, process)
    body = _get(client, "/v1/breakdowns/page", to=day, filter="device:mobile")
    assert body["answered_from"] == "raw_events"
    assert [(v["value"], v["events"], v["unique_users"]) for v in body["values"]] == [
        ("/pricing", 4, 2),
        ("/docs", 2, 1),
    ]
    assert body["total_events"] == 6 and "points" not in body


def test_a_scan_past_the_bound_or_before_the_horizon_is_refused(
    tmp_path: Path, broker: Broker, store: Store, process: Callable[[], None]
) -> None:
    bounded = make_settings(tmp_path, raw_scan_max_events=5, funnels=PURCHASE_FUNNEL)
    with TestClient(create_app(bounded, broker, store, cache_ttl_s=0)) as client:
        day, _ = _publish(client, process)
        both = ["page:/pricing", "device:mobile"]
        refused = client.get(
            "/v1/series", params={"to": day, "filter": both, "granularity": "day"}, headers=READ
        )
        assert refused.status_code == 400 and refused.json()["code"] == "scan_too_large"
        assert "9 events" in refused.json()["detail"] and "5" in refused.json()["detail"]
        # One filter on a kept dimension reads no raw event: the bound does not apply.
        kept = client.get(
            "/v1/series",
            params={"to": day, "filter": "page:/pricing", "granularity": "day"},
            headers=READ,
        )
        assert kept.status_code == 200 and kept.json()["answered_from"] == "aggregates"
        old = client.get(
            "/v1/series",
            params={"from": "2020-01-01", "to": day, "filter": both, "granularity": "day"},
            headers=READ,
        )
        assert old.status_code == 400 and old.json()["code"] == "before_horizon"


def test_a_compared_range_before_the_horizon_is_named_in_the_refusal(
    client: TestClient, process: Callable[[], None]
) -> None:
    """Without `from` a filtered range starts within the raw-event retention, so the range of
    the same length before it cannot: the refusal names that range, not "a later `from`"."""
    _publish(client, process)
    params = {"filter": ["page:/pricing", "device:mobile"], "granularity": "day"}
    assert client.get("/v1/series", params=params, headers=READ).status_code == 200
    refused = client.get("/v1/series", params={**params, "compare": "true"}, headers=READ)
    assert refused.status_code == 400 and refused.json()["code"] == "before_horizon"
    assert refused.json()["detail"].startswith("compare: the previous range, ")


def test_entry_and_exit_pages_narrowed_count_sessions(
    client: TestClient, process: Callable[[], None]
) -> None:
    day, _ = _publish(client, process)
    entry = _get(client, "/v1/breakdowns/entry_page", to=day, filter="device:desktop")
    # u2's session starts on /docs from a desktop, u3's on /pricing; u1's started on a phone.
    assert [(v["value"], v["sessions"]) for v in entry["values"]] == [("/docs", 1), ("/pricing", 1)]
    exits = _get(client, "/v1/breakdowns/exit_page", to=day, filter="device:desktop")
    assert [(v["value"], v["sessions"]) for v in exits["values"]] == [("/pricing", 2)]
    assert entry["total_sessions"] == exits["total_sessions"] == 2
    pages = _get(client, "/v1/breakdowns/page", to=day, filter="device:desktop")
    assert [(v["value"], v["events"], v["sessions"]) for v in pages["values"]] == [
        ("/pricing", 2, 1),
        ("/docs", 1, 1),
    ]
    unfiltered = _get(client, "/v1/breakdowns/entry_page", to=day)
    assert "answered_from" not in unfiltered
    assert [p["sessions"] for p in unfiltered["points"]] == [{"/pricing": 2, "/docs": 1}]


def test_a_filter_on_other_is_refused_and_a_clients_own_other_matches(
    client: TestClient, process: Callable[[], None]
) -> None:
    """`(other)` counts the values past those a breakdown keeps: the aggregates would count it,
    the raw events never (no event's value is the label), so it is refused, not answered
    two ways; a client's own `(other)` is the value `"(other)"` and filters as any other."""
    day, start = _publish(client, process)
    for path, params in (
        ("/v1/series", {"granularity": "day"}),
        ("/v1/sessions", {}),
        ("/v1/breakdowns/device", {}),
    ):
        params |= {"to": day, "filter": "page:(other)"}
        refused = client.get(path, params=params, headers=READ)
        assert refused.status_code == 400, (path, refused.text)
        assert "not one value" in refused.json()["detail"]
    event = recipe_event(99, user="u4", timestamp=start + 300, properties={"page_url": "(other)"})
    assert client.post("/v1/events", json=[event], headers=WRITE).status_code == 202
    process()
    quoted = _get(client, "/v1/series", granularity="day", to=day, filter='page:"(other)"')
    assert [p["total_events"] for p in quoted["points"]] == [1]
