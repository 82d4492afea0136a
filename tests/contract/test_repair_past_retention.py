"""`verify` on a store older than its raw-event retention: a session or funnel whose first
events expired while its later ones are kept is not drift; `--repair` would recount the older
aggregates from the raw events kept, so it is refused, changing nothing, until `drop_older`
accepts the loss; then every figure is what the kept events give, and `verify` finds no
drift."""

from __future__ import annotations

import pytest

from behavioral_analytics.events import Limits
from behavioral_analytics.store import Store, StoreError
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import DAY, DAY_START, NOW, MakeStore, assert_counts, ev
from tests.contract.test_retention import expire_raw_events
from tests.faults import behavior_event

RETENTION_S = 5 * DAY
# Where every event is processed as it happens (or before): no event dated ahead of its
# receipt, so the horizon is the retention's start itself (`horizon_of`).
AS_IT_HAPPENS = Limits(max_future_skew_s=0.0)


def _drifted_past_retention(make_store: MakeStore, clock: FakeClock) -> Store:
    """A store whose figures include an event 8 days old (past the retention, not checkable)
    and one whose raw event expired early (committed, by the test's clock, 8 days before it
    happened), so a recent day drifts."""
    store = make_store(raw_retention_s=RETENTION_S)
    clock.now = NOW - 8 * DAY
    store.commit([ev(1, -7 * DAY, user="alice"), ev(2, -DAY, user="carol")])
    clock.now = NOW
    expire_raw_events(store, NOW)
    store.commit([ev(3, -DAY + 60, user="alice"), ev(4, -DAY + 120, user="bob", kind="search")])
    return store


def test_a_repair_that_would_recount_older_aggregates_is_refused_and_changes_nothing(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = _drifted_past_retention(make_store, clock)
    report = verify(store, store.periods, now=NOW, retention_s=RETENTION_S)  # type: ignore[attr-defined]
    assert not report.ok and report.not_checked > 0
    before = store.snapshot()
    with pytest.raises(
        StoreError, match=r"--repair would recount \d+ aggregates older .*--drop-older"
    ):
        verify(store, store.periods, now=NOW, retention_s=RETENTION_S, repair=True)  # type: ignore[attr-defined]
    assert store.snapshot() == before


def test_drop_older_rebuilds_from_the_kept_events_and_verify_then_finds_no_drift(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = _drifted_past_retention(make_store, clock)
    periods = store.periods  # type: ignore[attr-defined]
    first = verify(store, periods, now=NOW, retention_s=RETENTION_S)
    report = verify(store, periods, now=NOW, retention_s=RETENTION_S, repair=True, drop_older=True)
    assert report.repaired and report.older_recounted == first.not_checked > 0
    kept = list(store.iter_raw_events())
    assert sorted(e.event_id for e in kept) == ["e3", "e4"]
    assert_counts(store, kept)  # alice's 8-day-old event is no longer counted anywhere
    assert verify(store, periods, now=NOW, retention_s=RETENTION_S).ok
    assert store.commit([ev(5, -DAY + 180, user="bob", kind="purchase")]).created == 1
    assert verify(store, periods, now=NOW, retention_s=RETENTION_S).ok


@pytest.mark.parametrize("minutes_past", [10, 50])
def test_a_visit_across_the_retentions_start_is_no_drift(
    make_store: MakeStore, clock: FakeClock, minutes_past: float
) -> None:
    # The retention starts `minutes_past` an hour; a visit began a minute before and goes on
    # 20 minutes after (one session, one funnel): its first event has expired, the rest not.
    retention_s = RETENTION_S - minutes_past * 60
    store = make_store(raw_retention_s=retention_s)
    start = NOW - retention_s
    visit = [
        ev(1, start - 60 - DAY_START, user="dana"),
        ev(2, start + 600 - DAY_START, user="dana", kind="search"),
        ev(3, start + 1200 - DAY_START, user="dana", kind="add_to_cart"),
    ]
    for event in visit:
        clock.now = event.timestamp + 1  # each processed as it happens
        store.commit([event])
    clock.now = NOW
    expire_raw_events(store, NOW)
    assert sorted(e.event_id for e in store.iter_raw_events()) == ["e2", "e3"]
    periods = store.periods  # type: ignore[attr-defined]
    report = verify(store, periods, now=NOW, retention_s=retention_s, limits=AS_IT_HAPPENS)
    assert report.ok, report.drift
    # The session starts in the retention's hour (10 past) or in the next one (50 past).
    assert report.not_checked > 0
    assert (report.near_retention_start > 0) == (minutes_past == 50)


def test_a_store_younger_than_its_retention_is_repaired_without_drop_older(
    make_store: MakeStore, clock: FakeClock
) -> None:
    # The retention starts at 23:00 and every event is 2 hours later, on the next day, within
    # the rules' reach: those session and funnel figures go unchecked, yet nothing has expired
    # that a rebuild would lose.
    retention_s = RETENTION_S + (NOW - RETENTION_S - 23 * 3600) % DAY
    store = make_store(raw_retention_s=retention_s)
    first = NOW - retention_s + 2 * 3600
    clock.now = first - 3 * DAY  # committed before it happened: its raw event expires early
    store.commit([ev(1, first - DAY_START, user="erin")])
    clock.now = NOW
    expire_raw_events(store, NOW)
    store.commit([ev(2, first + 60 - DAY_START, user="erin", kind="search")])
    periods = store.periods  # type: ignore[attr-defined]
    report = verify(
        store, periods, now=NOW, retention_s=retention_s, repair=True, limits=AS_IT_HAPPENS
    )
    assert report.repaired and report.not_checked == report.older_recounted == 0
    assert report.near_retention_start > 0
    assert verify(store, periods, now=NOW, retention_s=retention_s, limits=AS_IT_HAPPENS).ok


def test_a_client_session_whose_first_piece_expired_is_no_drift(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """A client session id used again days later is cut by the cap into pieces, the later one
    kept as not the first (its key carries its start). Once the first piece's raw events
    expire, a recount makes the later piece the first: the same session, kept under the other
    key, with the same values, and no drift."""
    store = make_store(raw_retention_s=RETENTION_S)
    clock.now = NOW - 7 * DAY + 120  # processed as it happened
    store.commit(
        [ev(1, -6 * DAY, user="u", session="X"), ev(2, -6 * DAY + 60, user="u", session="X")]
    )
    clock.now = NOW
    store.commit([ev(3, -DAY, user="u", session="X"), ev(4, -DAY + 60, user="u", session="X")])
    expire_raw_events(store, NOW)
    assert sorted(e.event_id for e in store.iter_raw_events()) == ["e3", "e4"]
    snap = store.snapshot()
    assert snap.person_sessions is not None
    assert any("\x1f" in key for _, key, *_ in snap.person_sessions)  # kept as a later piece
    report = verify(store, store.periods, now=NOW, retention_s=RETENTION_S)  # type: ignore[attr-defined]
    assert report.ok, report.drift


def test_an_event_dated_ahead_of_its_receipt_that_expired_is_no_drift(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """An event may be dated up to BA_MAX_FUTURE_SKEW (an hour) after its receipt, a client's
    clock ahead, and expires the retention after it is processed: before its own time leaves
    the retention. Its figures are checked only from then on (`horizon_of`)."""
    store = make_store(raw_retention_s=RETENTION_S)
    at = NOW - RETENTION_S + 1800  # half an hour after the retention's start, now
    received = at - 2400  # forty minutes before the time it claims
    ahead = behavior_event(1, at, received_at=received, user="erin")
    clock.now = received
    store.commit([ahead])
    clock.now = NOW
    expire_raw_events(store, NOW)
    assert store.get_events([ahead.key]) == []
    report = verify(store, store.periods, now=NOW, retention_s=RETENTION_S)  # type: ignore[attr-defined]
    assert report.ok, report.drift
    assert report.not_checked > 0  # its minute, hour and profile
