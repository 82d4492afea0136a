"""The dashboard on a store no event was ever committed to, in headless Chromium: the KPI tiles,
the sessions and the funnel say "No events yet." like the other cards, until the first commit;
the breakdowns are then asked again at once, not at their 15 s refresh; what a dash for a
figure or a panel's users note means is visible text beside it, not only a tooltip."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import READ_KEY
from test_api_dashboard_browser import page_errors, wait_for
from test_api_dashboard_filters_browser import _publish, _recent, chips
from test_api_dashboard_resilience_browser import Api, settles
from test_api_dashboard_resilience_browser import page_of as page_of  # a fixture
from test_api_dashboard_states_browser import NO_EVENTS, NO_EVENTS_SHORT, empties
from test_api_dashboard_states_browser import api as api  # a fixture
from test_api_dashboard_states_browser import empty_api as empty_api  # a fixture

from behavioral_analytics.breakdown_report import MULTI_DAY_NOTE
from behavioral_analytics.raw_queries import RAW_NOTE

pytestmark = pytest.mark.browser

# The tiles whose zeros count events (not the lag, "never", nor the dead letters).
EVENT_TILES = [
    "kpi-today-card",
    "kpi-users-card",
    "active-card",
    "kpi-60-card",
    "sessions-card",
    "funnel-card",
]
# The breakdowns' (and the filtered tiles') scheduled 15 s refresh never comes: panels drawn
# after the first events were asked again by the first commit's news (breakdowns.js POLL_MS).
NO_SCHEDULED_REFRESH = """(() => {
  const scheduled = window.setTimeout;
  window.setTimeout = (run, ms, ...args) => (ms === 15000 ? 0 : scheduled(run, ms, ...args));
})()"""
PER_DAY_ONLY = (
    "users per day only (not shown for several days: one person active on two days would"
    " count twice)"
)
OVER_THE_RANGE = "users over the whole range (each person once)"
USERS_HOUR_WHY = "(kept per day only for a filter)"
DASH = "\N{EN DASH}"
HOUR_SERIES = re.compile(r"/v1/series\?.*granularity=hour")


def panels_drawn(page: Any) -> bool:
    """Every breakdown panel drawn from events: none says the store is empty, pages listed."""
    return bool(
        page.evaluate(
            "document.querySelectorAll('.breakdown[data-empty]').length === 0"
            " && document.querySelectorAll('.breakdown[data-dimension=\"page\"] li').length > 0"
        )
    )


def test_the_tiles_say_an_empty_store_is_empty_and_the_panels_are_asked_again_at_once(
    empty_api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.add_init_script(NO_SCHEDULED_REFRESH)
    page.goto(empty_api.base_url + f"/#key={READ_KEY}")
    wait_for(lambda: page.inner_text("#status-text") == "no commit yet", 20, "the idle status")
    page.wait_for_selector("#retention-card > .no-events", timeout=20_000)
    page.wait_for_selector('.breakdown[data-dimension="page"] > .no-events', timeout=20_000)
    dimensions = page.locator(".breakdown").evaluate_all("cs => cs.map(c => c.dataset.dimension)")

    # Every card that counts events says why its figures are zeros or empty.
    expected = {
        "chart-card": NO_EVENTS,
        "top-card": NO_EVENTS_SHORT,
        "recent-card": NO_EVENTS,
        "retention-card": NO_EVENTS,
        **dict.fromkeys(EVENT_TILES, NO_EVENTS_SHORT),
        **{f"breakdown:{d}": NO_EVENTS_SHORT for d in dimensions},
    }
    settles("every empty card says why", lambda: empties(page), expected)
    for tile in EVENT_TILES:
        note = page.locator(f"#{tile} > .no-events")
        assert note.is_visible(), tile
        # The same look as the other cards' words.
        assert note.get_attribute("class") == "empty no-events", tile
        assert page.get_attribute(f"#{tile}", "data-empty") == "no-events"
    # The zeros are true, and stay beside the words (today's sessions: none kept yet, a dash).
    for figure in ("kpi-today", "kpi-users-today", "kpi-active-5", "kpi-60"):
        assert page.get_attribute(f"#{figure}", "data-value") == "0", figure
    assert page.inner_text("#sessions-count") == DASH
    assert page.locator("#funnel-steps li").count() > 0
    assert page.inner_text("#kpi-commit") == "never"
    assert page.locator("#lag-card > .no-events, #dead-card > .no-events").count() == 0

    # The first events: the panels are asked again at the next live document (their 15 s
    # refresh is held back, NO_SCHEDULED_REFRESH).
    _publish(empty_api.base_url, empty_api.settings, _recent(empty_api.settings.timezone))
    wait_for(lambda: panels_drawn(page), 30, "the panels asked again at the first commit")

    # Every card's words go with the first commit, the tiles' too.
    settles("no card says the store is empty", lambda: empties(page), {}, timeout=10)
    assert page.locator(".no-events").count() == 0
    wait_for(lambda: page.get_attribute("#kpi-today", "data-value") not in ("", "0"), 10, "events")
    assert errors == []


def test_what_a_dash_or_a_users_note_means_is_visible_text_beside_it(
    api: Api, page_of: Callable[[], Any]
) -> None:
    """The breakdown panels' users notes and the dash of unique users this hour (filtered: the
    aggregates keep unique users per day only) are explained in view, and on hover still."""
    page = page_of()
    errors = page_errors(page)

    def users_per_day_only(route: Any) -> None:
        """The filtered hour series, with no unique users in its points (as the aggregates
        answer), whether or not the sessions fall in this hour."""
        response = route.fetch()
        body = response.json()
        points = body["points"]
        if not points:
            hour = re.search(r"[?&]from=([^&]+)", route.request.url)
            assert hour is not None
            points.append({"period": hour.group(1), "total_events": 0})
        for point in points:
            point["unique_users"] = None
        route.fulfill(response=response, json=body)

    page.route(HOUR_SERIES, users_per_day_only)
    page.goto(api.base_url + f"/#key={READ_KEY}")
    page.wait_for_selector('.breakdown[data-dimension="page"] li', timeout=20_000)
    wait_for(lambda: page.get_attribute("#kpi-users-hour", "data-value"), 20, "users this hour")

    # Unfiltered, a range of days: each event panel says why it lists no users, in view.
    notes = page.locator('.breakdown:not(.sessions-panel) .note:has-text("users per day only")')
    assert notes.count() > 0
    for note in notes.all():
        assert note.is_visible()
        assert PER_DAY_ONLY in note.inner_text()
        assert note.get_attribute("title") == MULTI_DAY_NOTE
    # Unique users this hour are a number: nothing to explain.
    assert page.locator("#kpi-users-hour-why").is_hidden()
    assert page.get_attribute("#kpi-users-hour", "title") is None

    # Filtered on mobile: unique users this hour are a dash, and the tile says why beside it.
    page.click('.breakdown[data-dimension="device"] li[data-value="mobile"]')
    wait_for(lambda: chips(page) == [("device", "mobile")], 20, "the chip")
    why = page.locator("#kpi-users-hour-why")
    wait_for(why.is_visible, 20, "why the users this hour are a dash")
    assert why.inner_text() == USERS_HOUR_WHY
    assert page.inner_text("#kpi-users-hour") == DASH
    # In the tile's own line, read with the figure: "this hour DASH (kept ...)".
    line = page.locator("#kpi-users-card .sub").inner_text()
    assert re.fullmatch("this hour " + DASH + r"\s+" + re.escape(USERS_HOUR_WHY), line), line
    assert page.get_attribute("#kpi-users-hour", "title")
    # Narrowed, each panel's users are over the whole range: said so, why in view.
    device = page.locator('.breakdown[data-dimension="device"] .note')
    wait_for(
        lambda: device.count() == 1 and OVER_THE_RANGE in device.inner_text(),
        20,
        "the raw users note",
    )
    assert device.is_visible() and device.get_attribute("title") == RAW_NOTE

    # The filter cleared: the live figure again, and nothing left to explain.
    page.click("#filter-clear")
    wait_for(why.is_hidden, 20, "the explanation gone")
    assert page.get_attribute("#kpi-users-hour", "title") is None
    assert page.get_attribute("#kpi-users-hour", "data-value")
    assert errors == []
