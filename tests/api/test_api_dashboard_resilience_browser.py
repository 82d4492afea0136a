"""The dashboard when a refresh fails, in headless Chromium: with the API stopped, or a route
answering 503 (Playwright's `page.route`), every panel that could not refresh keeps its figures
under "not refreshed since HH:MM:SS — why" (`data-stale` holds why) until a refresh succeeds;
a filter the API refuses is said once, in the filter bar, not by every panel; breakdown values
are buttons for the keyboard too."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import READ_KEY, make_settings
from test_api_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    page_errors,
    sync_api,
    wait_for,
)
from test_api_dashboard_filters_browser import _publish, _recent, chips, panel

from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_server

pytestmark = pytest.mark.browser

# The cards the live document draws, and the breakdowns' cards of the range.
LIVE_CARDS = [
    "kpi-today-card",
    "kpi-users-card",
    "active-card",
    "kpi-60-card",
    "lag-card",
    "dead-card",
    "chart-card",
    "top-card",
    "sessions-card",
    "funnel-card",
    "recent-card",
]
NARROWED = ["kpi-today-card", "kpi-users-card", "kpi-60-card", "chart-card", "top-card"]
NOT_NARROWED = ["active-card", "lag-card", "dead-card", "recent-card"]
SINCE = re.compile(r"^not refreshed since \d\d:\d\d:\d\d — (.+)$")
UNREACHABLE = "the server could not be reached"
STORE_DOWN = "the server answered 503 (the store does not answer)"
FILTERED_ROUTES = re.compile(r"/v1/(series|sessions|funnels/|retention|breakdowns/)")


class Api:
    """The API and dashboard on one port, in a thread, that a test can stop and start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.api_port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = build_server(self.settings)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server.started, 15, "uvicorn to start")

    def stop(self) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(15)
        assert not self._thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = make_settings(
        tmp_path, api_port=free_port(), max_event_age_days=14, funnels=PURCHASE_FUNNEL
    )
    server = Api(settings)
    server.start()
    _publish(server.base_url, settings, _recent(settings.timezone))
    yield server
    server.stop()


@pytest.fixture
def page_of() -> Iterator[Callable[[], Any]]:
    """A new Chromium page, 1440 by 1600 px, the browser closed after the test."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield lambda: browser.new_page(viewport={"width": 1440, "height": 1600})
        finally:
            browser.close()


def stale(page: Any) -> dict[str, str]:
    """Each marked element (its id, or `breakdown:DIMENSION`) → its `data-stale`."""
    found = page.locator("[data-stale]").evaluate_all(
        "items => items.map(i => [i.id || 'breakdown:' + i.dataset.dimension, i.dataset.stale])"
    )
    return dict(found)


def stale_note(page: Any, selector: str) -> str:
    """The "not refreshed since …" line of one card ("" without one)."""
    note = page.locator(f"{selector} > .stale-note")
    return str(note.inner_text()) if note.count() else ""


def value(page: Any, selector: str) -> str | None:
    return page.get_attribute(selector, "data-value")


def settles(what: str, read: Callable[[], Any], expected: Any, timeout: float = 25) -> None:
    """Waits until `read()` is `expected`; the failure shows what was shown last."""
    shown: list[Any] = [None]

    def equal() -> bool:
        shown[0] = read()
        return bool(shown[0] == expected)

    try:
        wait_for(equal, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: shown {shown[0]!r}, expected {expected!r}") from None


def answer_503(route: Any) -> None:
    route.fulfill(
        status=503,
        json={"error": "store_unavailable", "detail": "the store does not answer"},
    )


def loaded(page: Any) -> list[str]:
    """Opens the dashboard and waits for its panels; returns the breakdowns' dimensions."""
    page.wait_for_selector('.breakdown[data-dimension="page"] li', timeout=20_000)
    page.wait_for_selector("#retention-grid tbody tr", timeout=20_000)
    wait_for(lambda: value(page, "#kpi-today"), 20, "the events today")
    dimensions = page.locator(".breakdown").evaluate_all("cs => cs.map(c => c.dataset.dimension)")
    assert "page" in dimensions and "entry_page" in dimensions
    return list(dimensions)


def test_with_the_api_stopped_every_panel_says_since_when_and_clears_when_it_is_back(
    api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.goto(api.base_url + f"/#key={READ_KEY}")
    dimensions = loaded(page)
    assert stale(page) == {}
    today = value(page, "#kpi-today")
    pages = panel(page, "page", "events")
    cohorts = page.locator("#retention-grid tbody tr").count()

    api.stop()
    # The live cards within a poll or two (1.5 s); the breakdowns at their next load, asked
    # now (the range form) rather than in 15 s.
    settles(
        "the live cards marked",
        lambda: {k: v for k, v in stale(page).items() if k in LIVE_CARDS},
        dict.fromkeys(LIVE_CARDS, UNREACHABLE),
    )
    page.click("#range-form button[type=submit]")
    everything = {
        **dict.fromkeys(LIVE_CARDS, UNREACHABLE),
        **{f"breakdown:{d}": UNREACHABLE for d in dimensions},
        "retention-card": UNREACHABLE,
    }
    settles("every panel marked", lambda: stale(page), everything)
    for selector in ("#kpi-today-card", "#recent-card", '.breakdown[data-dimension="page"]'):
        match = SINCE.match(stale_note(page, selector))
        assert match and match.group(1) == UNREACHABLE, (selector, stale_note(page, selector))
        assert page.locator(f"{selector} > .stale-note").is_visible()
    # The earlier figures stand.
    assert value(page, "#kpi-today") == today
    assert panel(page, "page", "events") == pages
    assert page.locator("#retention-grid tbody tr").count() == cohorts
    assert page.get_attribute("#status", "data-state") == "offline"

    api.start()
    page.click("#range-form button[type=submit]")
    settles("no panel marked", lambda: stale(page), {})
    assert page.locator(".stale-note").count() == 0
    assert value(page, "#kpi-today") == today
    assert panel(page, "page", "events") == pages
    wait_for(lambda: page.get_attribute("#status", "data-state") != "offline", 10, "the status")
    # Chromium logs each refused connection as a console error.
    assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_a_503_marks_only_the_panels_it_answers_and_a_filtered_panel_keeps_its_figures(
    api: Api, page_of: Callable[[], Any]
) -> None:
    """Filtered by device:mobile, the filtered routes answer 503: the narrowed panels and tiles
    keep their mobile figures, marked with the server's reason; the cards of the live document
    (not narrowed) stay fresh. Unrouted, every mark clears."""
    page = page_of()
    errors = page_errors(page)
    page.goto(api.base_url + f"/#key={READ_KEY}&filter=device:mobile")
    dimensions = loaded(page)
    wait_for(lambda: value(page, "#filter-total"), 20, "the filtered total")
    settles("every filtered answer drawn", lambda: stale(page), {})
    total = value(page, "#filter-total")
    today = value(page, "#kpi-today")
    devices = panel(page, "device", "events")
    assert set(devices) == {"mobile"}

    page.route(FILTERED_ROUTES, answer_503)
    # The range form asks the panels, the filtered days, the sessions and funnel tiles and the
    # retention grid again; the totals, the chart and the top types are asked every 15 s.
    page.click("#range-form button[type=submit]")
    marked = {
        **dict.fromkeys(NARROWED, STORE_DOWN),
        "sessions-card": STORE_DOWN,
        "funnel-card": STORE_DOWN,
        "filter-card": STORE_DOWN,
        "retention-card": STORE_DOWN,
        **{f"breakdown:{d}": STORE_DOWN for d in dimensions},
    }
    settles("the filtered panels marked", lambda: stale(page), marked, timeout=40)
    for selector in ("#filter-card", "#kpi-today-card", '.breakdown[data-dimension="device"]'):
        match = SINCE.match(stale_note(page, selector))
        assert match and match.group(1) == STORE_DOWN, (selector, stale_note(page, selector))
    assert value(page, "#filter-total") == total
    assert value(page, "#kpi-today") == today
    assert panel(page, "device", "events") == devices
    # A failure is the card's mark, not also an error message.
    assert page.locator("#filter-note.error, #kpi-today-note.error").count() == 0
    assert all(stale_note(page, f"#{card}") == "" for card in NOT_NARROWED)

    page.unroute(FILTERED_ROUTES, answer_503)
    page.click("#range-form button[type=submit]")
    settles("no panel marked", lambda: stale(page), {}, timeout=40)
    assert value(page, "#filter-total") == total
    assert panel(page, "device", "events") == devices
    assert [e for e in errors if "status of 503" not in e] == []


def test_a_refused_filter_is_said_once_in_the_filter_bar(
    api: Api, page_of: Callable[[], Any]
) -> None:
    """An unknown dimension in the address: the API's refusal once, beside the filters, its
    chip marked; each panel blank with a short pointer, no error of its own; nothing filtered
    is asked again until the filters change. Removing the chip narrows the page by the rest."""
    page = page_of()
    errors = page_errors(page)
    page.add_init_script(
        "(() => { const f = window.fetch; window.filteredAsks = 0;"
        " window.fetch = (u, o) => { if (String(u).includes('filter=')) window.filteredAsks++;"
        " return f(u, o); };"
        " window.ranged = 0;"
        " document.addEventListener('dashboard-range', () => window.ranged++); })()"
    )
    page.goto(api.base_url + f"/#key={READ_KEY}&filter=browsr:chrome&filter=device:mobile")
    page.wait_for_selector("#filter-error:not([hidden])", timeout=20_000)
    refusal = page.inner_text("#filter-error")
    assert "browsr:chrome" in refusal and "is not DIMENSION:VALUE" in refusal, refusal
    page.wait_for_selector('.breakdown[data-dimension="page"] .unavailable', timeout=20_000)
    wait_for(lambda: page.evaluate("window.ranged") >= 1, 20, "the range's panels")
    waits_for_tiles = [
        "#kpi-today-note",
        "#chart-note",
        "#top-note",
        "#sessions-note",
        "#retention-note",
        "#filter-note",
    ]
    for note in waits_for_tiles:
        wait_for(lambda note=note: page.locator(note).is_visible(), 20, f"{note} shown")
    text = page.inner_text("body")
    assert text.count("is not DIMENSION:VALUE") == 1, text
    refused = page.locator(".filter-chip.refused")
    assert refused.count() == 1 and refused.get_attribute("data-dimension") == "browsr"
    assert refused.get_attribute("aria-invalid") == "true"
    assert page.get_attribute("#filter-error", "role") == "alert"
    # The panels: blank, a muted pointer each, no error of their own.
    assert page.locator(".breakdown .error, .tile-note.error").count() == 0
    assert page.locator(".breakdown li").count() == 0
    assert value(page, "#kpi-today") == "" and value(page, "#filter-total") == ""
    assert page.locator("#retention-grid tbody tr").count() == 0
    assert stale(page) == {}

    # Nothing filtered is asked while the filters stay refused.
    asked = page.evaluate("window.filteredAsks")
    assert 0 < asked <= 25, asked
    ranged = page.evaluate("window.ranged")
    page.click("#range-form button[type=submit]")
    wait_for(lambda: page.evaluate("window.ranged") > ranged, 20, "the panels asked again")
    assert page.evaluate("window.filteredAsks") == asked

    page.click('#filter-chips .filter-chip[data-dimension="browsr"]')
    settles("one chip", lambda: chips(page), [("device", "mobile")])
    wait_for(lambda: page.locator("#filter-error").is_hidden(), 10, "the refusal gone")
    wait_for(lambda: value(page, "#filter-total"), 20, "the mobile total")
    settles("mobile devices", lambda: set(panel(page, "device", "events")), {"mobile"})
    wait_for(lambda: value(page, "#kpi-today"), 20, "the mobile events today")
    assert page.locator(".unavailable.refused").count() == 0
    assert errors == []


def test_breakdown_values_are_buttons_for_the_keyboard_and_the_status_is_announced(
    api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.goto(api.base_url + f"/#key={READ_KEY}")
    loaded(page)
    assert page.get_attribute("#status", "role") == "status"
    assert page.get_attribute("#status", "aria-live") == "polite"

    names = page.locator('.breakdown[data-dimension="page"] li.pick .name')
    assert names.count() >= 2
    assert names.first.get_attribute("role") == "button"
    assert names.first.get_attribute("tabindex") == "0"
    # Tab from the first value reaches the second; the panels' refresh keeps it focused.
    names.first.focus()
    page.keyboard.press("Tab")
    second = names.nth(1).get_attribute("title")
    focused = page.evaluate("document.activeElement.title")
    assert focused == second, (focused, second)
    before = names.nth(1).element_handle()
    page.evaluate("document.getElementById('range-form').requestSubmit()")
    wait_for(lambda: not before.evaluate("e => e.isConnected"), 20, "the panels redrawn")
    wait_for(lambda: page.evaluate("document.activeElement.title") == second, 10, "the focus kept")
    # Enter filters by it.
    page.keyboard.press("Enter")
    settles("the chip", lambda: chips(page), [("page", second)])
    chosen = f'.breakdown[data-dimension="page"] li[data-value="{second}"] .name'
    wait_for(lambda: page.get_attribute(chosen, "aria-pressed") == "true", 20, "the value pressed")
    # Space on a device value adds a second filter.
    device = page.locator('.breakdown[data-dimension="device"] li.pick .name').first
    device.wait_for(timeout=20_000)
    device_value = device.get_attribute("title")
    device.focus()
    page.keyboard.press(" ")
    settles("two chips", lambda: chips(page), [("page", second), ("device", device_value)])
    assert errors == []
