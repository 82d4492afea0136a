"""What identity stitching reads on Firestore: a link that moves an anonymous visit takes the
visit's events from the list the anonymous actor's document keeps, not from a query; past
the list's cap (or when a funnel step filters on a property) it queries, and stays exact
either way. And `forget` covers an event dated ahead of the clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from behavioral_analytics.funnels import parse_funnels
from behavioral_analytics.stores.firestore import identity as firestore_identity
from tests.contract.builders import HOUR, NOW, ev
from tests.faults import make_workload
from tests.gcp.test_firestore_behavior import make_store
from tests.gcp.test_firestore_identity import assert_exact_with_links


def test_an_identify_moves_the_visit_before_it_without_a_query(settings_for: Any) -> None:
    store = make_store(settings_for, identity_window_s=HOUR)
    visit = [ev(1, 0, anon="a1"), ev(2, 60, anon="a1", kind="search"), ev(3, 90, anon="a1")]
    store.commit(visit[:2])
    store.commit(visit[2:])
    identify = ev(4, 120, user="alice", anon="a1", kind="identify")
    store.commit([identify])
    assert store.identity_queries == 0
    assert store.behavior_queries == 0
    assert store.profile("anonymous:a1") is None
    assert store.profile("alice").total_events == 4  # type: ignore[union-attr]
    # Later anonymous events of a1 count for alice and grow the list; a late, earlier identify
    # for another user takes over and moves everything again, still from the list for a1
    # (alice loses the events: a user is recounted from her raw events).
    later = ev(5, 150, anon="a1")
    store.commit([later])
    store.commit([ev(6, 30, user="bob", anon="a1", kind="identify")])
    assert store.profile("alice").total_events == 1  # type: ignore[union-attr]
    assert store.profile("bob").total_events == 5  # type: ignore[union-attr]
    assert store.identity_queries == 1  # alice's events; none for a1's
    assert_exact_with_links(
        store, [*visit, identify, later, ev(6, 30, user="bob", anon="a1", kind="identify")]
    )


@pytest.mark.parametrize("cap", [2, 0])
def test_past_the_list_cap_the_move_queries_and_stays_exact(
    settings_for: Any, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    monkeypatch.setattr(firestore_identity, "ANONYMOUS_EVENTS_MAX", cap)
    store = make_store(settings_for, identity_window_s=HOUR)
    visit = [ev(n, 10 * n, anon="a1") for n in range(1, 5)]
    store.commit(visit)
    identify = ev(9, 100, user="alice", anon="a1", kind="identify")
    store.commit([identify])
    assert store.identity_queries == 1  # a1's events: not listed
    assert store.profile("alice").total_events == 5  # type: ignore[union-attr]
    assert_exact_with_links(store, [*visit, identify])


def test_a_funnel_filtering_on_a_property_makes_moves_query(settings_for: Any) -> None:
    funnels = parse_funnels(
        '[{"name": "plans", "steps": ["page_view", '
        '{"event_type": "search", "where": {"plan": "pro"}}], "window_s": 3600}]'
    )
    store = make_store(settings_for, identity_window_s=HOUR, funnels=funnels)
    visit = [ev(1, 0, anon="a1"), ev(2, 60, anon="a1", kind="search", plan="pro")]
    store.commit(visit)
    identify = ev(3, 120, user="alice", anon="a1", kind="identify")
    store.commit([identify])
    assert store.identity_queries == 1  # the list keeps no properties
    [day] = store.funnel("plans")
    assert day.users_by_step == [1, 1]
    assert_exact_with_links(store, [*visit, identify])


def test_a_workload_with_identifies_mostly_reads_lists(settings_for: Any) -> None:
    workload = make_workload(1200, 21, NOW, behavior=True)
    events = list(workload.distinct.values())
    random.Random(21).shuffle(events)
    store = make_store(settings_for)
    for start in range(0, len(events), 40):
        store.commit(events[start : start + 40])
    moved = store.identity_queries
    assert_exact_with_links(store, events)
    # Only takeovers by an earlier identify (a user losing events) query raw events.
    assert moved <= 6
