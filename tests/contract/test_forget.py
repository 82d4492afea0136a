"""`Store.forget`: a user's raw events, profile, sessions, funnel entries, links and dead
letters go, with the anonymous ids linked to them; their contribution leaves every aggregate;
a tombstone keeps redeliveries of their events out. Afterwards the figures equal a recount of
the raw events that remain, with the links that remain."""

from __future__ import annotations

import json

import pytest

from behavioral_analytics.identity import Link
from behavioral_analytics.store import NewDeadLetter
from tests.contract.builders import (
    BOT_AGENT,
    DAY,
    DAY_START,
    HOUR,
    NOW,
    MakeStore,
    assert_counts,
    assert_matches_remaining,
    assert_recounts,
    ev,
    refused_scenario,
    sent_later,
    without_copies,
)


def test_forget_removes_every_trace_and_keeps_redeliveries_out(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
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
    assert_counts(store, keep)
    assert_recounts(store)

    # A rejected message of the forgotten anonymous id already on its way is not recorded;
    # one naming another a1 field (a user id "a1") is someone else's.
    on_its_way = [
        NewDeadLetter(
            "invalid_timestamp", "", json.dumps(fields).encode(), f"m{i}", received_at=NOW
        )
        for i, fields in enumerate([{"anonymousId": "a1"}, {"userId": "a1"}, {"event": "x"}])
    ]
    result = store.commit([], on_its_way)
    assert (result.letters_forgotten, result.dead_letters) == (1, 2)
    assert store.count_dead_letters() == 2

    # A redelivery of a forgotten event is dropped; a genuinely new event later is counted.
    assert store.commit(alice).created == 0
    assert store.profile("alice") is None
    fresh = sent_later(7, 86400 + 60, user="alice")
    assert store.commit([fresh]).created == 1
    assert_recounts(store)


def test_forget_keeps_an_anonymous_id_whose_proposal_was_refused(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
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


def test_forget_makes_a_proposal_refused_for_the_user_active(make_store: MakeStore) -> None:
    """Without the user's link, the anonymous id's links are resolved again: a proposal that
    was refused because the user's came first is now the earliest, and active."""
    store = make_store(identity_window_s=HOUR)
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
    assert store.commit([sent_later(4, 86400 + 60, anon="a1")]).created == 1
    carol = store.profile("carol")
    assert carol is not None and carol.total_events == 2
    assert_matches_remaining(store)


def test_forget_covers_an_event_dated_ahead_of_the_clock(make_store: MakeStore) -> None:
    store = make_store()
    ahead = ev(2, 86400 + 1800, user="alice")  # half an hour after NOW: within the skew
    store.commit([ev(1, 0, user="alice"), ahead, ev(3, 0, user="bob")])
    report = store.forget("alice")
    assert report.raw_events == 2
    assert {e.key for e in store.iter_raw_events()} == {ev(3, 0, user="bob").key}
    assert store.commit([ahead]).created == 0  # a redelivery stays out
    assert store.profile("alice") is None
    assert_recounts(store)


def test_forget_covers_what_was_already_on_its_way(make_store: MakeStore) -> None:
    """Messages of alice published before the forget ran but processed after it (waiting on
    Pub/Sub, or pulled into a worker's batch): an event dated after the tombstone by a client
    clock ahead of the broker's is dropped as `forgotten`, and a rejected one is recorded as
    no dead letter. Bob's rejected message is kept; what alice sends after the forget counts,
    and is kept when rejected."""
    store = make_store()
    store.commit([ev(1, 0, user="alice"), ev(2, 0, user="bob")])
    store.forget("alice")
    ahead = ev(3, DAY + 1800, user="alice")  # published at NOW, dated half an hour later

    def rejected(who: str, message_id: str, received_at: float) -> NewDeadLetter:
        data = json.dumps({"userId": who, "event_type": "x", "timestamp": "soon"}).encode()
        return NewDeadLetter("invalid_timestamp", "", data, message_id, received_at=received_at)

    result = store.commit([ahead], [rejected("alice", "m1", NOW), rejected("bob", "m2", NOW)])
    assert (result.created, result.forgotten) == (0, 1)
    assert (result.dead_letters, result.letters_forgotten) == (1, 1)
    store.add_dead_letters([rejected("alice", "m3", NOW)])  # the collector's path
    assert [d.message_id for d in store.dead_letters(10).items] == ["m2"]
    assert store.profile("alice") is None

    result = store.commit(
        [sent_later(4, DAY + 60, user="alice")], [rejected("alice", "m4", NOW + 60)]
    )
    assert (result.created, result.dead_letters, result.letters_forgotten) == (1, 1, 0)
    assert sorted(d.message_id for d in store.dead_letters(10).items) == ["m2", "m4"]
    assert_recounts(store)


def test_forget_covers_rejected_calls_only_a_lenient_reader_takes(make_store: MakeStore) -> None:
    """The collector keeps a call rejected for `NaN`, an integer past 64 bits (of any length)
    or a lone surrogate as sent: its who-fields still name its sender, so one of a forgotten
    person on its way is not recorded, and one of someone else is."""
    store = make_store()
    store.commit([ev(1, 0, user="alice"), ev(2, 0, user="bob")])
    store.forget("alice")
    odd = ["NaN", "-Infinity", "9" * 5000, '"\\ud83c"']

    def rejected(who: str, index: int) -> NewDeadLetter:
        data = f'{{"userId":"{who}","event":"E","properties":{{"x":{odd[index]}}}}}'.encode()
        return NewDeadLetter("invalid_number", "", data, f"{who}{index}", received_at=NOW)

    result = store.commit([], [rejected(who, i) for who in ("alice", "bob") for i in range(4)])
    assert (result.dead_letters, result.letters_forgotten) == (4, 4)
    assert store.add_dead_letters([rejected("alice", 0), rejected("bob", 0)]) == 1
    assert sorted(d.message_id for d in store.dead_letters(10).items) == [
        f"bob{i}" for i in range(4)
    ]


def test_forgetting_an_unknown_user_deletes_nothing_but_leaves_a_tombstone(
    make_store: MakeStore,
) -> None:
    store = make_store()
    store.commit([ev(1, 0, user="bob")])
    before = store.snapshot()
    report = store.forget("nobody")
    assert (report.raw_events, report.links, report.dead_letters) == (0, 0, 0)
    assert (report.sessions, report.funnel_entries) == (0, 0)
    assert without_copies(store.snapshot()) == without_copies(before)
    # The tombstone is left all the same: what nobody did before the forget stays out.
    assert store.commit([ev(2, 60, user="nobody")]).created == 0
    assert store.commit([sent_later(3, 86400 + 60, user="nobody")]).created == 1


def test_forget_takes_crawler_events_with_whoever_sent_them(make_store: MakeStore) -> None:
    """docs/behavior.md "Forgetting a user", step 2: a crawler's event counts for no person,
    so it goes with its sender, whatever link covers its time. a1's crawler event arrives while
    alice's proposal is a1's only one; bob's earlier proposal then takes a1 (alice's is
    refused): `forget alice` leaves a1's events. a2, actively linked to alice, loses all of
    its crawler events, and their redeliveries stay out."""
    store = make_store(identity_window_s=HOUR)
    a1_bot = ev(2, 180, anon="a1", user_agent=BOT_AGENT)
    a2_bots = [
        ev(5, 30, anon="a2", user_agent=BOT_AGENT),
        ev(6, 600, anon="a2", user_agent=BOT_AGENT),
    ]
    store.commit([ev(1, 120, user="alice", anon="a1", kind="identify")])
    store.commit([a1_bot])
    store.commit([ev(3, 60, user="bob", anon="a1", kind="identify")])
    store.commit([ev(4, 300, user="alice", anon="a2", kind="identify"), *a2_bots])
    assert {(k.anonymous_id, k.status) for k in store.links("alice")} == {
        ("a1", "refused"),
        ("a2", "active"),
    }

    report = store.forget("alice")

    assert report.persons == ["alice", "anonymous:a2"]
    kept = {e.key for e in store.iter_raw_events()}
    assert kept == {a1_bot.key, ev(3, 60, user="bob", anon="a1", kind="identify").key}
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    assert [p.bot_events for p in store.series("day", day, day)] == [1]
    result = store.commit([a1_bot, *a2_bots])
    assert (result.created, result.duplicates, result.forgotten) == (0, 1, 2)
    assert_matches_remaining(store)


def test_copies_in_one_batch_after_a_forget_are_one_forgotten_event(
    make_store: MakeStore,
) -> None:
    # docs/behavior.md "Forgetting a user", step 6: the first copy is dropped as `forgotten`,
    # the other copy is a duplicate of it.
    store = make_store(identity_window_s=HOUR)
    event = ev(1, 0, user="alice")
    store.commit([event])
    store.forget("alice")
    result = store.commit([event, event])
    assert (result.created, result.duplicates, result.forgotten) == (0, 1, 1)


def test_forget_reads_a_dead_letter_nested_deeper_than_the_decoder_follows(
    make_store: MakeStore,
) -> None:
    """The collector keeps a request refused as `too_deep`: decoding it raises RecursionError,
    which stopped every `forget` while the letter was kept."""
    store = make_store()
    deep = b"[" * 5000 + b"]" * 5000
    store.add_dead_letters(
        [
            NewDeadLetter("request:too_deep", "", b'{"batch":' + deep + b"}", "d1"),
            NewDeadLetter("too_deep", "", b'{"user_id":"gone","p":' + deep + b"}", "d2"),
        ]
    )
    report = store.forget("gone")
    assert report.dead_letters == 1
    assert [d.message_id for d in store.dead_letters(10).items] == ["d1"]


@pytest.mark.parametrize("identify_first", [False, True], ids=["visit-first", "identify-first"])
def test_a_link_made_after_a_forget_reaches_back_to_no_event_before_it(
    make_store: MakeStore, identify_first: bool
) -> None:
    """Alice is forgotten at NOW, then signs in again on `a1` (an identify dated after the
    tombstone). Her link covers `a1`'s visit half an hour before NOW by the identity window,
    but a forget is a cut: the visit stays `a1`'s in either order. Before, it was dropped as
    alice's when the identify came first, and moved to her (a forgotten person keeping an
    event dated before her tombstone) when the visit came first; `verify` saw no drift."""
    store = make_store(identity_window_s=HOUR)
    store.commit([ev(1, 0, user="alice")])
    store.forget("alice")
    visit = ev(2, 86400 - 1800, anon="a1")
    identify = sent_later(3, 86400 + 60, user="alice", anon="a1", kind="identify")
    # Published at NOW, as the forget ran, and dated after it: a1's, not alice's, when sent.
    after = ev(4, 86400 + 600, anon="a1")
    batches = [[identify], [visit, after]] if identify_first else [[visit, after], [identify]]
    for batch in batches:
        assert store.commit(batch).forgotten == 0
    alice, a1 = store.profile("alice"), store.profile("anonymous:a1")
    assert alice is not None and a1 is not None
    assert (alice.total_events, a1.total_events) == (2, 1)
    assert {s.event.key for s in store.timeline("alice").items} == {identify.key, after.key}
    (link,) = store.stored_links()
    assert link.user_forgotten_at == NOW and store.links("alice") == [link]
    assert_recounts(store)
