"""Identity stitching and `forget` scenarios both stores must pass: each test module calls
them with its own store factory (`make(**rules)`: the store with those behavior rules and the
purchase funnel, its clock at NOW). After each, the stored figures equal a recount of the raw
events with the stored links and `verify` finds no drift."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from behavioral_analytics.behavior import recount
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.store import NewDeadLetter, Store
from tests.faults import assert_recounts as recounts_cleanly
from tests.faults import behavior_event

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0
DAY_START = NOW - 86400

MakeStore = Callable[..., Store]


def ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, DAY_START + at, received_at=NOW, **fields)


def assert_recounts(store: Store) -> None:
    recounts_cleanly(store, NOW)


def assert_matches_remaining(store: Store) -> None:
    """After a forget: the figures equal a recount of the raw events that remain, with the
    links that remain."""
    assert store.rules is not None
    remaining = list(store.iter_raw_events())
    want = recount(remaining, store.stored_links(), store.rules, store.periods)
    snap = store.snapshot()
    assert snap.unique_users == dict(want.deltas.unique_users())
    assert snap.markers == want.deltas.markers
    assert snap.session_stats == want.session_stats
    assert snap.funnel_users == {k: n for k, n in want.funnel_users.items() if n}
    assert snap.bot_events == dict(want.bot_events)
    want_profiles = {
        who: (p.total, dict(p.by_type), p.first_seen, p.last_activity)
        for who, p in want.deltas.profiles.items()
    }
    assert snap.profiles == want_profiles
    assert_recounts(store)


def refused_scenario() -> tuple[list[Event], list[Event], list[Event]]:
    """a2 is bob's (bob identified first), alice's later proposal for a2 is refused; a1 is
    alice's. Returns (alice's events, a1's anonymous events, what stays)."""
    alice = [
        ev(3, 300, user="alice", anon="a2", kind="identify"),  # refused: bob was first
        ev(5, 600, user="alice", anon="a1", kind="identify"),  # active
        ev(7, 800, user="alice", kind="search"),
    ]
    a1 = [ev(4, 500, anon="a1"), ev(6, 700, anon="a1", kind="add_to_cart")]
    stays = [
        ev(1, 100, user="bob", anon="a2", kind="identify"),
        ev(2, 50, anon="a2", kind="search"),  # within bob's window: bob's
        ev(8, 400, anon="a2"),  # bob's
        ev(9, -2 * HOUR, anon="a2"),  # before bob's window: a2's own
        ev(10, 200, user="carol"),
    ]
    return alice, a1, stays


def an_identify_moves_the_visit_before_it(make: MakeStore) -> None:
    store = make(identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="a1"), ev(2, 60, anon="a1", kind="search")])
    store.commit([ev(3, 10 * HOUR, user="alice")])
    hour = store.periods.label("hour", DAY_START)
    assert store.series("hour", hour, hour)[0].unique_users == 1  # the anonymous visitor
    store.commit([ev(4, 120, user="alice", anon="a1", kind="identify")])

    alice = store.profile("alice")
    assert alice is not None and alice.total_events == 4
    assert alice.events_by_type == {"identify": 1, "page_view": 2, "search": 1}
    assert alice.first_seen == DAY_START
    assert store.profile("anonymous:a1") is None
    assert store.series("hour", hour, hour)[0].unique_users == 1  # now alice, not two people
    assert [e.event.event_id for e in store.timeline("alice").items] == ["e3", "e4", "e2", "e1"]
    # Later anonymous events count for alice straight away; one session holds the visit.
    store.commit([ev(5, 180, anon="a1")])
    assert store.profile("alice").total_events == 5  # type: ignore[union-attr]
    day = store.periods.label("day", DAY_START)
    sessions = {p.period: p.stats for p in store.session_series("day", day, day)}
    assert sessions[day].sessions == 2 and sessions[day].events == 5
    assert_recounts(store)


def a_second_user_is_refused_unless_earlier(make: MakeStore) -> None:
    store = make(identity_window_s=HOUR)
    store.commit([ev(1, 100, anon="a1"), ev(2, 200, user="bob", anon="a1", kind="identify")])
    store.commit([ev(3, 300, user="carol", anon="a1", kind="identify")])
    assert store.profile("bob").total_events == 2  # type: ignore[union-attr]
    # An identify that happened earlier arrives late: it wins, as if it had come first.
    store.commit([ev(4, 150, user="alice", anon="a1", kind="identify")])
    statuses = {(link.user_id, link.status) for link in store.links("anonymous:a1")}
    assert statuses == {("alice", "active"), ("bob", "refused"), ("carol", "refused")}
    assert store.profile("alice").total_events == 2  # type: ignore[union-attr]
    assert store.profile("bob").events_by_type == {"identify": 1}  # type: ignore[union-attr]
    assert_recounts(store)


def relinking_splits_the_anonymous_history(make: MakeStore) -> None:
    store = make(identity_window_s=0.0, allow_relink=True)
    store.commit(
        [
            ev(1, 100, user="bob", anon="shared", kind="identify"),
            ev(2, 200, anon="shared"),
            ev(3, 300, user="carol", anon="shared", kind="identify"),
            ev(4, 400, anon="shared"),
        ]
    )
    assert store.profile("bob").total_events == 2  # type: ignore[union-attr]
    assert store.profile("carol").total_events == 2  # type: ignore[union-attr]
    assert_recounts(store)


def forget_removes_every_trace(make: MakeStore) -> None:
    store = make(identity_window_s=HOUR)
    keep = [ev(1, 0, user="bob"), ev(2, 30, user="bob", kind="search")]
    alice = [
        ev(3, 0, anon="a1"),
        ev(4, 60, user="alice", anon="a1", kind="identify"),
        ev(5, 120, user="alice", kind="search"),
        ev(6, 180, user="alice", kind="add_to_cart", session="s1"),
    ]
    store.commit(keep + alice)
    bad = json.dumps({"user_id": "alice", "event_type": "x", "timestamp": "soon"}).encode()
    store.add_dead_letters([NewDeadLetter("invalid_timestamp", "", bad, "m9")])
    report = store.forget("alice")
    assert report.raw_events == 4 and report.dead_letters == 1 and report.links == 1
    assert report.persons == ["alice", "anonymous:a1"]

    assert store.profile("alice") is None and store.profile("anonymous:a1") is None
    assert store.timeline("alice").items == [] and store.links("alice") == []
    assert store.count_dead_letters() == 0
    remaining = list(store.iter_raw_events())
    assert {e.key for e in remaining} == {e.key for e in keep}
    want = recount(remaining, [], store.rules, store.periods)
    snap = store.snapshot()
    assert snap.unique_users == {k: v for k, v in want.deltas.unique_users().items()}
    assert snap.session_stats == want.session_stats
    assert snap.funnel_users == {k: n for k, n in want.funnel_users.items() if n}
    assert_recounts(store)

    # A redelivery of a forgotten event is dropped; a genuinely new event later is counted.
    assert store.commit(alice).created == 0
    assert store.profile("alice") is None
    fresh = ev(7, 86400 + 60, user="alice")
    assert store.commit([fresh]).created == 1
    assert_recounts(store)


def forget_keeps_an_anonymous_id_refused_for_the_user(make: MakeStore) -> None:
    store = make(identity_window_s=HOUR)
    alice, a1, stays = refused_scenario()
    store.commit(stays[:2])
    store.commit(alice + a1 + stays[2:])
    assert {(k.anonymous_id, k.status) for k in store.links("alice")} == {
        ("a2", "refused"),
        ("a1", "active"),
    }
    assert store.profile("bob").total_events == 3  # type: ignore[union-attr]

    report = store.forget("alice")
    assert report.persons == ["alice", "anonymous:a1"]
    assert report.links == 2  # both proposals naming alice, whatever their status
    assert report.raw_events == len(alice) + len(a1)
    assert store.links("alice") == [] and store.links("anonymous:a1") == []
    bob_link = stays[0]
    assert store.links("anonymous:a2") == [
        Link("a2", "bob", bob_link.timestamp, bob_link.key, "active")
    ]
    assert store.stored_links() == store.links("anonymous:a2")
    assert {e.key for e in store.iter_raw_events()} == {e.key for e in stays}
    assert store.profile("alice") is None and store.profile("anonymous:a1") is None
    bob = store.profile("bob")
    assert bob is not None and bob.total_events == 3
    assert store.profile("anonymous:a2").total_events == 1  # type: ignore[union-attr]
    assert_matches_remaining(store)

    # Redeliveries stay out; a2 still counts for bob; a1 starts afresh as nobody's.
    assert store.commit(alice + a1).created == 0
    assert store.commit([ev(11, 900, anon="a2")]).created == 1
    assert store.profile("bob").total_events == 4  # type: ignore[union-attr]
    assert_matches_remaining(store)


def forget_makes_a_proposal_refused_for_the_user_active(make: MakeStore) -> None:
    """Without the user's link, the anonymous id's links are resolved again: a proposal that
    was refused because the user's came first is now the earliest, and active."""
    store = make(identity_window_s=HOUR)
    store.commit(
        [
            ev(1, 100, anon="a1"),
            ev(2, 200, user="alice", anon="a1", kind="identify"),
            ev(3, 300, user="carol", anon="a1", kind="identify"),
        ]
    )
    assert {(k.user_id, k.status) for k in store.links("anonymous:a1")} == {
        ("alice", "active"),
        ("carol", "refused"),
    }
    store.forget("alice")
    assert [(k.user_id, k.status) for k in store.links("anonymous:a1")] == [("carol", "active")]
    # a1's events up to the forget are gone; a new one counts for carol, whose link covers it.
    assert store.commit([ev(4, 86400 + 60, anon="a1")]).created == 1
    carol = store.profile("carol")
    assert carol is not None and carol.total_events == 2
    assert_matches_remaining(store)


def forget_covers_an_event_dated_ahead_of_the_clock(make: MakeStore) -> None:
    store = make()
    ahead = ev(2, 86400 + 1800, user="alice")  # half an hour after NOW: within the skew
    store.commit([ev(1, 0, user="alice"), ahead, ev(3, 0, user="bob")])
    report = store.forget("alice")
    assert report.raw_events == 2
    assert {e.key for e in store.iter_raw_events()} == {ev(3, 0, user="bob").key}
    assert store.commit([ahead]).created == 0  # a redelivery stays out
    assert store.profile("alice") is None
    assert_recounts(store)
