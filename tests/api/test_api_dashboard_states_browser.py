"""The dashboard's states in headless Chromium: a changed or refused read key leaves nothing of
the previous key's figures on the page; a store no event was ever committed to says so on the
cards that would be empty, until events arrive; the values the chart and the retention grid
show on hover are text too, for the keyboard and screen readers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import READ_KEY, WRITE, make_settings, recipe_event
from test_api_dashboard_browser import (
    free_port,
    page_errors,
    wait_for,
)
from test_api_dashboard_filters_browser import _publish, _recent
from test_api_dashboard_resilience_browser import (
    LIVE_CARDS,
    STORE_DOWN,
    Api,
    answer_503,
    loaded,
    settles,
    stale,
    stale_note,
)
from test_api_dashboard_resilience_browser import page_of as page_of  # a fixture

from behavioral_analytics.funnels import PURCHASE_FUNNEL

pytestmark = pytest.mark.browser
KEY_STORAGE = "behavioral-analytics.read-key"  # dashboard.js

NO_EVENTS = (
    "No events yet — send some to POST /v1/events (e.g. behavioral-analytics generate --via http)."
)
NO_EVENTS_SHORT = "No events yet."
REFUSED = "That key was refused."
API_ROUTES = re.compile(r"/v1/")
# What the page shows of a key's figures: each kind, and how much of it.
FIGURES = {
    "values": 'document.querySelectorAll(\'.kpi [data-value]:not([data-value=""]),'
    ' #sessions-card [data-value]:not([data-value=""])\').length',
    "chart columns": "document.querySelectorAll('#chart rect').length",
    "chart values": "document.querySelectorAll('#chart-values tr').length",
    "top types": "document.querySelectorAll('#top-types li').length",
    "funnel steps": "document.querySelectorAll('#funnel-steps li').length",
    "recent events": "document.querySelectorAll('#recent-events tr').length",
    "panels": "document.querySelectorAll('#breakdowns > *').length",
    "cohorts": "document.querySelectorAll('#retention-grid tr').length",
    "updated": "document.getElementById('as-of').textContent.length",
    "marks": "document.querySelectorAll('[data-stale], [data-empty]').length",
}
NOTHING = dict.fromkeys(FIGURES, 0)
# While `window.hold`, each live document reaches the page 1.5 s late (`held`, `released`).
HOLD_LIVE_ANSWERS = """(() => {
  const fetched = window.fetch;
  Object.assign(window, { hold: false, held: 0, released: 0 });
  window.fetch = async (url, options) => {
    const response = await fetched(url, options);
    if (window.hold && String(url) === "/v1/dashboard") {
      window.held++;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      window.released++;
    }
    return response;
  };
})()"""


@pytest.fixture
def empty_api(tmp_path: Path) -> Iterator[Api]:
    """The API and dashboard on a store no event was committed to."""
    settings = make_settings(
        tmp_path, api_port=free_port(), max_event_age_days=14, funnels=PURCHASE_FUNNEL
    )
    server = Api(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(empty_api: Api) -> Api:
    """The same with the filter test's sessions committed, today's about 12 minutes ago (from
    00:02 on in a day's first minutes: `_recent`)."""
    _publish(empty_api.base_url, empty_api.settings, _recent(empty_api.settings.timezone))
    return empty_api


def figures(page: Any) -> dict[str, int]:
    """How much the page shows of each kind of figure (FIGURES)."""
    return {name: page.evaluate(script) for name, script in FIGURES.items()}


def drawn(page: Any) -> None:
    """Waits for every card of a store with events: panels, grid, totals, chart, stream."""
    loaded(page)
    wait_for(lambda: page.locator("#recent-events tr").count() > 0, 20, "the recent events")
    wait_for(lambda: page.locator("#chart rect[fill]").count() > 1, 20, "the chart's columns")
    wait_for(lambda: page.locator("#top-types li").count() > 0, 20, "the top event types")


def stays(what: str, read: Callable[[], Any], expected: Any, seconds: float = 4) -> None:
    """`read()` is `expected` throughout `seconds` (over two live polls): nothing comes back."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shown = read()
        assert shown == expected, f"{what}: shown {shown!r}, expected {expected!r}"
        time.sleep(0.2)


def enter_key(page: Any, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")


def answer_401(route: Any) -> None:
    route.fulfill(status=401, json={"detail": "a read key is needed"})


def empties(page: Any) -> dict[str, str]:
    """Each card saying the store is empty (its id, or `breakdown:DIMENSION`) → what it says
    ("(no note)" for one marked empty without its note: read again until it settles)."""
    found = page.locator("[data-empty]").evaluate_all(
        "items => items.map(i => [i.id || 'breakdown:' + i.dataset.dimension,"
        " i.querySelector(':scope > .no-events')?.textContent ?? '(no note)'])"
    )
    return dict(found)


def test_change_key_and_a_refused_key_leave_nothing_of_the_previous_keys_figures(
    api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.add_init_script(HOLD_LIVE_ANSWERS)
    page.goto(api.base_url + f"/#key={READ_KEY}")
    drawn(page)
    shown = figures(page)
    assert all(shown[name] for name in FIGURES if name != "marks"), shown

    # "change key" while a live answer for the key is on its way: the figures go with the key,
    # before any other is entered, and that answer draws nothing.
    page.evaluate("window.hold = true")
    wait_for(lambda: page.evaluate("window.held") >= 1, 10, "a live answer held")
    page.click("#change-key")
    page.evaluate("window.hold = false")
    assert page.locator("#key-form").is_visible()
    settles("nothing of the previous key", lambda: figures(page), NOTHING, timeout=5)
    wait_for(lambda: page.evaluate("window.released") >= 1, 10, "the held answer")
    stays("nothing once it is read", lambda: figures(page), NOTHING, seconds=2)
    # A key the API refuses: the form says so, and nothing comes back.
    enter_key(page, "rk_not_a_key")
    wait_for(lambda: page.inner_text("#key-error") == REFUSED, 10, "the refusal")
    assert page.locator("#key-form").is_visible()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None  # not kept
    stays("nothing under the key form", lambda: figures(page), NOTHING)

    # The right key: every card drawn again, none marked.
    enter_key(page, READ_KEY)
    drawn(page)
    assert page.locator("#change-key").is_visible()
    settles("no card marked", lambda: stale(page), {})

    # The key refused while the page shows its figures (revoked): they go too.
    page.route(API_ROUTES, answer_401)
    wait_for(lambda: page.inner_text("#key-error") == REFUSED, 10, "the refusal")
    settles("nothing of the refused key", lambda: figures(page), NOTHING, timeout=5)
    stays("nothing under the key form", lambda: figures(page), NOTHING)

    # The key entered again, its first live document fails: nothing was drawn since the
    # refusal, so the cards are "not loaded", not "not refreshed since" a time before it.
    page.unroute(API_ROUTES, answer_401)
    page.route("**/v1/dashboard", answer_503)
    enter_key(page, READ_KEY)
    settles(
        "the live cards marked",
        lambda: {k: v for k, v in stale(page).items() if k in LIVE_CARDS},
        dict.fromkeys(LIVE_CARDS, STORE_DOWN),
    )
    for card in LIVE_CARDS:
        assert stale_note(page, f"#{card}") == f"not loaded — {STORE_DOWN}"
    assert figures(page)["values"] == 0
    page.unroute("**/v1/dashboard", answer_503)
    drawn(page)
    settles("no card marked", lambda: stale(page), {})
    unexpected = [e for e in errors if "status of 401" not in e and "status of 503" not in e]
    assert unexpected == []


def test_an_empty_store_says_so_on_each_card_until_events_arrive(
    empty_api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.goto(empty_api.base_url + f"/#key={READ_KEY}")
    wait_for(lambda: page.inner_text("#status-text") == "no commit yet", 20, "the idle status")
    page.wait_for_selector("#retention-card > .no-events", timeout=20_000)
    dimensions = page.locator(".breakdown").evaluate_all("cs => cs.map(c => c.dataset.dimension)")
    assert "page" in dimensions and "entry_page" in dimensions
    expected = {
        "chart-card": NO_EVENTS,
        "top-card": NO_EVENTS_SHORT,
        "recent-card": NO_EVENTS,
        "retention-card": NO_EVENTS,
        **{f"breakdown:{d}": NO_EVENTS_SHORT for d in dimensions},
        **dict.fromkeys(
            ["kpi-today-card", "kpi-users-card", "active-card", "kpi-60-card"], NO_EVENTS_SHORT
        ),
        **dict.fromkeys(["sessions-card", "funnel-card"], NO_EVENTS_SHORT),
    }
    settles("every empty card says why", lambda: empties(page), expected)
    assert all(note.is_visible() for note in page.locator(".no-events").all())
    # Instead of the flat chart, the empty table and grid, and the day's own "none yet".
    for hidden in ("#chart", "#legend", "#recent-card .stream", "#recent-empty"):
        assert page.locator(hidden).is_hidden(), hidden
    assert page.locator("#retention-grid tr").count() == 0
    assert "No events in this range" not in page.inner_text("#breakdowns")

    # Messages waiting and no commit: said so (a stopped worker looked like a quiet store).
    with httpx.Client(base_url=empty_api.base_url, headers=WRITE, timeout=10) as http:
        sent = http.post("/v1/events", json=[recipe_event(900 + n) for n in range(3)])
        assert sent.status_code == 202
    waits = "no commit yet while 3 messages wait"
    wait_for(lambda: page.inner_text("#status-text") == waits, 20, "the messages waiting")
    assert page.inner_text("#kpi-waiting") == " · 3 waiting"
    assert "warn" in (page.get_attribute("#lag-card", "class") or "")
    _publish(empty_api.base_url, empty_api.settings, _recent(empty_api.settings.timezone))
    settles("no card says the store is empty", lambda: empties(page), {}, timeout=25)
    wait_for(lambda: page.inner_text("#kpi-waiting") == "", 20, "no message waiting")
    assert page.locator(".no-events").count() == 0
    drawn(page)
    assert page.locator("#chart").is_visible() and page.locator("#recent-card .stream").is_visible()
    assert errors == []


def test_a_breakdown_emptied_by_a_failed_range_is_no_longer_said_to_be_of_an_empty_store(
    empty_api: Api, page_of: Callable[[], Any]
) -> None:
    """A new range whose document fails empties the panels (their figures are of another
    range): the "No events yet" note went with them but the card stayed marked empty."""
    page = page_of()
    errors = page_errors(page)
    page.goto(empty_api.base_url + f"/#key={READ_KEY}")
    page.wait_for_selector(".breakdown > .no-events", timeout=20_000)
    dimensions = page.locator(".breakdown").evaluate_all("cs => cs.map(c => c.dataset.dimension)")
    assert dimensions

    page.route(re.compile(r"/v1/dashboard/breakdowns"), answer_503)
    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
    page.fill("#range-from", week_ago)
    page.click("#range-form button[type=submit]")
    panels = {f"breakdown:{d}" for d in dimensions}
    settles(
        "the panels marked",
        lambda: {k: v for k, v in stale(page).items() if k in panels},
        dict.fromkeys(panels, STORE_DOWN),
    )
    assert panels.isdisjoint(empties(page)), empties(page)
    assert page.locator(".breakdown > .no-events").count() == 0
    assert [e for e in errors if "status of 503" not in e] == []


def test_the_values_shown_on_hover_are_text_for_the_keyboard_and_screen_readers(
    api: Api, page_of: Callable[[], Any]
) -> None:
    page = page_of()
    errors = page_errors(page)
    page.goto(api.base_url + f"/#key={READ_KEY}")
    drawn(page)

    # The retention grid: each rate's count in view, and of how many for a screen reader.
    cells = page.locator("#retention-grid td.rate").evaluate_all(
        "cs => cs.map(c => [Number(c.dataset.returning), Number(c.closest('tr').dataset.size),"
        " c.querySelector('.returning').firstChild.textContent, c.textContent])"
    )
    assert cells
    for returning, size, in_view, text in cells:
        assert in_view == str(returning), (in_view, returning)
        assert text.endswith(f"{returning} of {size} returned"), text
    first = page.locator("#retention-grid td.rate .returning").first
    assert first.is_visible()

    # The chart: its name sums it up; the keyboard reaches every minute's values, the ones
    # each column shows on hover.
    page.focus("#change-key")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.chart-values') !== null")
    page.keyboard.press("Enter")
    wait_for(lambda: page.locator("#chart-values tr").first.is_visible(), 5, "the values shown")
    # In one read: a poll may draw a newer minute between two.
    chart = page.evaluate(
        "({label: document.getElementById('chart').getAttribute('aria-label'),"
        " titles: [...document.querySelectorAll('#chart g.column title')].map(t => t.textContent),"
        " rows: [...document.querySelectorAll('#chart-values tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))})"
    )
    columns = []
    for title in chart["titles"]:
        head, *types = title.split("\n")
        found = re.fullmatch(r"(\d\d:\d\d) · (\d+) events", head)
        assert found, head
        columns.append([found.group(1), found.group(2), ", ".join(types)])
    assert chart["rows"] == columns
    counts = [int(events) for _, events, _ in columns]
    total, peak = sum(counts), max(counts)
    busiest = columns[counts.index(peak)][0]
    assert total > 0
    span = f"{columns[0][0]}\N{EN DASH}{columns[-1][0]}"
    assert chart["label"] == (
        f"Events per minute, {span}: {total} in all, at most {peak} ({busiest});"
        " every minute's values are in the table below"
    )
    assert errors == []
