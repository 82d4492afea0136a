"""The dashboard's breakdown panels in headless Chromium over a store with known events: each
panel's values and totals are the store's, the range picker's comparison shows the week before,
and a screenshot is left in test-artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import READ_KEY, WRITE, make_settings, recipe_event, run_worker
from test_api_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    page_errors,
    serving,
    sync_api,
    wait_for,
)

from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_broker, build_store

pytestmark = pytest.mark.browser

SHOP = "https://shop.example"
# (days ago, user, page URL, referrer, device): the last 7 days' range holds the first six,
# the 7 days before it the last two.
VISITS = [
    (0, "u1", f"{SHOP}/pricing?utm_source=news&utm_medium=email", "google.com", "mobile"),
    (0, "u2", f"{SHOP}/pricing?utm_source=news&utm_medium=email", "google.com", "desktop"),
    (0, "u1", f"{SHOP}/docs", "direct", "mobile"),
    (1, "u3", f"{SHOP}/pricing?utm_source=ads&utm_medium=cpc", "bing.com", "mobile"),
    (2, "u4", f"{SHOP}/blog/launch", "news.ycombinator.com", "tablet"),
    (3, "u1", f"{SHOP}/docs", "direct", "mobile"),
    (8, "u5", f"{SHOP}/pricing", "direct", "desktop"),
    (9, "u6", f"{SHOP}/pricing", "direct", "desktop"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    yield from serving(make_settings(tmp_path, api_port=free_port(), max_event_age_days=14))


def _publish(
    base_url: str, settings: Settings, visits: list[tuple[int, str, str, str, str]] = VISITS
) -> str:
    """Publishes `visits` and processes them; returns the UTC day of the latest ones."""
    # Ten minutes before now on the day they fall on: never in the future, whatever the hour.
    now = time.time() - 600
    events = [
        recipe_event(
            i,
            user=user,
            timestamp=now - ago * 86400 + i,
            session_id=f"s{i}",
            properties={"page_url": url, "referrer": referrer, "device_type": device},
        )
        for i, (ago, user, url, referrer, device) in enumerate(visits)
    ]
    response = httpx.post(base_url + "/v1/events", json=events, headers=WRITE, timeout=10)
    assert response.status_code == 202 and len(response.json()["accepted"]) == len(visits)
    broker, store = build_broker(settings), build_store(settings)
    try:
        run_worker(broker, store, settings)
    finally:
        broker.close()
        store.close()
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def panel(page: Any, dimension: str) -> dict[str, tuple[int, str, str | None]]:
    """value → (events, unique users as shown, previous events) of one panel's rows."""
    rows = page.locator(f'.breakdown[data-dimension="{dimension}"] li').evaluate_all(
        "items => items.map(i => [i.dataset.value, Number(i.dataset.events), i.dataset.users,"
        " i.dataset.previous === undefined ? null : i.dataset.previous])"
    )
    return {value: (events, users, previous) for value, events, users, previous in rows}


def test_the_panels_show_the_stores_breakdowns_and_compare(
    served: tuple[str, Settings],
) -> None:
    base_url, settings = served
    latest_day = _publish(base_url, settings)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            errors = page_errors(page)
            page.goto(base_url + f"/#key={READ_KEY}")
            page.wait_for_selector('.breakdown[data-dimension="page"] li', timeout=15_000)

            # The last 7 days by default: the six recent visits; multi-day, so no unique users.
            assert panel(page, "page") == {
                "/pricing": (3, "", None),
                "/docs": (2, "", None),
                "/blog/launch": (1, "", None),
            }
            assert panel(page, "referrer") == {
                "(direct)": (2, "", None),
                "google.com": (2, "", None),
                "bing.com": (1, "", None),
                "news.ycombinator.com": (1, "", None),
            }
            assert {v: n for v, (n, _, _) in panel(page, "utm_source").items()} == {
                "news": 2,
                "(none)": 3,
                "ads": 1,
            }
            assert {v: n for v, (n, _, _) in panel(page, "device").items()} == {
                "mobile": 4,
                "desktop": 1,
                "tablet": 1,
            }
            totals = page.locator(".breakdown .total").evaluate_all(
                "items => items.map(i => Number(i.dataset.value))"
            )
            assert totals and set(totals) == {6}
            assert page.locator(".breakdown").count() >= 9

            # One day: unique users per value are shown.
            page.fill("#range-from", latest_day)
            page.fill("#range-to", latest_day)
            page.click("#range-form button[type=submit]")
            wait_for(
                lambda: panel(page, "page").get("/pricing", (0, "", None))[:2] == (2, "2"),
                10,
                "one day's pages",
            )
            assert panel(page, "page")["/docs"][:2] == (1, "1")

            # The last 7 days against the 7 before: /pricing had two visits then.
            page.fill("#range-from", "")
            page.fill("#range-to", "")
            page.check("#range-compare")
            wait_for(
                lambda: panel(page, "page").get("/pricing", (0, "", None))[2] == "2",
                10,
                "the previous week beside the current one",
            )
            assert panel(page, "page")["/docs"] == (2, "", "0")
            assert " vs " in page.inner_text("#range-shown")

            # Clicking a value filters: its events per day over the range, and the week before.
            page.click('.breakdown[data-dimension="page"] li[data-value="/pricing"]')
            page.wait_for_selector("#filter-card:not([hidden])", timeout=10_000)
            wait_for(
                lambda: page.get_attribute("#filter-total", "data-value") == "3",
                10,
                "the filtered total",
            )
            assert page.get_attribute("#filter-previous", "data-value") == "2"
            days = page.locator("#filter-days li").evaluate_all(
                "items => items.map(i => Number(i.dataset.events))"
            )
            assert sum(days) == 3 and all(n >= 0 for n in days)
            assert (page.text_content("#filter-name") or "").endswith(": /pricing")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-breakdowns.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


# The 7 days before the last 7: eleven pages twice each and /rare once, so that range lists
# ten values (values_not_shown 2); the last 7 days: /rare three times, /fresh once, and one
# day of 101 pages, one more than a day admits (`(other)`).
BEYOND_TOP = [
    *[(8, f"v{n}{k}", f"{SHOP}/p{n}", "direct", "mobile") for n in range(11) for k in range(2)],
    (9, "w1", f"{SHOP}/rare", "direct", "mobile"),
    *[(1, f"r{k}", f"{SHOP}/rare", "direct", "mobile") for k in range(3)],
    (0, "f1", f"{SHOP}/fresh", "direct", "mobile"),
    *[(2, f"o{n}", f"{SHOP}/once{n}", "direct", "mobile") for n in range(101)],
]


def test_a_value_beyond_the_earlier_ranges_top_values_is_not_called_new(
    served: tuple[str, Settings],
) -> None:
    """The range before lists its top ten values only: a value it did not list had at most
    its smallest listed count there, and says so (`before: ≤ 2`), never "new". `(other)` is
    not offered as a filter."""
    base_url, settings = served
    _publish(base_url, settings, BEYOND_TOP)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.goto(base_url + f"/#key={READ_KEY}")
            page.wait_for_selector('.breakdown[data-dimension="page"] li', timeout=15_000)
            page.check("#range-compare")
            wait_for(
                lambda: panel(page, "page").get("/rare", (0, "", None))[2] == "<=2",
                10,
                "the earlier range's bound beside /rare",
            )
            assert panel(page, "page")["/fresh"] == (1, "", "<=2")
            shown = page.inner_text('.breakdown[data-dimension="page"] li[data-value="/rare"]')
            assert "before: ≤ 2" in shown and "new" not in shown
            # `(other)` is no value to filter on: its row is not a link.
            other = page.locator('.breakdown[data-dimension="page"] li[data-value="(other)"]')
            assert other.count() == 1 and "pick" not in (other.get_attribute("class") or "")
        finally:
            browser.close()
