"""The dashboard's entry and exit pages, its retention grid and its whole-page filters in
headless Chromium over a store with known sessions: the numbers shown are the ones computed
here from the sessions below (not read back from the store), a click narrows every panel and
tile, a chip removes its filter, a reload keeps them; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

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
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    page_errors,
    serving,
    sync_api,
    wait_for,
)

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdown_report import HOUR_NOTE, MULTI_DAY_NOTE
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.raw_queries import RAW_NOTE
from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_broker, build_store

pytestmark = pytest.mark.browser

# (days ago, person, session id, device, pages in order): one event per page, 10 s apart.
SESSIONS = [
    (1, "u1", "s1", "mobile", ["/pricing", "/docs", "/signup"]),
    (1, "u2", "s2", "desktop", ["/pricing", "/docs"]),
    (1, "u3", "s3", "mobile", ["/blog"]),
    (0, "u1", "s4", "mobile", ["/docs", "/pricing"]),
    (0, "u2", "s5", "desktop", ["/pricing"]),
    (0, "u4", "s6", "desktop", ["/blog", "/pricing"]),
]
Session = tuple[int, str, str, str, list[str]]
STATIC = Path(__file__).parents[2] / "src/behavioral_analytics/api/static"
SMALL_SCAN = 3  # BA_RAW_SCAN_MAX_EVENTS of the refused-filter test: fewer than the events


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    yield from serving(
        make_settings(
            tmp_path, api_port=free_port(), max_event_age_days=14, funnels=PURCHASE_FUNNEL
        )
    )


def _past_midnight(timezone: str) -> float:
    """Now, once at least 6 minutes of the day have passed in `timezone`: the sessions of
    today (`_times`) lie 2 to 5 minutes back, and the tiles read "today" (a run at 00:01 put
    them yesterday, and the totals and the refused scans came out otherwise). Waits at most
    6 minutes, only in the first 6 of a day."""
    periods = Periods(timezone)
    into_day_s = time.time() - periods.start_of("day", periods.label("day", time.time()))
    if into_day_s < 360:
        time.sleep(360 - into_day_s)
    return time.time()


def _times(now: float) -> dict[str, list[float]]:
    """Each session's event times: 2 to 4 minutes before `now`, on its day."""
    return {
        sid: [now - ago * 86400 - 240 + 20 * k + 2 * j for j in range(len(pages))]
        for k, (ago, _, sid, _, pages) in enumerate(SESSIONS)
    }


def _recent(timezone: str) -> dict[str, list[float]]:
    """`_times` of about 10 minutes ago (today's sessions 12 to 14 minutes back), each session
    on its own day whatever the hour: dated from no earlier than 00:05 in `timezone`, today's
    sessions fall from 00:02 on and yesterday's on yesterday (10 minutes back put today's on
    yesterday in a day's first 14 minutes, and the dashboard's "today" and its recent events
    never came). Before 00:02:42 this waits until every event is in the past."""
    times = _times(today_from(600, timezone, 300))
    wait_past(max(moment for moments in times.values() for moment in moments))
    return times


def _publish(base_url: str, settings: Settings, times: dict[str, list[float]]) -> None:
    events = []
    for _, user, sid, device, pages in SESSIONS:
        for j, page in enumerate(pages):
            events.append(
                recipe_event(
                    len(events),
                    user=user,
                    event_type=_type(pages, j),
                    timestamp=times[sid][j],
                    session_id=sid,
                    properties={
                        "page_url": f"https://shop.example{page}",
                        "device_type": device,
                    },
                )
            )
    response = httpx.post(base_url + "/v1/events", json=events, headers=WRITE, timeout=10)
    assert response.status_code == 202 and len(response.json()["accepted"]) == len(events)
    broker, store = build_broker(settings), build_store(settings)
    try:
        run_worker(broker, store, settings)
    finally:
        broker.close()
        store.close()


def _type(pages: list[str], index: int) -> str:
    """A session's last event of several is a click, the others page views."""
    return "button_click" if len(pages) > 1 and index == len(pages) - 1 else "page_view"


def _today(
    filters: dict[str, str], times: dict[str, list[float]], day_of: Callable[[float], str]
) -> tuple[int, int, dict[str, int]]:
    """Today's matching events: their count, their people and their count per event type."""
    keep = _keep(filters)
    today = day_of(time.time())
    found = [
        (session[1], _type(session[4], j))
        for session in SESSIONS
        for j, page in enumerate(session[4])
        if keep(session, page) and day_of(times[session[2]][j]) == today
    ]
    return len(found), len({user for user, _ in found}), dict(Counter(t for _, t in found))


def _keep(filters: dict[str, str]) -> Callable[[Session, str], bool]:
    """Whether an event (its session, its page) matches every filter."""

    def match(session: Session, page: str) -> bool:
        want = {"device": session[3], "page": page}
        return all(want[dimension] == value for dimension, value in filters.items())

    return match


def _pages(filters: dict[str, str]) -> dict[str, int]:
    keep = _keep(filters)
    return dict(Counter(page for s in SESSIONS for page in s[4] if keep(s, page)))


def _devices(filters: dict[str, str]) -> dict[str, int]:
    keep = _keep(filters)
    return dict(Counter(s[3] for s in SESSIONS for page in s[4] if keep(s, page)))


def _edges(index: int, filters: dict[str, str]) -> dict[str, int]:
    """Sessions per entry (index 0) or exit (-1) page, of the sessions whose first event
    matches the filters (the session-scoped rule)."""
    keep = _keep(filters)
    return dict(Counter(s[4][index] for s in SESSIONS if keep(s, s[4][0])))


def _retention(
    day_of: Callable[[float], str],
    times: dict[str, list[float]],
    filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """cohort day → (size, returning per day offset), from each person's active days; with
    `filters`, only the people with an event matching them on their first day."""
    keep = _keep(filters or {})
    active: dict[str, set[str]] = {}
    matching: set[tuple[str, str]] = set()
    for session in SESSIONS:
        _, user, sid, _, pages = session
        for t, page in zip(times[sid], pages, strict=True):
            active.setdefault(user, set()).add(day_of(t))
            if keep(session, page):
                matching.add((user, day_of(t)))
    today = day_of(time.time())
    table: dict[str, list[int]] = {}
    for user, days in active.items():
        first = min(days)
        if (user, first) not in matching:
            continue
        width = _day_number(today) - _day_number(first) + 1
        row = table.setdefault(first, [0] * width)
        for day in days:
            row[_day_number(day) - _day_number(first)] += 1
    return {day: (row[0], row) for day, row in table.items()}


def _day_number(label: str) -> int:
    return date.fromisoformat(label).toordinal()


def panel(page: Any, dimension: str, field: str) -> dict[str, int]:
    """value → the count a panel shows (`events` or `sessions`)."""
    rows = page.locator(f'.breakdown[data-dimension="{dimension}"] li').evaluate_all(
        f"items => items.map(i => [i.dataset.value, Number(i.dataset.{field})])"
    )
    return dict(rows)


def grid(page: Any) -> dict[str, Any]:
    rows = page.locator("#retention-grid tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.cohort, Number(r.dataset.size),"
        " [...r.querySelectorAll('td.rate')].map(c => Number(c.dataset.returning))])"
    )
    return {cohort: (size, returning) for cohort, size, returning in rows}


def number(page: Any, selector: str) -> int | None:
    value = page.get_attribute(selector, "data-value")
    return int(value) if value else None


def top_types(page: Any) -> dict[str, int]:
    """event type → the count today's top event types show."""
    rows = page.locator("#top-types li").evaluate_all(
        "items => items.map(i => [i.querySelector('.name').textContent,"
        " Number(i.querySelector('.count').textContent.replace(/,/g, ''))])"
    )
    return dict(rows)


def totals(page: Any) -> tuple[int | None, int | None, int | None]:
    """Events today, unique users today and events in the last 60 minutes, as shown."""
    return (
        number(page, "#kpi-today"),
        number(page, "#kpi-users-today"),
        number(page, "#kpi-60"),
    )


def users_note(page: Any, dimension: str) -> tuple[str, str | None]:
    """A breakdown panel's note as shown, and its tooltip (the API's `unique_users_note`)."""
    note = page.locator(f'.breakdown[data-dimension="{dimension}"] .note')
    return note.inner_text(), note.get_attribute("title")


def source(page: Any, selector: str) -> str | None:
    """Where the answer a tile shows says it was read (`answered_from`)."""
    found = page.get_attribute(selector, "data-source")
    return str(found) if found is not None else None


def chips(page: Any) -> list[tuple[str, str]]:
    found = page.locator("#filter-chips .filter-chip").evaluate_all(
        "items => items.map(i => [i.dataset.dimension, i.dataset.value])"
    )
    return [tuple(pair) for pair in found]


def waits(what: str, condition: Callable[[], Any]) -> Any:
    return wait_for(condition, 20, what)


def settles(what: str, read: Callable[[], Any], expected: Any) -> None:
    """Waits until `read()` is `expected`; the failure shows what was shown last."""
    shown: list[Any] = [None]

    def equal() -> bool:
        shown[0] = read()
        return bool(shown[0] == expected)

    try:
        wait_for(equal, 20, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: shown {shown[0]!r}, expected {expected!r}") from None


def test_every_unique_users_note_has_its_own_label() -> None:
    """The panels label the API's notes by their exact text (breakdowns.js, USERS_NOTES)."""
    script = (STATIC / "breakdowns.js").read_text()
    for note in (MULTI_DAY_NOTE, HOUR_NOTE, RAW_NOTE):
        assert json.dumps(note) + ":" in script, note


def test_entry_exit_retention_and_the_whole_page_filter(served: tuple[str, Settings]) -> None:
    base_url, settings = served
    times = _times(_past_midnight(settings.timezone) - 60)
    _publish(base_url, settings, times)
    periods = Periods(settings.timezone)

    def day_of(t: float) -> str:
        return periods.label("day", t)

    today = day_of(time.time())
    today_sessions = [s for s in SESSIONS if day_of(times[s[2]][0]) == today]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            errors = page_errors(page)
            page.goto(base_url + f"/#key={READ_KEY}")
            page.wait_for_selector('.breakdown[data-dimension="page"] li', timeout=15_000)

            # The retention grid: people by first-seen day, returning per day after.
            expected = _retention(day_of, times)
            settles("the retention grid", lambda: grid(page), expected)
            page.click("#retention-week")
            weeks = {c: (size, [size]) for c, (size, _) in expected.items()}
            settles("the grid by weeks", lambda: grid(page), weeks)
            page.click("#retention-day")
            settles("the grid by days again", lambda: grid(page), expected)
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#retention-card").screenshot(
                path=str(ARTIFACTS / "dashboard-retention.png")
            )

            # The totals and today's top event types, unfiltered (all the published events
            # are within the last 60 minutes of their day, today's within the last 60).
            events, people, types = _today({}, times, day_of)
            everything = (events, people, events)
            settles("the totals", lambda: totals(page), everything)
            settles("today's top event types", lambda: top_types(page), types)
            assert page.locator("#kpi-today-note").is_hidden()

            # Entry and exit pages: sessions per value over the last 7 days.
            assert panel(page, "page", "events") == _pages({})
            # Unfiltered, a range of days holds unique users per day only (the aggregates).
            shown, tooltip = users_note(page, "page")
            assert "users per day only" in shown and tooltip == MULTI_DAY_NOTE
            settles("the entry pages", lambda: panel(page, "entry_page", "sessions"), _edges(0, {}))
            settles("the exit pages", lambda: panel(page, "exit_page", "sessions"), _edges(-1, {}))

            # A click on "mobile" narrows every panel and tile to mobile events.
            mobile = {"device": "mobile"}
            page.click('.breakdown[data-dimension="device"] li[data-value="mobile"]')
            settles("the chip", lambda: chips(page), [("device", "mobile")])
            settles("mobile pages", lambda: panel(page, "page", "events"), _pages(mobile))
            total = sum(_pages(mobile).values())
            settles("the filtered total", lambda: number(page, "#filter-total"), total)
            mobile_today = sum(1 for s in today_sessions if s[3] == "mobile")
            # The totals, the per-minute chart and today's top event types follow the filter;
            # the last 60 minutes (a minute series) are read from the raw events.
            events, people, types = _today(mobile, times, day_of)
            assert (events, people, events) != everything
            settles("the mobile totals", lambda: totals(page), (events, people, events))
            settles("mobile top event types", lambda: top_types(page), types)
            settles("the minutes' source", lambda: source(page, "#kpi-60-note"), "raw_events")
            assert "from raw events" in page.inner_text("#chart-note")
            assert "not narrowed" in page.inner_text("#recent-scope")
            assert "not narrowed" in page.inner_text("#active-note")
            settles("mobile sessions today", lambda: number(page, "#sessions-count"), mobile_today)
            # One filter on a kept dimension: the series from the aggregates; a breakdown
            # narrowed by another dimension from the raw events.
            settles("the series' source", lambda: source(page, "#filter-note"), "aggregates")
            note = page.locator('.breakdown[data-dimension="page"] .note[data-source]')
            assert "from raw events" in note.inner_text()
            # Narrowed, each value's unique users are over the whole range (the raw events).
            for dimension in ("page", "device"):
                shown, tooltip = users_note(page, dimension)
                assert "users over the whole range" in shown and tooltip == RAW_NOTE
                assert "per day" not in shown
            settles(
                "mobile entry pages",
                lambda: panel(page, "entry_page", "sessions"),
                _edges(0, mobile),
            )
            assert panel(page, "exit_page", "sessions") == _edges(-1, mobile)
            # Retention keeps the people with a mobile event on their first day.
            narrowed = _retention(day_of, times, mobile)
            assert narrowed != expected
            settles("the mobile retention grid", lambda: grid(page), narrowed)
            assert "from raw events" in page.inner_text("#retention-note")

            # A second click adds a filter: mobile events on /pricing.
            both = {"device": "mobile", "page": "/pricing"}
            page.click('.breakdown[data-dimension="page"] li[data-value="/pricing"]')
            settles("two chips", lambda: chips(page), [("device", "mobile"), ("page", "/pricing")])
            total = sum(_pages(both).values())
            settles("the total of both", lambda: number(page, "#filter-total"), total)
            settles("devices of both", lambda: panel(page, "device", "events"), _devices(both))
            shown, tooltip = users_note(page, "device")
            assert "users over the whole range" in shown and tooltip == RAW_NOTE
            assert source(page, "#filter-note") == "raw_events"
            assert "from raw events" in page.inner_text("#filter-note")
            narrowed = _retention(day_of, times, both)
            settles("the retention grid of both", lambda: grid(page), narrowed)

            # A reload keeps them (the address's fragment).
            page.reload()
            settles("chips after a reload", lambda: len(chips(page)), 2)
            settles(
                "devices after a reload", lambda: panel(page, "device", "events"), _devices(both)
            )
            settles("the total after a reload", lambda: number(page, "#filter-total"), total)
            page.screenshot(path=str(ARTIFACTS / "dashboard-filtered.png"), full_page=True)

            # The device chip removes the device filter; the page filter stays.
            page.click('#filter-chips .filter-chip[data-dimension="device"]')
            settles("one chip", lambda: chips(page), [("page", "/pricing")])
            pricing = {"page": "/pricing"}
            settles(
                "devices of /pricing", lambda: panel(page, "device", "events"), _devices(pricing)
            )

            # The last chip: every number is the unfiltered one again.
            page.click("#filter-chips .filter-chip")
            waits("no filter", lambda: page.locator("#filter-bar").is_hidden())
            settles("all pages", lambda: panel(page, "page", "events"), _pages({}))
            settles("all devices", lambda: panel(page, "device", "events"), _devices({}))
            settles(
                "all sessions today", lambda: number(page, "#sessions-count"), len(today_sessions)
            )
            settles("all entry pages", lambda: panel(page, "entry_page", "sessions"), _edges(0, {}))
            settles("the whole retention grid", lambda: grid(page), expected)
            settles("all the totals", lambda: totals(page), everything)
            settles("all top event types", lambda: top_types(page), _today({}, times, day_of)[2])
            assert page.locator("#kpi-60-note").is_hidden()
            assert page.inner_text("#recent-scope") == "newest first"
            assert "filter=" not in page.url
            assert page.get_attribute("#status", "data-state") == "live"
            assert errors == []
        finally:
            browser.close()


@pytest.fixture
def served_small_scan(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    yield from serving(
        make_settings(
            tmp_path,
            api_port=free_port(),
            max_event_age_days=14,
            funnels=PURCHASE_FUNNEL,
            raw_scan_max_events=SMALL_SCAN,
        )
    )


def test_a_refused_filter_is_each_tiles_message(
    served_small_scan: tuple[str, Settings],
) -> None:
    """Two filters from the address (read from the raw events) over a range holding more
    events than the scan bound: each panel and tile shows the refusal, never a blank."""
    base_url, settings = served_small_scan
    times = _times(_past_midnight(settings.timezone) - 60)
    _publish(base_url, settings, times)
    assert sum(len(s[4]) for s in SESSIONS) > SMALL_SCAN

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            errors = page_errors(page)
            page.goto(base_url + f"/#key={READ_KEY}&filter=device:mobile&filter=page:/pricing")
            settles("chips from the address", lambda: len(chips(page)), 2)
            page.wait_for_selector('.breakdown[data-dimension="page"] .unavailable', timeout=20_000)
            for dimension in ("page", "device", "referrer"):
                problem = page.get_attribute(
                    f'.breakdown[data-dimension="{dimension}"] .unavailable', "data-problem"
                )
                assert problem and "BA_RAW_SCAN_MAX_EVENTS" in problem, (dimension, problem)
                assert page.locator(f'.breakdown[data-dimension="{dimension}"] li').count() == 0
            for tile in ("#filter-note", "#sessions-note", "#funnel-note"):
                waits(
                    f"{tile}'s message",
                    lambda tile=tile: "BA_RAW_SCAN_MAX_EVENTS" in page.inner_text(tile),
                )
                assert "error" in (page.get_attribute(tile, "class") or "")
            assert number(page, "#filter-total") is None
            for tile in ("#kpi-today-note", "#kpi-60-note", "#chart-note", "#top-note"):
                waits(
                    f"{tile}'s message",
                    lambda tile=tile: "BA_RAW_SCAN_MAX_EVENTS" in page.inner_text(tile),
                )
            assert totals(page) == (None, None, None)
            assert page.locator("#top-types li").count() == 0
            assert number(page, "#sessions-count") is None
            waits(
                "the retention card's message",
                lambda: "BA_RAW_SCAN_MAX_EVENTS" in page.inner_text("#retention-note"),
            )
            assert page.locator("#retention-note").is_visible()
            assert page.locator("#retention-grid tbody tr").count() == 0
            assert errors == []
        finally:
            browser.close()


def test_a_narrow_window_and_a_long_filter_value_keep_the_page_within_it(
    served: tuple[str, Settings],
) -> None:
    """At 375 px, with a filter of a 256-character page value (a long URL's path), the page
    is no wider than the window: the chip and the heading wrap, wide tables scroll in their
    card; the buttons' text meets WCAG AA's contrast (4.5:1) on the accent."""
    base_url, settings = served
    _publish(base_url, settings, _times(time.time() - 600))
    long_value = "/" + "p" * 255
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.goto(base_url + f"/#key={READ_KEY}&filter=page%3A{long_value}")
            page.wait_for_selector("#filter-card:not([hidden])", timeout=15_000)
            page.wait_for_selector(".cohorts", timeout=15_000)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, width
            colors = page.evaluate(
                "() => { const b = document.querySelector('#range-form button[type=submit]');"
                " const s = getComputedStyle(b); return [s.color, s.backgroundColor]; }"
            )
            assert colors == ["rgb(11, 18, 32)", "rgb(79, 156, 249)"], colors
        finally:
            browser.close()
