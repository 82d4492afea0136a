"""The behavioral read model: bots counted apart, sessions per hour and day (and when their
figures turn final), funnels per entry day; and `NotSupported` from a store without it."""

from __future__ import annotations

import pytest

from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.store import NotSupported, StoreError
from tests.conftest import FakeClock
from tests.contract.builders import (
    BOT_AGENT,
    DAY_START,
    HOUR,
    MakeStore,
    assert_recounts,
    ev,
)


def test_bots_are_kept_flagged_and_counted_apart(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([ev(1, 0, anon="crawler", user_agent=BOT_AGENT), ev(2, 0, user="u1")])
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    [point] = store.series("day", day, day)
    assert (point.total_events, point.unique_users, point.bot_events) == (1, 1, 1)
    assert store.profile("anonymous:crawler") is None
    [stored] = store.timeline("anonymous:crawler").items
    assert stored.event.properties["$bot"] == "Googlebot"
    # A minute of bots only: counted apart, returned with no human figures (docs/api.md).
    store.commit([ev(3, 600, anon="crawler", user_agent=BOT_AGENT)])
    minute = store.periods.label("minute", DAY_START + 600)  # type: ignore[attr-defined]
    [only_bots] = store.series("minute", minute, minute)
    assert (only_bots.period, only_bots.total_events, only_bots.events_by_type) == (minute, 0, {})
    assert (only_bots.unique_users, only_bots.bot_events) == (None, 1)
    first = store.periods.label("minute", DAY_START)  # type: ignore[attr-defined]
    assert [p.period for p in store.series("minute")] == [first, minute]
    assert store.snapshot().bot_events["minute", minute] == 1
    assert store.series("day", day, day)[0].bot_events == 2
    assert_recounts(store)


def test_sessions_per_hour_and_day_and_when_they_turn_final(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(lateness_s=HOUR)
    store.commit([ev(1, 0, user="u"), ev(2, 60, user="u"), ev(3, 600, user="v", session="s")])
    hour = store.periods.label("hour", DAY_START)  # type: ignore[attr-defined]
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=2, duration_ms=60_000, bounces=1, events=3)
    assert point.to_dict()["bounce_rate"] == 0.5 and not point.final
    # A late event between two visits joins them into one session; a client session grows.
    store.commit([ev(4, 3000, user="u"), ev(5, 700, user="v", session="s")])
    store.commit([ev(6, 1500, user="u")])
    [point] = store.session_series("hour", hour, hour)
    assert point.stats == SessionStats(sessions=2, duration_ms=3_100_000, bounces=0, events=6)
    [by_day] = store.session_series("day")
    assert (by_day.period, by_day.stats) == ("2025-11-27", point.stats)
    assert store.session_series("hour", "2025-11-27-10") == []
    assert store.rules is not None
    final_at = DAY_START + HOUR + store.rules.session_final_after_s()  # the hour's end + that
    clock.now = final_at - 1
    assert not store.session_series("hour", hour, hour)[0].final
    clock.now = final_at
    assert store.session_series("hour", hour, hour)[0].final
    with pytest.raises(StoreError, match="per hour and per day"):
        store.session_series("minute")
    assert_recounts(store)


def test_funnel_counts_users_per_step_and_conversion(make_store: MakeStore) -> None:
    store = make_store()
    steps = ["page_view", "search", "add_to_cart", "purchase"]
    for u in range(4):  # one batch per user, steps out of order across two batches
        kinds = list(enumerate(steps[: u + 1]))
        store.commit([ev(10 * u + i, 60 * i, user=f"u{u}", kind=k) for i, k in kinds[1:]])
        store.commit([ev(10 * u, 0, user=f"u{u}", kind=kinds[0][1])])
    store.commit([ev(50, 86400 + 60, user="u9", kind="page_view")])  # enters the next day
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    [report] = store.funnel("purchase", day, day)
    assert report.to_dict() == {
        "day": day,
        "users": [4, 3, 2, 1],
        "conversion": [0.75, 0.6667, 0.5],
        "overall": 0.25,
    }
    days = [(d.day, d.users_by_step) for d in store.funnel("purchase")]
    assert days == [(day, [4, 3, 2, 1]), ("2025-11-28", [1, 0, 0, 0])]
    assert store.funnel("purchase", "2025-11-29") == []
    with pytest.raises(StoreError, match="no funnel named"):
        store.funnel("nope")
    assert_recounts(store)


def test_the_behavioral_flag_says_which_reads_work(make_store: MakeStore) -> None:
    """A store asked to run without the behavioral read model either keeps it anyway (and says
    so: `behavioral`) or raises NotSupported from every read and write of it, leaving the
    counting as it was."""
    store = make_store(behavior=False)
    store.commit([ev(1, 0, user="alice", anon="a1", kind="identify"), ev(2, 10, anon="a1")])
    calls = [
        lambda: store.session_series("day"),
        lambda: store.funnel("purchase"),
        lambda: store.links("alice"),
        lambda: store.forget("nobody"),
    ]
    for call in calls:
        if store.behavioral:
            call()
        else:
            with pytest.raises(NotSupported):
                call()
    if not store.behavioral:
        assert store.stored_links() == []
        assert len(list(store.iter_raw_events())) == 2
        assert store.profile("alice") is not None and store.profile("anonymous:a1") is not None
    assert_recounts(store)
