"""`Store.forget("anonymous:ID")`: a visitor who never signed in is forgotten on their own, by
their anonymous id: their raw events (crawler events they sent too), profile, sessions,
funnel entries and the dead letters naming the id go, their counts leave every aggregate,
and a tombstone keeps their redeliveries out. A visitor a link makes a user's is refused:
their events count for that user, who is forgotten with them (docs/behavior.md,
"Forgetting a user")."""

from __future__ import annotations

import json

import pytest

from behavioral_analytics.store import LinkedAnonymousId, NewDeadLetter
from tests.contract.builders import (
    BOT_AGENT,
    DAY,
    HOUR,
    NOW,
    MakeStore,
    assert_counts,
    assert_matches_remaining,
    ev,
    sent_later,
)


def _letter(n: int, fields: dict[str, object], received_at: float = 0.0) -> NewDeadLetter:
    return NewDeadLetter(
        "invalid_value", "", json.dumps(fields).encode(), f"m{n}", received_at=received_at
    )


def test_forget_of_a_visitor_removes_their_traces_and_nobody_elses(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
    visitor = [
        ev(1, 0, anon="v1", session="s1"),
        ev(2, 60, anon="v1", kind="search", session="s1"),
        ev(3, 120, anon="v1", kind="add_to_cart", session="s1"),
        ev(4, 90, anon="v1", user_agent=BOT_AGENT),
    ]
    keep = [
        ev(5, 0, user="bob", anon="b1", kind="identify"),
        ev(6, 30, user="bob", kind="search"),
        ev(7, 45, anon="v2"),
        # A user whose id is the visitor's anonymous id is another person.
        ev(8, 50, user="v1", kind="search"),
    ]
    store.commit(visitor + keep)
    naming = [{"anonymousId": "v1", "event": ""}, {"type": "alias", "previousId": "v1"}]
    others = [{"userId": "v1", "event": ""}, {"anonymousId": "v2", "event": ""}]
    store.add_dead_letters([_letter(i, f) for i, f in enumerate(naming + others)])

    report = store.forget("anonymous:v1")

    assert report.persons == ["anonymous:v1"]
    assert (report.raw_events, report.dead_letters, report.links) == (4, 2, 0)
    assert report.sessions >= 1
    assert store.profile("anonymous:v1") is None
    assert store.timeline("anonymous:v1").items == []
    assert store.profile("v1") is not None and store.profile("bob") is not None
    assert {e.key for e in store.iter_raw_events()} == {e.key for e in keep}
    left = sorted(bytes(d.data) for d in store.dead_letters(limit=10).items)
    assert left == sorted(json.dumps(f).encode() for f in others)
    assert_counts(store, keep)
    assert_matches_remaining(store)

    # Redeliveries of the visitor's events stay out, and a rejected message of theirs already
    # on its way is not recorded; a visit published after the forget is new activity.
    result = store.commit(visitor, [_letter(9, naming[0], received_at=NOW)])
    assert (result.created, result.forgotten, result.letters_forgotten) == (0, 4, 1)
    assert store.commit([sent_later(10, DAY + 60, anon="v1")]).created == 1
    assert_matches_remaining(store)


def test_forget_refuses_a_visitor_linked_to_a_user(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
    events = [ev(1, 0, anon="a1"), ev(2, 60, user="alice", anon="a1", kind="identify")]
    store.commit(events)
    before = sorted(e.key for e in store.iter_raw_events())

    with pytest.raises(LinkedAnonymousId, match="forget alice") as refused:
        store.forget("anonymous:a1")

    assert refused.value.user == "alice"
    assert sorted(e.key for e in store.iter_raw_events()) == before
    assert store.profile("alice") is not None
    # No tombstone was left: a1's next visit, dated before now, still counts for alice.
    assert store.commit([ev(3, 600, anon="a1")]).created == 1
    assert_matches_remaining(store)
