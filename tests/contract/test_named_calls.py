"""Segment's alias and group calls in the store (docs/behavior.md, `named_calls`): an alias of
an anonymous id links it as an identify would; a group call makes its sender a member and
sets the group's traits (the latest by event time wins); per day, a group's events and unique
users are its members'. Exact under redelivery and arrival order; `forget` removes a member."""

from __future__ import annotations

import json
from typing import Any

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.named_calls import group_call, rejection
from tests.contract.builders import BOT_AGENT, DAY_START, HOUR, NOW, MakeStore, assert_recounts, ev


def named(n: int, at: float, call: str, **fields: Any) -> Event:
    """Call `c{n}` (`call`: alias or group) as the collector publishes it, `at` seconds after
    DAY_START, parsed as the worker does and accepted by its rules."""
    payload: dict[str, Any] = {
        "event_id": f"c{n}",
        "id_kind": "message",
        "event_type": call,
        "call": call,
        "timestamp": DAY_START + at,
        "properties": fields.pop("properties"),
    }
    payload.update(fields)
    event = parse_message(json.dumps(payload).encode(), message_id=f"m{n}", received_at=NOW)
    assert isinstance(event, Event), event
    assert rejection(event) is None
    return event


def alias(n: int, at: float, user: str, previous: str) -> Event:
    return named(n, at, "alias", user_id=user, properties={"previousId": previous})


def group(n: int, at: float, who: str, group_id: str, **traits: Any) -> Event:
    properties = {"groupId": group_id, "traits": traits}
    return named(n, at, "group", user_id=who, properties=properties)


def test_an_alias_of_an_anonymous_id_links_it_as_an_identify_would(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="v1"), ev(2, 60, anon="v1", kind="search")])
    link = alias(3, 120, "alice", "v1")
    store.commit([link])
    store.commit([link])  # redelivered: nothing more

    alice = store.profile("alice")
    assert alice is not None and alice.total_events == 3  # the alias is an event of alice's
    assert alice.events_by_type == {"alias": 1, "page_view": 1, "search": 1}
    assert store.profile("anonymous:v1") is None
    ((anonymous_id, user_id, status),) = [
        (x.anonymous_id, x.user_id, x.status) for x in store.links("anonymous:v1")
    ]
    assert (anonymous_id, user_id, status) == ("v1", "alice", "active")
    store.commit([ev(4, 180, anon="v1")])  # later anonymous events count for alice at once
    assert store.profile("alice").total_events == 4  # type: ignore[union-attr]
    assert_recounts(store)


def test_an_alias_after_an_identify_of_the_same_anonymous_id_is_a_duplicate_link(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="v1"), ev(2, 60, user="alice", anon="v1", kind="identify")])
    store.commit([alias(3, 120, "alice", "v1"), alias(4, 130, "bob", "v1")])
    statuses = sorted((x.user_id, x.status) for x in store.links("anonymous:v1"))
    assert statuses == [("alice", "active"), ("alice", "duplicate"), ("bob", "refused")]
    assert store.profile("alice").total_events == 3  # type: ignore[union-attr]
    assert_recounts(store)


def test_a_group_call_is_an_event_of_its_sender(make_store: MakeStore) -> None:
    store = make_store()
    call = group(1, 0, "alice", "acme", plan="b2b")
    assert group_call(call) is not None
    store.commit([call])
    alice = store.profile("alice")
    assert alice is not None and alice.events_by_type == {"group": 1}
    assert_recounts(store)


def test_a_crawlers_group_call_makes_no_member_and_sets_no_traits(make_store: MakeStore) -> None:
    """A crawler's event counts for no person (docs/behavior.md "Bots"): its group call is an
    event (a bot event of the hour) but no membership, and its traits, though the latest by
    event time, are not the group's. Before, Googlebot rendering a page became a member and
    emptied the group's traits, and `verify` agreed."""
    store = make_store()
    human = group(1, 0, "alice", "acme", plan="pro")
    crawler = named(
        2,
        HOUR,
        "group",
        anonymous_id="v1",
        properties={"groupId": "acme", "traits": {}, "user_agent": BOT_AGENT},
    )
    BehaviorRules().enrich(crawler)
    assert is_bot(crawler.properties) and group_call(crawler) is None
    store.commit([human, crawler])
    found = store.group("acme")
    assert found is not None
    assert (found.members, found.traits) == (["alice"], {"plan": "pro"})
    assert (
        store.snapshot().bot_events[("hour", store.periods.label("hour", crawler.timestamp))] == 1
    )
    assert_recounts(store)


def test_a_group_keeps_its_members_and_its_latest_traits_whatever_the_order(
    make_store: MakeStore,
) -> None:
    store = make_store()
    assert store.group("acme") is None
    late = group(2, 3 * HOUR, "bob", "acme", plan="enterprise", seats=40)
    early = group(1, HOUR, "alice", "acme", plan="pro")
    again = group(3, 2 * HOUR, "alice", "acme", plan="team")
    store.commit([late])
    store.commit([early, again])
    store.commit([late, early])  # redelivered: nothing more
    found = store.group("acme")
    assert found is not None
    assert found.members == ["alice", "bob"]
    assert (found.traits, found.traits_at) == ({"plan": "enterprise", "seats": 40}, late.timestamp)
    other = make_store()  # another worker on the same data sees the same
    assert other.group("acme") == found
    assert store.group("globex") is None


def test_a_group_call_without_traits_keeps_the_groups_traits(make_store: MakeStore) -> None:
    """Segment's libraries send `"traits": {}` for `group(user, group)`: such a call joins the
    member and leaves the traits of the latest call that gave some. Before, it emptied them."""
    store = make_store()
    bare = named(3, 2 * HOUR, "group", user_id="bob", properties={"groupId": "acme"})
    store.commit([group(1, 0, "alice", "acme", plan="pro", seats=5)])
    store.commit([group(2, HOUR, "carol", "acme"), bare])
    found = store.group("acme")
    assert found is not None and found.members == ["alice", "bob", "carol"]
    assert (found.traits, found.traits_at) == ({"plan": "pro", "seats": 5}, DAY_START)
    store.commit([group(4, 3 * HOUR, "dan", "globex")])
    only_members = store.group("globex")
    assert only_members is not None
    assert (only_members.members, only_members.traits) == (["dan"], {})
    assert only_members.traits_at is None
    assert_recounts(store)


def test_a_group_counts_its_members_events_per_day_and_forget_removes_a_member(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    next_day = store.periods.label("day", DAY_START + 24 * HOUR)  # type: ignore[attr-defined]
    batch = [
        group(1, 60, "alice", "acme"),
        group(2, 120, "bob", "acme"),
        ev(3, 180, user="alice"),
        ev(4, 240, user="alice", kind="search"),
        ev(5, 300, user="carol"),  # not a member
        ev(6, 360, anon="v1"),  # bob's, once the identify below links v1
        ev(7, 420, user="bob", anon="v1", kind="identify"),
        ev(8, 24 * HOUR + 60, user="alice"),
        ev(9, 400, user="bob", kind="bot_check", user_agent=BOT_AGENT),  # a bot: skipped
    ]
    store.commit(batch[:4])
    store.commit(batch[4:])
    store.commit(batch)  # redelivered: nothing more
    found = store.group("acme")
    assert found is not None
    days = [(d.day, d.events, d.unique_users) for d in found.days]
    assert days == [(day, 6, 2), (next_day, 1, 1)]
    report = store.forget("alice")
    assert report.persons[0] == "alice"
    found = store.group("acme")
    assert found is not None and found.members == ["bob"]
    assert [(d.day, d.events, d.unique_users) for d in found.days] == [(day, 3, 1)]
    assert_recounts(store)


def test_an_anonymous_member_who_signs_in_keeps_its_activity_in_the_group(
    make_store: MakeStore,
) -> None:
    """The member is `anonymous:v1`; once v1 signs in as ann, its events count for ann: the
    group showed no day at all, not even its own group call (trial: `"days": []`)."""
    store = make_store(identity_window_s=HOUR)
    day = store.periods.label("day", DAY_START)  # type: ignore[attr-defined]
    joined = named(2, 60, "group", anonymous_id="v1", properties={"groupId": "acme"})
    batch = [
        ev(1, 0, anon="v1"),
        joined,
        ev(3, 120, user="ann", anon="v1", kind="identify"),
        ev(4, 180, user="ann"),  # ann's own: not the member's
        ev(5, 240, anon="v1"),
    ]
    store.commit(batch)
    store.commit(batch)  # redelivered: nothing more
    found = store.group("acme")
    assert found is not None and found.members == ["anonymous:v1"]
    assert [(d.day, d.events, d.unique_users) for d in found.days] == [(day, 3, 1)]
    assert store.profile("ann").total_events == 5  # type: ignore[union-attr]
    assert_recounts(store)
