"""The session cap holds for every session, client session ids included, and a period reported
`final` does not change afterwards (issue #16, case 5; docs/behavior.md, "Sessions").

A client session id's events are cut into sessions of at most the cap, counted from each one's
first event: exact whatever order the events arrive in (merged into the stored sessions where
possible, recounted from raw events where not)."""

from __future__ import annotations

import pytest

from behavioral_analytics.sessions import SessionRules
from tests.contract.builders import DAY, HOUR, MakeStore, assert_recounts, ev


def _day_points(store: object) -> dict[str, tuple[int, int, int]]:
    return {
        p.period: (p.stats.sessions, p.stats.duration_ms, p.stats.events)
        for p in store.session_series("day")  # type: ignore[attr-defined]
    }


def test_four_app_opens_a_day_apart_with_one_client_id_are_four_sessions(
    make_store: MakeStore,
) -> None:
    store = make_store()
    opens = [ev(i, -3 * DAY + i * DAY, user="u", kind="app_open", session="-1") for i in range(4)]
    store.commit(opens)
    points = _day_points(store)
    assert sum(n for n, _, _ in points.values()) == 4
    assert all(duration == 0 for _, duration, _ in points.values())
    assert_recounts(store)


# Times (hours) of one client session's events with a 24 h cap: sessions start at 0 (0, 10,
# 20) and 30 (30, 40); the late 25 h event, arriving last, starts one at 25 (25, 30, 40).
TIMES_H = [0.0, 10.0, 20.0, 30.0, 40.0]


@pytest.mark.parametrize(
    "order",
    [list(range(5)), [4, 3, 2, 1, 0], [3, 0, 4, 1, 2], [1, 3, 0, 2, 4]],
)
def test_a_client_session_is_cut_by_the_cap_in_any_arrival_order(
    make_store: MakeStore, order: list[int]
) -> None:
    store = make_store()
    events = [ev(i, -2 * DAY + t * HOUR, user="u", session="s") for i, t in enumerate(TIMES_H)]
    for i in order:
        store.commit([events[i]])
    assert _hour_sessions(store) == [(10 * 3600_000, 2), (20 * 3600_000, 3)]
    assert_recounts(store)
    store.commit([ev(9, -2 * DAY + 25 * HOUR, user="u", session="s")])
    assert _hour_sessions(store) == [(15 * 3600_000, 3), (20 * 3600_000, 3)]
    assert_recounts(store)


def _hour_sessions(store: object) -> list[tuple[int, int]]:
    """(duration in ms, events) of every session, from the hourly figures (one a period)."""
    points = [p for p in store.session_series("hour") if p.stats.sessions]  # type: ignore[attr-defined]
    assert all(p.stats.sessions == 1 for p in points)
    return sorted((p.stats.duration_ms, p.stats.events) for p in points)


def test_a_final_period_does_not_change_when_a_late_event_joins_its_client_session(
    make_store: MakeStore,
) -> None:
    rules = {
        "sessions": SessionRules(gap_s=600.0, max_s=HOUR),
        "lateness_s": 2 * HOUR,
        "identity_window_s": HOUR,
    }
    store = make_store(**rules)
    store.commit([ev(1, 0, user="u", session="s"), ev(2, 60, user="u", session="s")])
    (first,) = store.session_series("hour")
    assert first.final and (first.stats.sessions, first.stats.duration_ms) == (1, 60_000)
    # Within the lateness bound of NOW (= DAY_START + 24 h), on the same client session id.
    store.commit([ev(3, DAY - HOUR, user="u", session="s")])
    points = [p for p in store.session_series("hour") if p.stats.sessions]
    assert points[0] == first
    assert [(p.stats.sessions, p.stats.duration_ms) for p in points[1:]] == [(1, 0)]
    assert_recounts(store)


def test_forget_reports_the_final_periods_it_changed(make_store: MakeStore) -> None:
    rules = {
        "sessions": SessionRules(gap_s=600.0, max_s=HOUR),
        "lateness_s": 2 * HOUR,
        "identity_window_s": HOUR,
    }
    store = make_store(**rules)
    store.commit(
        [
            ev(1, 0, user="alice"),
            ev(2, DAY - HOUR, user="alice"),  # its hour and day are still provisional
            ev(3, 0, user="bob"),
        ]
    )
    hour, day = store.periods.of(ev(1, 0, user="alice").timestamp)[1:]  # type: ignore[attr-defined]
    report = store.forget("alice")
    assert report.final_periods == [f"day:{day}", f"hour:{hour}"]
    assert report.to_dict()["final_periods_changed"] == report.final_periods
    assert_recounts(store)
