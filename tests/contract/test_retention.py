"""Retention cohorts (docs/behavior.md "Retention"): people by the day they were first seen,
or first did a chosen start event, and how many came back on each later day or week, counted
for the person once identity links are applied, exact under late events, identity stitching,
redelivery and `forget`; cohort days before the raw-event retention are refused, and a person
whose first start event is past it is in no later cohort."""

from __future__ import annotations

import pytest

from behavioral_analytics.retention import RetentionError
from behavioral_analytics.store import Store
from tests.conftest import FakeClock
from tests.contract.builders import BOT_AGENT, DAY, HOUR, NOW, MakeStore, assert_recounts, ev

# DAY_START is 2025-11-27 09:00 UTC and the clock 2025-11-28 09:00: "today" is 11-28.
D24, D25, D26, D27 = "2025-11-24", "2025-11-25", "2025-11-26", "2025-11-27"


def at_day(offset: int, hours: float = 0.0) -> float:
    """Seconds after DAY_START of `hours` into the day `offset` days from DAY_START's."""
    return offset * DAY + hours * HOUR


def table(
    store: Store, start: str, end: str, **options: object
) -> list[tuple[str, int, list[int]]]:
    return [(c.cohort, c.size, c.returning) for c in store.retention(start, end, **options)]


def test_cohorts_returning_days_and_weeks(store: Store) -> None:
    store.commit(
        [
            ev(1, at_day(-3), user="alice"),
            ev(2, at_day(-2), user="alice"),
            ev(3, at_day(0), user="alice", kind="search"),
            ev(4, at_day(-3, 2), user="bob"),
            ev(5, at_day(0, 1), user="bob"),
            ev(6, at_day(-2, 3), user="carol"),
            ev(7, at_day(-1), user="carol"),
            ev(8, at_day(-3), user="crawler", user_agent=BOT_AGENT),  # bots are nobody
        ]
    )
    assert table(store, D24, D26, max_offset=3) == [
        (D24, 2, [2, 1, 0, 2]),
        (D25, 1, [1, 1, 0, 0]),
    ]
    # Periods not begun by today (11-28) are left out: 11-25's day 4 is 11-29.
    assert table(store, D25, D25, max_offset=9) == [(D25, 1, [1, 1, 0, 0])]
    assert table(store, D24, D24, max_offset=2, unit="week") == [(D24, 2, [2])]
    assert table(store, D26, D27) == []
    assert store.retention(D24, D24, 1)[0].to_dict()["rates"] == [1.0, 0.5]


def test_a_late_event_dated_earlier_moves_the_person_to_the_earlier_cohort(
    store: Store,
) -> None:
    store.commit([ev(1, at_day(-3), user="alice"), ev(2, at_day(-2), user="carol")])
    store.commit([ev(3, at_day(-1), user="carol")])
    assert table(store, D24, D25, max_offset=2) == [(D24, 1, [1, 0, 0]), (D25, 1, [1, 1, 0])]
    store.commit([ev(4, at_day(-3, 5), user="carol")])  # late: dated before her first day
    assert table(store, D24, D25, max_offset=2) == [(D24, 2, [2, 1, 1])]
    assert_recounts(store)


def test_an_anonymous_visitor_who_identifies_counts_once(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=2 * DAY)
    store.commit([ev(1, at_day(-2), anon="a1"), ev(2, at_day(-2, 1), anon="a1")])
    store.commit([ev(3, at_day(-1), user="dave")])
    assert table(store, D25, D26, max_offset=1) == [(D25, 1, [1, 0]), (D26, 1, [1, 0])]
    # The sign-in comes a day after the visit, within the identity window.
    store.commit([ev(4, at_day(-1, 1), user="dave", anon="a1", kind="identify")])
    assert table(store, D25, D26, max_offset=1) == [(D25, 1, [1, 1])]
    store.commit([ev(5, at_day(0), anon="a1")])  # later anonymous events count for dave too
    assert table(store, D25, D26, max_offset=2) == [(D25, 1, [1, 1, 1])]
    assert_recounts(store)


def test_forget_removes_the_person_from_every_cohort(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=DAY)
    store.commit(
        [
            ev(1, at_day(-2), anon="a1"),
            ev(2, at_day(-2, 1), user="erin", anon="a1", kind="identify"),
            ev(3, at_day(-1), user="erin"),
            ev(4, at_day(-2), user="fred"),
        ]
    )
    assert table(store, D25, D25, max_offset=1) == [(D25, 2, [2, 1])]
    store.forget("erin")
    assert table(store, D25, D26, max_offset=1) == [(D25, 1, [1, 0])]


def test_cohorts_before_the_raw_retention_are_refused(make_store: MakeStore) -> None:
    store = make_store(raw_retention_s=5 * DAY)
    store.commit([ev(1, at_day(-3), user="alice")])
    # The clock is 2025-11-28 09:00: 11-23 has lost its first nine hours of raw events.
    with pytest.raises(RetentionError) as refused:
        store.retention("2025-11-23", D25)
    assert refused.value.code == "before_horizon"
    assert table(store, D24, D24, max_offset=0) == [(D24, 1, [1])]
    with pytest.raises(RetentionError) as refused:
        store.retention(D25, D24)
    assert refused.value.code == "invalid_range"


def test_more_people_than_the_bound_are_refused(
    make_store: MakeStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    store.commit([ev(1, at_day(-2), user="alice"), ev(2, at_day(-2), user="bob")])
    assert table(store, D25, D25, max_offset=0) == [(D25, 2, [2])]
    monkeypatch.setattr(f"behavioral_analytics.stores.{backend}.retention.MAX_PERSONS", 1)
    with pytest.raises(RetentionError) as refused:
        store.retention(D25, D25)
    assert refused.value.code == "too_many_persons"


def test_every_person_is_read_whatever_the_paging(
    make_store: MakeStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "firestore":  # pages of 2 profiles, so five people take three pages
        monkeypatch.setattr("behavioral_analytics.stores.firestore.retention.PAGE", 2)
    store = make_store()
    store.commit(
        [ev(n, at_day(-2, n), user=f"u{n}") for n in range(5)]
        + [ev(10 + n, at_day(-1, n), user=f"u{n}") for n in range(0, 5, 2)]
    )
    assert table(store, D25, D25, max_offset=1) == [(D25, 5, [5, 3])]


def by_signup(
    store: Store, start: str, end: str, max_offset: int = 3
) -> list[tuple[str, int, list[int]]]:
    return table(store, start, end, max_offset=max_offset, start_event="signup")


def test_cohorts_by_the_first_start_event(store: Store) -> None:
    events = [
        ev(1, at_day(-3), user="alice"),
        ev(2, at_day(-2), user="alice", kind="signup"),
        ev(3, at_day(-2, 2), user="alice", kind="signup"),  # not her first
        ev(4, at_day(-1), user="alice"),
        ev(5, at_day(0), user="alice"),
        ev(6, at_day(-3), user="bob", kind="signup"),
        ev(7, at_day(-1), user="bob"),
        ev(8, at_day(-3), user="carol"),  # never signs up: in no cohort
        ev(9, at_day(-1), user="carol"),
        ev(10, at_day(-3), user="crawler", user_agent=BOT_AGENT, kind="signup"),
    ]
    store.commit(events)
    store.commit(events[:5])  # redelivered: nothing changes
    # Alice's active day 11-24 is before her cohort: it counts in no period.
    assert by_signup(store, D24, D27) == [(D24, 1, [1, 0, 1, 0]), (D25, 1, [1, 1, 1, 0])]
    assert by_signup(store, D24, D27, max_offset=0) == [(D24, 1, [1]), (D25, 1, [1])]
    assert table(store, D24, D24, max_offset=0, unit="week", start_event="signup") == [
        (D24, 1, [1])
    ]
    # By first-seen day the same people are cohorts 11-24 (alice, bob, carol).
    assert table(store, D24, D27, max_offset=0) == [(D24, 3, [3])]
    assert by_signup(store, D24, D27) == by_signup(store, D24, D27)
    assert table(store, D24, D27, start_event="never_sent") == []


def test_a_late_earlier_start_event_moves_the_person_to_the_earlier_cohort(
    store: Store,
) -> None:
    store.commit([ev(1, at_day(-3), user="alice"), ev(2, at_day(-1), user="alice", kind="signup")])
    store.commit([ev(3, at_day(0), user="alice")])
    assert by_signup(store, D24, D27) == [(D26, 1, [1, 1, 0])]
    store.commit([ev(4, at_day(-3, 5), user="alice", kind="signup")])  # late, dated earlier
    assert by_signup(store, D24, D27) == [(D24, 1, [1, 0, 1, 1])]
    # Cohort days after her first start event hold nobody.
    assert by_signup(store, D25, D27) == []
    assert_recounts(store)


def test_an_anonymous_start_event_counts_for_the_user_who_identifies(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=2 * DAY)
    store.commit([ev(1, at_day(-2), anon="a1", kind="signup"), ev(2, at_day(-1), user="dave")])
    assert by_signup(store, D25, D27) == [(D25, 1, [1, 0, 0, 0])]  # a1 on its own
    # dave signs in a day later, within the identity window: a1's signup is his.
    store.commit([ev(3, at_day(-1, 1), user="dave", anon="a1", kind="identify")])
    assert by_signup(store, D25, D27) == [(D25, 1, [1, 1, 0, 0])]
    store.commit([ev(4, at_day(0), anon="a1")])
    assert by_signup(store, D25, D27) == [(D25, 1, [1, 1, 1, 0])]
    assert_recounts(store)


def test_forget_takes_the_person_out_of_the_start_event_cohorts(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=DAY)
    store.commit(
        [
            ev(1, at_day(-2), anon="a1", kind="signup"),
            ev(2, at_day(-2, 1), user="erin", anon="a1", kind="identify"),
            ev(3, at_day(-1), user="erin"),
            ev(4, at_day(-2), user="fred", kind="signup"),
        ]
    )
    assert by_signup(store, D25, D25, max_offset=1) == [(D25, 2, [2, 1])]
    store.forget("erin")
    assert by_signup(store, D25, D26, max_offset=1) == [(D25, 1, [1, 0])]


def expire_raw_events(store: Store, now: float) -> None:
    """Delete the raw events whose retention ended by `now`: the store's own purge, or on
    Firestore what its TTL policy does in production (the emulator runs no TTL)."""
    if type(store).purge_expired is not Store.purge_expired:
        store.purge_expired(now)
        return
    from behavioral_analytics.stores.firestore.documents import as_datetime
    from behavioral_analytics.stores.firestore.schema import EVENTS

    events = store.gateway.collection(EVENTS)  # type: ignore[attr-defined]  # Firestore's
    for snap in events.where("expire_at", "<", as_datetime(now)).stream():
        snap.reference.delete()


def test_a_start_event_dropped_by_retention_keeps_the_person_out_of_later_cohorts(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(raw_retention_s=5 * DAY)
    # Alice signed up on 11-19, committed then; by now (11-28) that raw event has expired.
    first = ev(1, at_day(-8), user="alice", kind="signup")
    clock.now = NOW - 8 * DAY
    store.commit([first])
    clock.now = NOW
    expire_raw_events(store, NOW)
    assert store.get_events([first.key]) == []
    store.commit(
        [
            ev(2, at_day(-2), user="alice", kind="signup"),  # her second, not her first
            ev(3, at_day(-2), user="bob", kind="signup"),
            ev(4, at_day(-1), user="alice"),
        ]
    )
    assert by_signup(store, D24, D27) == [(D25, 1, [1, 0, 0, 0])]  # bob


def test_start_event_requests_are_checked_and_bounded(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.commit([ev(n, at_day(-2, n), user=f"u{n}", kind="signup") for n in range(3)])
    assert by_signup(store, D25, D25, max_offset=0) == [(D25, 3, [3])]
    for bad in ("", "  ", "x" * 300):
        with pytest.raises(RetentionError) as refused:
            store.retention(D25, D25, start_event=bad)
        assert refused.value.code == "invalid_event_type"
    monkeypatch.setattr(f"behavioral_analytics.stores.{backend}.retention.MAX_START_EVENTS", 2)
    with pytest.raises(RetentionError) as refused:
        store.retention(D25, D25, start_event="signup")
    assert refused.value.code == "scan_too_large"
    assert table(store, D25, D25, max_offset=0) == [(D25, 3, [3])]  # first seen: no scan
    monkeypatch.setattr(f"behavioral_analytics.stores.{backend}.retention.MAX_PERSONS", 2)
    monkeypatch.setattr(f"behavioral_analytics.stores.{backend}.retention.MAX_START_EVENTS", 9)
    with pytest.raises(RetentionError) as refused:
        store.retention(D25, D25, start_event="signup")
    assert refused.value.code == "too_many_persons"
