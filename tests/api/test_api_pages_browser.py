"""Pages in headless Chromium, seen from another time zone and without internet access:
every time on the dashboard is in the reporting zone, 24-hour, and the zone is named; `/docs`
renders Swagger UI from the API's own assets (no request leaves loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from api_helpers import (
    READ_KEY,
    WRITE,
    make_settings,
    recipe_event,
    run_worker,
    today_from,
    wait_past,
)
from test_api_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    serving,
    sync_api,
    wait_for,
)

from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_broker, build_store

pytestmark = pytest.mark.browser

ZONE = "Asia/Tokyo"  # the reporting zone; the browser is in New York, in English (US)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    yield from serving(make_settings(tmp_path, api_port=free_port(), timezone=ZONE))


def offline_page(browser: Any, outside: list[str]) -> Any:
    """A page in New York's zone whose requests off loopback are refused and recorded."""
    context = browser.new_context(timezone_id="America/New_York", locale="en-US")
    page = context.new_page()

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if urlsplit(url).hostname in ("127.0.0.1", "localhost") or url.startswith("data:"):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    page.route("**/*", route)
    return page


def test_every_dashboard_time_is_in_the_reporting_zone(served: tuple[str, Settings]) -> None:
    base_url, settings = served
    # Half a minute back, on today in the zone: the recent events are those of today's types.
    moment = today_from(30, ZONE, 1)
    wait_past(moment)
    with httpx.Client(base_url=base_url, headers=WRITE, timeout=10) as http:
        response = http.post("/v1/events", json=[recipe_event(1, timestamp=moment)])
        assert response.status_code == 202, response.text
    broker, store = build_broker(settings), build_store(settings)
    try:
        run_worker(broker, store, settings)
    finally:
        broker.close()
        store.close()
    expected = datetime.fromtimestamp(moment, ZoneInfo(ZONE)).strftime("%H:%M:%S")

    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = offline_page(browser, outside)
            page.goto(base_url + f"/#key={READ_KEY}")
            wait_for(lambda: page.locator("#recent-events tr").count() == 1, 20, "the event")
            shown = page.locator("#recent-events tr td").first.inner_text()
            assert shown == expected
            assert page.locator("#recent-tz").inner_text() == ZONE
            as_of = page.locator("#as-of").inner_text()
            assert as_of.startswith("updated ") and as_of.endswith(f" {ZONE}"), as_of
            clock = as_of.removeprefix("updated ").removesuffix(f" {ZONE}")
            assert len(clock) == 8 and clock[2] == clock[5] == ":", as_of
            text = page.locator("body").inner_text()
            assert " AM" not in text and " PM" not in text
        finally:
            browser.close()
    assert outside == []


def test_docs_render_offline(served: tuple[str, Settings]) -> None:
    base_url, _ = served
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = offline_page(browser, outside)
            page.goto(base_url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
            assert page.locator(".opblock").count() > 10
            assert "behavioral-analytics" in page.locator(".swagger-ui .title").inner_text()
        finally:
            browser.close()
    assert outside == []
