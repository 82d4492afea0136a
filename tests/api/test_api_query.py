"""The query API, the dashboard document and the ops routes, on real adapters."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from api_helpers import READ, WRITE, recipe_event, today_from, wait_past
from fastapi.testclient import TestClient

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.api.app import create_app
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store


@pytest.fixture
def loaded(client: TestClient, process: Callable[[], None], settings: Settings) -> float:
    """Twelve events of three users and three types, one bad event; processed. Each type has
    an event today (a page view a minute back): in a day's first minute "now" is 00:01, once
    that has passed (today's top types are these)."""
    now = today_from(0, settings.timezone, 60)
    wait_past(now)
    events = [
        recipe_event(
            i,
            user=f"user_{i % 3}",
            event_type=("page_view", "search", "purchase")[i % 3 == 0],
            timestamp=now - 60 * i,
        )
        for i in range(12)
    ]
    events.append(
        recipe_event(99, user="team/alice", event_type="checkout.step_2", timestamp=now - 5)
    )
    events.append({"user_id": "x"})
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    return now


def test_profile_and_404(client: TestClient, loaded: float) -> None:
    body = client.get("/v1/profiles/team/alice", headers=READ).json()
    assert body["profile"]["total_events"] == 1
    assert body["profile"]["events_by_type"] == {"checkout.step_2": 1}
    assert set(body["freshness"]) >= {"newest_event_at", "lag_s", "last_commit_at", "as_of"}
    assert body["freshness"]["newest_event_at"] == pytest.approx(loaded, abs=1)
    missing = client.get("/v1/profiles/nobody", headers=READ)
    assert missing.status_code == 404


def test_timeline_pages_newest_first(client: TestClient, loaded: float) -> None:
    seen: list[float] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/users/user_0/timeline", params=params, headers=READ).json()
        seen += [item["timestamp"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 4
    assert seen == sorted(seen, reverse=True)


def test_events_by_type(client: TestClient, loaded: float) -> None:
    body = client.get("/v1/events", params={"type": "checkout.step_2"}, headers=READ).json()
    assert [item["user_id"] for item in body["items"]] == ["team/alice"]
    assert body["items"][0]["received_at"] > 0


@pytest.mark.parametrize("cursor", ["garbage!!", "Zm9v", str(2**63), "-1"])
def test_a_bad_cursor_is_400(client: TestClient, loaded: float, cursor: str) -> None:
    for path, params in [
        ("/v1/users/user_0/timeline", {}),
        ("/v1/events", {"type": "search"}),
        ("/v1/dead-letters", {}),
    ]:
        response = client.get(path, params={**params, "cursor": cursor}, headers=READ)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"] == "invalid_cursor"


def test_series_by_label_and_by_time(
    client: TestClient, store: Store, settings: Settings, loaded: float
) -> None:
    periods = Periods(settings.timezone)
    hour = periods.label("hour", loaded)
    by_label = client.get(
        "/v1/series", params={"granularity": "hour", "from": hour, "to": hour}, headers=READ
    ).json()
    expected = store.series("hour", hour, hour)
    assert [p["total_events"] for p in by_label["points"]] == [p.total_events for p in expected]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(loaded))
    by_time = client.get(
        "/v1/series",
        params={"granularity": "minute", "from": loaded - 3600, "to": iso},
        headers=READ,
    ).json()
    assert sum(p["total_events"] for p in by_time["points"]) == 13
    searches = client.get(
        "/v1/series", params={"granularity": "day", "type": "search"}, headers=READ
    ).json()
    assert sum(p["total_events"] for p in searches["points"]) == 4


def test_a_series_of_one_type_lists_only_its_periods_and_no_other_counts(
    client: TestClient, process: Callable[[], None]
) -> None:
    """`type` restricts the points to the periods with events of that type, counting those
    alone: a period with other types only, or crawlers only, is not a point, and crawlers'
    events (not kept per type) are not given as if they were of that type."""
    now = time.time()
    crawler = {
        "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    events = [
        recipe_event(1, event_type="search", timestamp=now - 2 * 3600),
        recipe_event(2, event_type="page_view", timestamp=now - 60),
        recipe_event(3, user="crawler", event_type="page_view", timestamp=now - 60),
    ]
    events[2]["properties"].update(crawler)
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    process()
    every = client.get("/v1/series", params={"granularity": "hour"}, headers=READ).json()
    assert sum(p["bot_events"] for p in every["points"]) == 1
    for event_type, periods in (("search", 1), ("page_view", 1), ("nothing", 0)):
        points = client.get(
            "/v1/series", params={"granularity": "hour", "type": event_type}, headers=READ
        ).json()["points"]
        assert len(points) == periods, points
        for point in points:
            assert point["total_events"] == 1
            assert point["events_by_type"] == {event_type: 1}
            assert point["unique_users"] is None and point["bot_events"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"granularity": "hour", "from": "yesterday"},
        {"granularity": "day", "from": "2026-01-02T00:00:00"},
        {"granularity": "day", "from": "2026-02-01", "to": "2026-01-01"},
    ],
)
def test_bad_series_ranges_are_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/v1/series", params=params, headers=READ)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_period", "invalid_range"}


def test_top_event_types_and_active_users(client: TestClient, loaded: float) -> None:
    top = client.get("/v1/top-event-types", headers=READ).json()
    counts = {entry["event_type"]: entry["count"] for entry in top["event_types"]}
    # Events up to 11 minutes old can fall in yesterday's bucket just after midnight.
    assert sum(counts.values()) == top["total_events"] <= 13
    assert [entry["count"] for entry in top["event_types"]] == sorted(counts.values(), reverse=True)
    active = client.get("/v1/active-users", headers=READ).json()
    assert active["last_5_minutes"] == 4  # user_0..2 within 5 min, and team/alice
    assert active["last_30_minutes"] == 4


def test_dead_letters_list_the_collector_rejections(client: TestClient, loaded: float) -> None:
    body = client.get("/v1/dead-letters", headers=READ).json()
    assert body["total"] == 1
    (letter,) = body["items"]
    assert (letter["source"], letter["reason"]) == ("collector", "missing_field:event_type")


def test_dashboard_document(
    client: TestClient, store: Store, settings: Settings, loaded: float
) -> None:
    body = client.get("/v1/dashboard", headers=READ).json()
    periods = Periods(settings.timezone)
    day = periods.label("day", time.time())
    (day_point,) = store.series("day", day, day)
    assert body["totals"]["today"] == day_point.total_events
    assert body["unique_users"]["today"] == day_point.unique_users
    assert len(body["minutes"]) == 60
    assert body["totals"]["last_60_minutes"] == 13
    assert body["dead_letters"] == 1
    assert body["active_users"]["last_5_minutes"] == 4
    recent = [event["timestamp"] for event in body["recent_events"]]
    assert recent == sorted(recent, reverse=True)
    assert len(recent) == 13
    assert [event["who"] for event in body["recent_events"][:2]] == ["user_0", "team/alice"]


def test_the_recent_events_go_on_past_midnight(
    settings: Settings, broker: Any, store: Store, process: Callable[[], None]
) -> None:
    # Three minutes into a day, none of its events yet: the stream still shows the last
    # minutes of the day before (it showed only today's types, so nothing until the first).
    periods = Periods(settings.timezone)
    midnight = periods.start_of("day", periods.label("day", time.time()))
    app = create_app(settings, broker, store, cache_ttl_s=0, clock=lambda: midnight + 180)
    kinds = ("page_view", "search", "signup")
    events = [
        recipe_event(i, event_type=kinds[i % 3], timestamp=midnight - 300 + 30 * i)
        for i in range(6)
    ]
    with TestClient(app) as client:
        assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
        process()
        body = client.get("/v1/dashboard", headers=READ).json()
    assert body["totals"]["today"] == 0 and body["top_event_types"] == []
    assert body["totals"]["last_60_minutes"] == 6
    recent = [(e["event_type"], e["timestamp"]) for e in body["recent_events"]]
    assert recent == [(e["event_type"], e["timestamp"]) for e in reversed(events)]


def test_the_dashboard_says_how_many_messages_wait(
    client: TestClient, process: Callable[[], None]
) -> None:
    # Beside the last commit's age it tells a stopped worker from a quiet store.
    events = [recipe_event(n) for n in range(4)]
    assert client.post("/v1/events", json=events, headers=WRITE).status_code == 202
    assert client.get("/v1/dashboard", headers=READ).json()["backlog"] == 4
    process()
    assert client.get("/v1/dashboard", headers=READ).json()["backlog"] == 0


class CountingStore:
    """Delegates to a store, counting calls and making each slow enough for requests to overlap."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            time.sleep(0.02)
            return target(*args, **kwargs)

        return counted


def test_ten_dashboards_cost_the_store_reads_of_one(
    settings: Settings, broker: Any, store: Store, loaded: float
) -> None:
    counting = CountingStore(store)
    app = create_app(settings, broker, counting, cache_ttl_s=5.0)  # type: ignore[arg-type]

    async def viewers(count: int) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(http.get("/v1/dashboard", headers=READ) for _ in range(count))
            )

    one = asyncio.run(viewers(1))
    assert one[0].status_code == 200
    single = Counter(counting.calls)
    counting.calls.clear()
    app.state.api.cache.clear()
    ten = asyncio.run(viewers(10))
    assert all(response.status_code == 200 for response in ten)
    assert counting.calls == single
    assert {response.json()["totals"]["today"] for response in ten} == {
        one[0].json()["totals"]["today"]
    }


def test_ops_routes(client: TestClient, loaded: float) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": "ok", "store": "ok"}
    metrics = client.get("/metrics", headers=READ)
    assert metrics.status_code == 200
    text = metrics.text
    assert 'ba_api_events_accepted_total{event_type="checkout.step_2"} 1.0' in text
    assert 'ba_api_events_rejected_total{reason="missing_field:event_type"} 1.0' in text
    assert "ba_api_publish_latency_seconds_bucket" in text
    assert "ba_worker_lag_seconds" in text
    assert "ba_dead_letters 1.0" in text
    assert client.get("/docs").status_code == 200
    assert "/v1/batch" in client.get("/openapi.json").json()["paths"]


def test_the_dashboard_page_is_served_openly_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "dashboard.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.split("<body>")[0].replace("http://www.w3.org", "")
    for asset in ["/static/dashboard.js", "/static/dashboard.css"]:
        assert client.get(asset).status_code == 200
