"""Identity stitching: an `identify` event with both ids proposes a link; per anonymous id the
earliest proposal by event time wins (ties: the smaller event key), a second user is refused
unless relinking is allowed, and anonymous events from the identity window before the link on
count for the user. After each scenario the figures recount cleanly (`verify`)."""

from __future__ import annotations

from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link, LinkStatus
from tests.contract.builders import DAY_START, HOUR, MakeStore, assert_recounts, ev
from tests.faults import expected_links


def _order(link: Link) -> tuple[str, float, str]:
    return (link.anonymous_id, link.linked_at, link.event_key)


def test_an_identify_moves_the_visit_before_it_to_the_user(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="a1"), ev(2, 60, anon="a1", kind="search")])
    store.commit([ev(3, 10 * HOUR, user="alice")])
    hour = store.periods.label("hour", DAY_START)  # type: ignore[attr-defined]
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
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    sessions = {p.period: p.stats for p in store.session_series("day", day, day)}
    assert sessions[day].sessions == 2 and sessions[day].events == 5
    assert_recounts(store)


def test_a_second_user_is_refused_unless_earlier_and_the_trail_is_kept(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
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


def test_relinking_when_allowed_splits_the_anonymous_history(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=0.0, allow_relink=True)
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


def test_links_of_a_user_and_of_an_anonymous_id_with_their_status_in_order(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
    assert store.stored_links() == [] and store.links("alice") == []
    bob = ev(1, 200, user="bob", anon="a1", kind="identify")
    alice_first = ev(2, 150, user="alice", anon="a1", kind="identify")  # earlier, arrives later
    carol = ev(3, 300, user="carol", anon="a1", kind="identify")
    alice_again = ev(4, 400, user="alice", anon="a1", kind="identify")
    alice_a2 = ev(5, 500, user="alice", anon="a2", kind="identify")
    # Two proposals for a3 at the same time: the smaller event key wins.
    tied = sorted(
        [
            ev(6, 600, user="alice", anon="a3", kind="identify"),
            ev(7, 600, user="bob", anon="a3", kind="identify"),
        ],
        key=lambda e: e.key,
    )
    store.commit([bob, carol])
    store.commit([alice_again, alice_a2, *tied])
    store.commit([alice_first])

    def link(e: Event, status: LinkStatus) -> Link:
        assert e.user_id and e.anonymous_id
        return Link(e.anonymous_id, e.user_id, e.timestamp, e.key, status)

    first_tied, second_tied = tied
    want_alice = [
        link(alice_first, "active"),
        link(alice_again, "duplicate"),
        link(alice_a2, "active"),
    ]
    want_alice += [
        link(e, "active" if e is first_tied else "refused") for e in tied if e.user_id == "alice"
    ]
    want_alice.sort(key=lambda k: (k.linked_at, k.event_key))
    assert store.links("alice") == want_alice
    assert store.links("anonymous:a1") == [
        link(alice_first, "active"),
        link(bob, "refused"),
        link(carol, "refused"),
        link(alice_again, "duplicate"),
    ]
    assert store.links("anonymous:a3") == [
        link(first_tied, "active"),
        link(second_tied, "refused"),
    ]
    assert store.links("anonymous:nobody") == [] and store.links("dave") == []
    everything = [bob, alice_first, carol, alice_again, alice_a2, *tied]
    assert sorted(store.stored_links(), key=_order) == sorted(
        expected_links(everything), key=_order
    )
    assert len(store.stored_links()) == 7
    assert_recounts(store)
