"""`GET /v1/retention`: cohorts by first-seen day through the collector, the worker and the
store; read key required; malformed and too-old ranges refused with the API's error codes;
`filter=` keeping the people whose cohort day holds a matching event, from the raw events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api_helpers import READ, WRITE, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.store import Store

DAY_S = 86400.0


def test_retention_is_served_and_checked(client: TestClient, process: Callable[[], None]) -> None:
    # Noon, three and two days ago (UTC, the reporting zone): the same days whenever it runs.
    today = datetime.now(UTC).date()
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC).timestamp()
    first, second = (today - timedelta(days=3)).isoformat(), (today - timedelta(days=2)).isoformat()
    events = [
        recipe_event(1, user="ann", timestamp=noon - 3 * DAY_S),
        recipe_event(2, user="ann", timestamp=noon - 2 * DAY_S),
        recipe_event(3, user="bob", timestamp=noon - 3 * DAY_S),
        recipe_event(4, user="cy", timestamp=noon - 2 * DAY_S),
    ]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()

    assert client.get("/v1/retention").status_code == 401
    params = {"from": first, "to": second, "max": 1}
    body = client.get("/v1/retention", params=params, headers=READ).json()
    assert body["unit"] == "day" and body["timezone"] == "UTC" and "freshness" in body
    assert [(c["cohort"], c["size"], c["returning"], c["rates"]) for c in body["cohorts"]] == [
        (first, 2, [2, 1], [1.0, 0.5]),
        (second, 1, [1, 0], [1.0, 0.0]),
    ]
    weeks = client.get(
        "/v1/retention", params={**params, "unit": "week", "max": 3}, headers=READ
    ).json()
    assert [(c["cohort"], c["returning"]) for c in weeks["cohorts"]] == [
        (first, [2]),
        (second, [1]),
    ]
    # Default range: the two weeks ending today.
    default = client.get("/v1/retention", headers=READ).json()
    now = datetime.now(UTC).date()  # midnight may have passed since `today`
    assert (default["from"], default["to"]) in {
        ((day - timedelta(days=13)).isoformat(), day.isoformat()) for day in (today, now)
    }
    assert [c["size"] for c in default["cohorts"]] == [2, 1]

    old = (today - timedelta(days=60)).isoformat()
    refused = client.get("/v1/retention", params={"from": old}, headers=READ)
    assert refused.status_code == 400 and refused.json()["error"] == "before_horizon"
    reversed_ = client.get("/v1/retention", params={"from": second, "to": first}, headers=READ)
    assert reversed_.status_code == 400 and reversed_.json()["error"] == "invalid_range"
    too_far = client.get("/v1/retention", params={"unit": "week", "max": 60}, headers=READ)
    assert too_far.status_code == 400 and too_far.json()["error"] == "invalid_range"
    bad_unit = client.get("/v1/retention", params={"unit": "month"}, headers=READ)
    assert bad_unit.status_code == 422
    bad_day = client.get("/v1/retention", params={"from": "2026-13-45"}, headers=READ)
    assert bad_day.status_code == 400 and bad_day.json()["error"] == "invalid_period"


def test_retention_by_a_start_event(client: TestClient, process: Callable[[], None]) -> None:
    today = datetime.now(UTC).date()
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC).timestamp()
    first, second = (today - timedelta(days=3)).isoformat(), (today - timedelta(days=2)).isoformat()
    events = [
        recipe_event(1, user="ann", timestamp=noon - 3 * DAY_S),
        recipe_event(2, user="ann", event_type="signup", timestamp=noon - 2 * DAY_S),
        recipe_event(3, user="ann", timestamp=noon - 1 * DAY_S),
        recipe_event(4, user="bob", event_type="signup", timestamp=noon - 3 * DAY_S),
        recipe_event(5, user="cy", timestamp=noon - 2 * DAY_S),  # never signs up
    ]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()

    params = {"from": first, "to": second, "max": 1, "start_event": "signup"}
    body = client.get("/v1/retention", params=params, headers=READ).json()
    assert body["start_event"] == "signup"
    # By signup ann is cohort `second` (her first-seen day is `first`); cy is in no cohort.
    assert [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]] == [
        (first, 1, [1, 0]),
        (second, 1, [1, 1]),
    ]
    without = {k: v for k, v in params.items() if k != "start_event"}
    seen = client.get("/v1/retention", params=without, headers=READ)
    assert seen.status_code == 200, seen.json()
    assert seen.json()["start_event"] is None
    assert [(c["cohort"], c["size"]) for c in seen.json()["cohorts"]] == [(first, 2), (second, 1)]
    unknown = client.get(
        "/v1/retention", params={**params, "start_event": "never_sent"}, headers=READ
    )
    assert unknown.status_code == 200 and unknown.json()["cohorts"] == []
    for bad in ("", " ", "x" * 300):
        refused = client.get("/v1/retention", params={**params, "start_event": bad}, headers=READ)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_event_type"


def _visit(n: int, user: str, at_s: float, page: str, device: str, **extra: Any) -> dict[str, Any]:
    return recipe_event(
        n,
        user=user,
        timestamp=at_s,
        session_id=f"s{n}",
        properties={"page_url": page, "device_type": device},
        **extra,
    )


def test_retention_narrowed_by_filters(
    tmp_path: Path, broker: Broker, store: Store, process: Callable[[], None]
) -> None:
    today = datetime.now(UTC).date()
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC).timestamp()
    first, second = (today - timedelta(days=3)).isoformat(), (today - timedelta(days=2)).isoformat()
    events = [
        # ann: first seen on `first` on mobile at /pricing, back on `second` on desktop.
        _visit(1, "ann", noon - 3 * DAY_S, "/pricing", "mobile"),
        _visit(2, "ann", noon - 2 * DAY_S, "/docs", "desktop"),
        # bob: first seen on `first` on desktop, /pricing on mobile only a day later.
        _visit(3, "bob", noon - 3 * DAY_S, "/docs", "desktop"),
        _visit(4, "bob", noon - 2 * DAY_S, "/pricing", "mobile"),
        # cy: first seen on `second`, mobile at /pricing, signs up there too.
        _visit(5, "cy", noon - 2 * DAY_S, "/pricing", "mobile"),
        _visit(6, "cy", noon - 2 * DAY_S + 60, "/pricing", "mobile", event_type="signup"),
        # dee: first seen on `first`; a mobile event and a /pricing event, never one event both.
        _visit(7, "dee", noon - 3 * DAY_S, "/pricing", "desktop"),
        _visit(8, "dee", noon - 3 * DAY_S + 60, "/docs", "mobile"),
    ]
    bounded = make_settings(tmp_path, raw_scan_max_events=8)
    with TestClient(create_app(bounded, broker, store, cache_ttl_s=0)) as client:
        assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
        process()
        params: dict[str, Any] = {"from": first, "to": second, "max": 1}

        def cohorts(**more: Any) -> tuple[dict[str, Any], list[tuple[str, int, list[int]]]]:
            answer = client.get("/v1/retention", params={**params, **more}, headers=READ)
            assert answer.status_code == 200, answer.json()
            body = answer.json()
            return body, [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]]

        _, unfiltered = cohorts()
        assert unfiltered == [(first, 3, [3, 2]), (second, 1, [1, 0])]
        body, mobile = cohorts(filter="device:mobile")
        # bob's mobile day is not his cohort day; dee's mobile event is on hers.
        assert mobile == [(first, 2, [2, 1]), (second, 1, [1, 0])]
        assert body["filters"] == [{"dimension": "device", "value": "mobile"}]
        assert body["answered_from"] == "raw_events" and body["scanned_events"] == 8
        _, both = cohorts(filter=["device:mobile", "page:/pricing"])
        # One event must match both: dee has none.
        assert both == [(first, 1, [1, 1]), (second, 1, [1, 0])]
        _, signup = cohorts(filter="page:/docs", start_event="signup")
        assert signup == []
        _, signup = cohorts(filter="page:/pricing", start_event="signup")
        assert signup == [(second, 1, [1, 0])]
        assert "filters" not in cohorts()[0] and "answered_from" not in cohorts()[0]

        bad = client.get("/v1/retention", params={**params, "filter": "nope"}, headers=READ)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_filter"
        late = [_visit(9, "eve", noon - 3 * DAY_S + 120, "/docs", "mobile")]
        assert client.post("/v1/events", json=late, headers=WRITE).status_code == 202
        process()
        refused = client.get(
            "/v1/retention", params={**params, "filter": "device:mobile"}, headers=READ
        )
        assert refused.status_code == 400 and refused.json()["error"] == "scan_too_large"
        assert "9 events" in refused.json()["detail"]
