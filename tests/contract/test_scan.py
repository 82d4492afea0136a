"""`scan_events`: the human raw events of a time range as they count (crawlers left out, each
for its person once identity links are applied), bounded, refused before the raw-event
retention horizon."""

from __future__ import annotations

import pytest

from behavioral_analytics.raw_queries import Filter, ScanError, series, session_series
from behavioral_analytics.sessions import SessionRules
from tests.contract.builders import DAY, DAY_START, HOUR, NOW, MakeStore, ev
from tests.contract.test_behavior import BOT_AGENT


def test_a_range_gives_its_human_events_oldest_first_for_their_persons(
    make_store: MakeStore,
) -> None:
    store = make_store()
    store.commit(
        [
            ev(1, 100, anon="a1"),
            ev(2, 200, anon="crawler", user_agent=BOT_AGENT),
            ev(3, 300, user="u2", kind="search"),
            ev(4, HOUR, user="u2"),  # the range's end: left out
            ev(5, 99.5, user="u2"),  # before its start: left out
        ]
    )
    store.commit([ev(6, 400, user="alice", anon="a1", kind="identify")])
    found = store.scan_events(DAY_START + 100, DAY_START + HOUR, 100)
    assert [(e.event_id, e.who) for e in found] == [
        ("e1", "alice"),  # the identify gave the anonymous visit to alice
        ("e3", "u2"),
        ("e6", "alice"),
    ]
    assert found[1].event_type == "search" and found[1].timestamp == DAY_START + 300
    assert store.scan_events(DAY_START + 100, DAY_START + 100, 100) == []


def test_the_scan_gives_at_most_the_limit(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([ev(i, 60 * i, user=f"u{i % 3}", kind=("a", "b")[i % 2]) for i in range(10)])
    assert len(store.scan_events(DAY_START, DAY_START + DAY, 100)) == 10
    some = store.scan_events(DAY_START, DAY_START + DAY, 4)
    assert len(some) == 4 and len({e.key for e in some}) == 4
    assert [e.timestamp for e in some] == sorted(e.timestamp for e in some)


def test_a_range_before_the_raw_retention_is_refused(make_store: MakeStore) -> None:
    store = make_store(raw_retention_s=2 * DAY)
    store.scan_events(NOW - 2 * DAY, NOW, 10)  # the horizon itself is kept
    with pytest.raises(ScanError) as refused:
        store.scan_events(NOW - 2 * DAY - 1, NOW, 10)
    assert refused.value.code == "before_horizon"
    with pytest.raises(ScanError):  # an empty range checks the horizon alone
        store.scan_events(NOW - 3 * DAY, NOW - 3 * DAY, 10)


def test_scanned_events_recount_the_aggregates_they_cover(make_store: MakeStore) -> None:
    """The raw answer and the live aggregates agree: the series, a breakdown's values and the
    sessions, recounted from the scan by the aggregates' rules (`raw_queries`)."""
    store = make_store()
    pages = ["/a", "/b", "/a", "/c", "/a", "/b"]
    store.commit(
        [
            ev(n, 600 * n, user=f"u{n % 3}", page_url=f"https://x.example{page}")
            for n, page in enumerate(pages)
        ]
        + [ev(9, 700, anon="v1"), ev(10, 800, user="u1", anon="v1", kind="identify")]
    )
    periods = store.periods  # type: ignore[attr-defined]  # both stores have them
    day = periods.label("day", DAY_START)
    events = store.scan_events(periods.start_of("day", day), periods.end_of("day", day), 100)
    assert len(events) == len(pages) + 2
    [kept] = store.series("day", day, day)
    [raw] = series(events, (), periods, "day", day, day)
    assert (raw.total_events, raw.events_by_type, raw.unique_users) == (
        kept.total_events,
        kept.events_by_type,
        kept.unique_users,
    )
    [point] = store.breakdown("page", "day", day, day)
    for value, count in point.events.items():
        [narrowed] = series(events, [Filter("page", value)], periods, "day", day, day)
        assert (narrowed.total_events, narrowed.unique_users) == (
            count,
            (point.unique_users or {})[value],
        )
    [sessions] = store.session_series("day", day, day)
    [recounted] = session_series(events, (), SessionRules(), periods, "day", day, day)
    assert recounted.stats == sessions.stats
