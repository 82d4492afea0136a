"""No drop is silent (issue #16, case 8): an event dated up to its person's `forget` tombstone is
counted apart as `forgotten`, not as a duplicate; and a period that every event left after a
`forget` is not returned by `series` (docs/api.md: only periods with events come back)."""

from __future__ import annotations

from tests.contract.builders import DAY, HOUR, MakeStore, assert_recounts, ev, sent_later


def test_an_event_of_a_forgotten_person_is_counted_as_forgotten_not_duplicate(
    make_store: MakeStore,
) -> None:
    store = make_store()
    alice = [ev(1, 0, user="alice"), ev(2, 60, user="alice", kind="search")]
    store.commit([*alice, ev(3, 0, user="bob")])
    store.forget("alice")
    late = ev(4, 120, user="alice")  # never stored, dated before the tombstone
    result = store.commit([*alice, late, ev(3, 0, user="bob"), ev(5, 200, user="bob")])
    assert (result.created, result.duplicates, result.forgotten) == (1, 1, 3)
    fresh = sent_later(6, DAY + HOUR / 2, user="alice")  # after the tombstone: a new event
    result = store.commit([fresh])
    assert (result.created, result.duplicates, result.forgotten) == (1, 0, 0)
    assert_recounts(store)


def test_series_leaves_out_the_periods_a_forget_emptied(make_store: MakeStore) -> None:
    store = make_store()
    store.commit([ev(1, 0, user="alice"), ev(2, 5 * HOUR, user="bob")])
    hours_before = [p.period for p in store.series("hour")]
    assert len(hours_before) == 2
    store.forget("alice")
    for granularity in ("minute", "hour"):
        points = store.series(granularity)  # type: ignore[arg-type]
        assert len(points) == 1 and all(p.total_events == 1 for p in points), granularity
    assert [p.period for p in store.series("hour")] == hours_before[1:]
    assert [p.total_events for p in store.series("day")] == [1]
    assert_recounts(store)
