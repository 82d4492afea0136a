"""Filtered answers from raw events (`raw_queries`, `filtered_queries`) against the live
aggregates of the same SQLite store where the two must agree: no filter (the aggregates
themselves), one filter on a kept dimension (its breakdown), a filter on `event_type` (the
per-type counts); and the session-scoped rule, the narrowed breakdown and the bound."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdown_report import filtered_series, summarize
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.filtered_queries import (
    filtered_breakdown,
    filtered_funnel,
    filtered_series_answer,
    filtered_sessions,
    scan,
)
from behavioral_analytics.raw_queries import (
    Filter,
    ScanError,
    breakdown,
    funnel_days,
    series,
    session_series,
    session_window,
)
from behavioral_analytics.store import NotSupported
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import FakeClock
from tests.contract.builders import DAY, DAY_START, NOW, PURCHASE, ev

PAGES = ["/", "/pricing", "/docs", "/blog"]
DEVICES = ["mobile", "desktop"]
TYPES = ["page_view", "search", "add_to_cart", "purchase"]
RULES = BehaviorRules(
    funnels=PURCHASE, breakdowns=BreakdownRules(("page", "device", "event_type"), 100)
)
BOUND = 100_000


def _events(seed: int, count: int = 400) -> list[Event]:
    """`count` events of 25 people over the day before NOW: pages, devices and types drawn
    at random, some anonymous with a later identify, some with client session ids."""
    draw = random.Random(seed)
    made = []
    for n in range(count):
        person = draw.randrange(25)
        anonymous = person % 5 == 0
        fields: dict[str, object] = {"anon": f"a{person}"} if anonymous else {"user": f"u{person}"}
        if person % 7 == 0:
            fields["session"] = f"s{person}-{draw.randrange(2)}"
        made.append(
            ev(
                n,
                draw.uniform(0, DAY - 1),
                kind=draw.choice(TYPES),
                page_url=f"https://shop.example{draw.choice(PAGES)}",
                device_type=draw.choice(DEVICES),
                **fields,
            )
        )
    made.append(ev(count, DAY / 2, user="u0", anon="a0", kind="identify"))
    return made


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    made = SQLiteStore(tmp_path / "store.db", rules=RULES, clock=FakeClock(NOW))
    events = _events(7)
    for start in range(0, len(events), 50):  # several commits, as a worker makes
        made.commit(events[start : start + 50])
    return made


def _day_range(store: SQLiteStore) -> tuple[str, str, float, float]:
    first = store.periods.label("day", DAY_START)
    last = store.periods.label("day", NOW - 1)
    return first, last, store.periods.start_of("day", first), store.periods.end_of("day", last)


def test_without_a_filter_the_raw_series_is_the_aggregates(store: SQLiteStore) -> None:
    periods = store.periods
    for granularity in ("hour", "day"):
        first = periods.label(granularity, DAY_START)
        last = periods.label(granularity, NOW - 1)
        start_s, end_s = periods.start_of(granularity, first), periods.end_of(granularity, last)
        events = store.scan_events(start_s, end_s, BOUND)
        raw = [p.to_dict() for p in series(events, (), periods, granularity, first, last)]
        kept = store.series(granularity, first, last)
        assert [
            (p["period"], p["total_events"], p["events_by_type"], p["unique_users"]) for p in raw
        ] == [(p.period, p.total_events, p.events_by_type, p.unique_users) for p in kept]
        assert len(raw) > 1


@pytest.mark.parametrize("dimension", ["page", "device"])
def test_one_filter_from_raw_events_equals_the_breakdown(
    store: SQLiteStore, dimension: str
) -> None:
    periods = store.periods
    for granularity in ("hour", "day"):
        first = periods.label(granularity, DAY_START)
        last = periods.label(granularity, NOW - 1)
        events = store.scan_events(
            periods.start_of(granularity, first), periods.end_of(granularity, last), BOUND
        )
        points = store.breakdown(dimension, granularity, first, last)
        values = {v for p in points for v in p.events}
        assert len(values) > 1
        for value in values:
            kept = [
                (p.period, p.total_events, p.unique_users)
                for p in filtered_series(points, value)
                if p.total_events
            ]
            raw = series(events, [Filter(dimension, value)], periods, granularity, first, last)
            # Hours keep no unique users per value; the raw answer has them.
            got = [
                (p.period, p.total_events, p.unique_users if granularity == "day" else None)
                for p in raw
            ]
            assert got == kept


def test_a_filter_on_event_type_equals_the_per_type_counts(store: SQLiteStore) -> None:
    first, last, start_s, end_s = _day_range(store)
    events = store.scan_events(start_s, end_s, BOUND)
    for event_type in TYPES:
        hours = (first + "-00", last + "-23")
        raw = series(events, [Filter("event_type", event_type)], store.periods, "hour", *hours)
        kept = {p.period: p.events_by_type.get(event_type, 0) for p in store.series("hour", *hours)}
        assert {p.period: p.total_events for p in raw} == {k: n for k, n in kept.items() if n}


def test_without_a_filter_raw_sessions_and_funnels_are_the_aggregates(
    store: SQLiteStore,
) -> None:
    first, last, start_s, end_s = _day_range(store)
    periods = store.periods
    rules = RULES.sessions
    horizon_s = NOW - 30 * DAY
    for granularity in ("hour", "day"):
        f = periods.label(granularity, DAY_START)
        la = periods.label(granularity, NOW - 1)
        answer = filtered_sessions(
            store, periods, (), rules, granularity, (), f, la, BOUND, horizon_s
        )
        assert answer["answered_from"] == "raw_events"
        kept = [p.to_dict() for p in store.session_series(granularity, f, la)]
        for point in kept:
            point.pop("final")
        assert answer["points"] == kept and kept
    [purchase] = PURCHASE
    raw = filtered_funnel(store, periods, purchase, (), first, last, BOUND)
    assert raw["days"] == [d.to_dict() for d in store.funnel("purchase", first, last)]
    assert raw["days"] and raw["days"][0]["users"][0] > 0
    assert raw["scanned_events"] == len(store.scan_events(start_s, end_s + DAY, BOUND))


def test_a_session_matches_when_its_first_event_matches() -> None:
    periods = Periods("UTC")
    visit = [
        ev(1, 0, user="u1", page_url="https://x.example/pricing", device_type="mobile"),
        ev(2, 60, user="u1", page_url="https://x.example/docs", device_type="mobile"),
        ev(3, 7200, user="u1", page_url="https://x.example/docs"),  # a second session
    ]
    day = periods.label("day", DAY_START)

    def sessions(*filters: Filter) -> list[tuple[int, int]]:
        found = session_series(visit, filters, RULES.sessions, periods, "day", day, day)
        return [(p.stats.sessions, p.stats.events) for p in found]

    assert sessions() == [(2, 3)]
    assert sessions(Filter("page", "/pricing")) == [(1, 2)]  # both its events, first matches
    assert sessions(Filter("page", "/docs")) == [(1, 1)]  # only the one that starts there
    assert sessions(Filter("page", "/docs"), Filter("device", "mobile")) == []


def test_a_filtered_funnel_counts_only_matching_events() -> None:
    periods = Periods("UTC")
    [purchase] = PURCHASE
    steps = ["page_view", "search", "add_to_cart", "purchase"]
    mobile = [ev(n, n * 60, user="u1", kind=k, device_type="mobile") for n, k in enumerate(steps)]
    mixed = [
        ev(10 + n, n * 60, user="u2", kind=k, device_type="desktop" if n == 2 else "mobile")
        for n, k in enumerate(steps)
    ]
    day = periods.label("day", DAY_START)
    every = funnel_days(mobile + mixed, (), purchase, periods, day, day)
    assert [d.users_by_step for d in every] == [[2, 2, 2, 2]]
    narrowed = funnel_days(
        mobile + mixed, [Filter("device", "mobile")], purchase, periods, day, day
    )
    assert [d.users_by_step for d in narrowed] == [[2, 2, 1, 1]]


def test_a_narrowed_breakdown_counts_every_value_and_persons_over_the_range(
    store: SQLiteStore,
) -> None:
    first, last, start_s, end_s = _day_range(store)
    events = store.scan_events(start_s, end_s, BOUND)
    # No filter, one day: the raw rows are the aggregates' (nothing under (other) here).
    raw = breakdown(events, (), "page", RULES.sessions, store.periods, "day", last, last, 10)
    kept = summarize(store.breakdown("page", "day", last, last), "day", last, last, 10)
    assert [(r.value, r.events, r.share, r.unique_users) for r in raw.rows] == [
        (r.value, r.events, r.share, r.unique_users) for r in kept.rows
    ]
    # Narrowed: by hand over the events.
    mobile_only = [Filter("device", "mobile")]
    narrowed = filtered_breakdown(
        store, store.periods, "page", RULES.sessions, "day", mobile_only, first, last, 10, BOUND, 0
    )
    mobile = [e for e in events if e.properties.get("device_type") == "mobile"]
    assert narrowed["total_events"] == len(mobile) > 0
    assert {row["value"] for row in narrowed["values"]} == set(PAGES)
    for row in narrowed["values"]:
        own = [e for e in mobile if e.properties["page_url"].endswith(".example" + row["value"])]
        assert (row["events"], row["unique_users"]) == (len(own), len({e.who for e in own}))
    assert narrowed["answered_from"] == "raw_events"
    margin_s = session_window(RULES.sessions)  # sessions per value come with it
    widened = store.scan_events(start_s - margin_s, end_s + margin_s, BOUND)
    assert narrowed["scanned_events"] == len(widened)


def test_one_kept_filter_is_answered_from_the_aggregates_two_from_raw_events(
    store: SQLiteStore,
) -> None:
    first, last, _, _ = _day_range(store)
    kept = RULES.breakdowns.dimensions
    one = filtered_series_answer(
        store, store.periods, kept, "day", [Filter("page", "/docs")], first, last, BOUND
    )
    assert one["answered_from"] == "aggregates" and "scanned_events" not in one
    two = filtered_series_answer(
        store,
        store.periods,
        kept,
        "day",
        [Filter("page", "/docs"), Filter("device", "mobile")],
        first,
        last,
        BOUND,
    )
    assert two["answered_from"] == "raw_events" and two["scanned_events"] > 0
    assert sum(p["total_events"] for p in two["points"]) < sum(
        p["total_events"] for p in one["points"]
    )


def test_a_scan_over_the_bound_is_refused_before_reading(store: SQLiteStore) -> None:
    _, _, start_s, end_s = _day_range(store)
    held = len(store.scan_events(start_s, end_s, BOUND))
    assert len(scan(store, store.periods, start_s, end_s, held)) == held
    with pytest.raises(ScanError) as refused:
        scan(store, store.periods, start_s, end_s, held - 1)
    assert refused.value.code == "scan_too_large"
    assert f"{held:,} events" in refused.value.detail and f"{held - 1:,}" in refused.value.detail


def test_the_bound_counts_the_ranges_own_events_not_the_next_hours(store: SQLiteStore) -> None:
    # The check read the hour of the range's end, the first instant after it, so an hour's
    # range was counted with the next hour's events and refused though it fit.
    periods = store.periods
    hour = periods.label("hour", DAY_START + 5 * 3600 + 1)
    start_s, end_s = periods.start_of("hour", hour), periods.end_of("hour", hour)
    held = len(store.scan_events(start_s, end_s, BOUND))
    assert held and store.scan_events(end_s, end_s + 3600, 1)  # the next hour holds events
    assert len(scan(store, periods, start_s, end_s, held)) == held
    # Within an hour the range's own events count, not the hour's: read, then refused past it.
    middle_s = start_s + 1800
    half = len(store.scan_events(start_s, middle_s, BOUND))
    assert 0 < half < held
    assert len(scan(store, periods, start_s, middle_s, half)) == half
    with pytest.raises(ScanError) as refused:
        scan(store, periods, start_s, middle_s, half - 1)
    assert f"more than {half - 1:,} events" in refused.value.detail


@pytest.mark.parametrize("granularity", ["hour", "day"])
def test_sessions_per_value_kept_equal_the_raw_rule(
    store: SQLiteStore, granularity: Granularity
) -> None:
    periods = store.periods
    first, last = periods.label(granularity, DAY_START), periods.label(granularity, NOW - 1)
    start_s, end_s = periods.start_of(granularity, first), periods.end_of(granularity, last)
    events = store.scan_events(start_s - DAY, end_s + DAY, BOUND)
    kept, rules = RULES.breakdowns.dimensions, RULES.sessions
    for only in [*(Filter("page", page) for page in PAGES), Filter("device", "mobile")]:
        answer = filtered_sessions(
            store, periods, kept, rules, granularity, [only], first, last, BOUND, NOW - 30 * DAY
        )
        assert answer["answered_from"] == "aggregates"
        raw = session_series(events, [only], rules, periods, granularity, first, last)
        assert [(p["period"], p["sessions"]) for p in answer["points"]] == [
            (p.period, p.stats.sessions) for p in raw
        ]
        assert raw


@pytest.mark.parametrize("dimension", ["page", "device", "entry_page", "exit_page"])
def test_sessions_per_value_of_a_raw_breakdown_equal_the_kept_ones(
    store: SQLiteStore, dimension: str
) -> None:
    first, last, start_s, end_s = _day_range(store)
    events = store.scan_events(start_s - DAY, end_s + DAY, BOUND)
    for day in (first, last):
        raw = breakdown(events, (), dimension, RULES.sessions, store.periods, "day", day, day, 100)
        kept: dict[str, int] = {}
        for point in store.breakdown(dimension, "day", day, day):
            for value, n in (point.sessions or {}).items():
                kept[value] = kept.get(value, 0) + n
        assert {r.value: r.sessions for r in raw.rows if r.sessions} == {
            v: n for v, n in kept.items() if n
        }
        assert kept
        if dimension in ("entry_page", "exit_page"):
            assert all(r.events == 0 and r.unique_users is None for r in raw.rows)


def test_a_store_without_breakdowns_answers_one_filter_from_raw_events(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, last, _, _ = _day_range(store)

    def refuse(*args: object) -> None:
        raise NotSupported("no breakdowns here")

    kept = RULES.breakdowns.dimensions
    only = [Filter("page", "/docs")]
    before = filtered_series_answer(store, store.periods, kept, "day", only, first, last, BOUND)
    monkeypatch.setattr(store, "breakdown", refuse)
    after = filtered_series_answer(store, store.periods, kept, "day", only, first, last, BOUND)
    assert (before["answered_from"], after["answered_from"]) == ("aggregates", "raw_events")
    assert [(p["period"], p["total_events"], p["unique_users"]) for p in after["points"]] == [
        (p["period"], p["total_events"], p["unique_users"]) for p in before["points"]
    ]
    sessions = filtered_sessions(
        store, store.periods, kept, RULES.sessions, "day", only, first, last, BOUND, 0
    )
    assert sessions["answered_from"] == "raw_events" and sessions["points"]
