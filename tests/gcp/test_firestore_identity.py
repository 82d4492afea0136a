"""Identity stitching and forgetting a user on the Firestore store (the emulator).

The rules every store follows are the contract suite's (tests/contract/test_identity.py,
test_forget.py): an `identify` event with both ids proposes a link, the earliest by event time
wins per anonymous id, a second user is refused unless relinking is allowed, and anonymous
events from the identity window before the link on count for the user. Here they hold on
Firestore whatever the order events arrive in, with writers committing in between and
concurrently, and `forget` removes every trace exactly, with counter shards too. After each,
the stored figures equal a recount of the raw events with the stored links and `verify` finds
no drift.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.identity import Link
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.people import People
from tests.contract.builders import (
    DAY_START,
    HOUR,
    assert_matches_remaining,
    assert_recounts,
    ev,
    refused_scenario,
    sent_later,
)
from tests.faults import Workload, assert_exact, commit_concurrently, expected_links
from tests.gcp.test_firestore_behavior import make_store

PURCHASE = parse_funnels(PURCHASE_FUNNEL)
FUNNEL_KINDS = ["page_view", "search", "add_to_cart", "purchase", "button_click"]

SettingsFor = Callable[..., Any]


def _order(link: Link) -> tuple[str, float, str]:
    return (link.anonymous_id, link.linked_at, link.event_key)


def assert_exact_with_links(store: FirestoreStore, events: list[Event]) -> None:
    """The stored links are exactly those the events' identifies resolve to (explicitly: not
    through `assert_exact`'s fallback for a store without links), and every figure equals a
    recount of the distinct events with them; `verify` finds no drift."""
    distinct = {e.key: e for e in events}
    assert store.rules is not None
    want = expected_links(distinct.values(), store.rules.allow_relink)
    assert sorted(store.stored_links(), key=_order) == sorted(want, key=_order)
    assert_exact(store, Workload([], distinct, []), Periods())
    assert_recounts(store)


# -- Firestore specifics ----------------------------------------------------------------------


def test_a_link_that_moves_a_client_session_between_the_reads_is_planned_again(
    settings_for: SettingsFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer reads a visitor's profile (client session `s1` stored), another commits the
    identify that moves those events to the user, then the first queries the session's stored
    times (its new event comes before them, so they cannot merge): the times are gone, and the
    commit plans again from fresh reads instead of failing."""
    a = make_store(settings_for, identity_window_s=6 * HOUR)
    b = make_store(settings_for, identity_window_s=6 * HOUR)
    visits = [ev(1, HOUR, anon="v1", session="s1"), ev(2, HOUR + 60, anon="v1", session="s1")]
    a.commit(visits)
    identify = ev(3, HOUR + 120, user="alice", anon="v1", kind="identify")
    pending = [lambda: b.commit([identify])]
    query = People.client_times_from

    def client_times_from(people: People, person: str, low: float) -> dict[str, list[float]]:
        if pending:  # once: b's link lands between a's profile read and this query
            pending.pop()()
        return query(people, person, low)

    monkeypatch.setattr(People, "client_times_from", client_times_from)
    early = ev(4, HOUR - 600, anon="v1", session="s1", kind="search")
    assert a.commit([early]).created == 1
    assert not pending and a.conflicts >= 1
    alice = a.profile("alice")
    assert alice is not None and alice.total_events == 4
    assert_exact_with_links(a, [*visits, identify, early])


def test_the_identify_first_then_late_and_later_anonymous_events(
    settings_for: SettingsFor,
) -> None:
    """Anonymous events committed after the identify that links them: those within the window
    before it (late, pre-login) and those after it all count for the user at once."""
    store = make_store(settings_for, identity_window_s=HOUR)
    identify = ev(1, 2 * HOUR, user="alice", anon="a1", kind="identify")
    own = ev(2, 2 * HOUR + 30, user="alice", kind="search")
    store.commit([identify, own])
    assert store.commit([identify]).created == 0  # a redelivered identify changes nothing
    late = [ev(3, HOUR + 60, anon="a1"), ev(4, 2 * HOUR - 60, anon="a1", kind="search")]
    store.commit(late[1:])
    store.commit(late[:1])
    later = [ev(5, 2 * HOUR + 300, anon="a1", kind="add_to_cart"), ev(6, 3 * HOUR, anon="a1")]
    store.commit(later)

    alice = store.profile("alice")
    assert alice is not None and alice.total_events == 6
    assert alice.events_by_type == {
        "identify": 1,
        "search": 2,
        "page_view": 2,
        "add_to_cart": 1,
    }
    assert alice.first_seen == DAY_START + HOUR + 60
    assert store.profile("anonymous:a1") is None
    for at in (HOUR, 2 * HOUR, 3 * HOUR):
        hour = store.periods.label("hour", DAY_START + at)
        assert store.series("hour", hour, hour)[0].unique_users == 1  # alice only
    [link] = store.links("alice")
    assert (link.anonymous_id, link.status, link.event_key) == ("a1", "active", identify.key)
    everything = [identify, own, *late, *later]
    assert_exact_with_links(store, everything)

    # Before the window the anonymous visitor stays their own person.
    early = ev(7, HOUR - 60, anon="a1")
    store.commit([early])
    assert store.profile("anonymous:a1").total_events == 1  # type: ignore[union-attr]
    assert store.profile("alice").total_events == 6  # type: ignore[union-attr]
    assert_exact_with_links(store, [*everything, early])


def _between(store: FirestoreStore, hook: str, meanwhile: Callable[[], Any]) -> list[Any]:
    """Run `meanwhile` (another store's commit) once, inside `store`'s commit: after its first
    read (`get`, whatever it reads and with whatever mask) or right before its first commit
    request (`send`), i.e. between its reads and its commit."""
    original = getattr(store.gateway, hook)
    pending = [meanwhile]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if hook == "send" and pending:
            pending.pop()()
        result = original(*args, **kwargs)
        if hook == "get" and pending:
            pending.pop()()
        return result

    setattr(store.gateway, hook, wrapped)
    return pending


@pytest.mark.parametrize("hook", ["get", "send"])
@pytest.mark.parametrize("prior", [True, False], ids=["a1-seen-before", "a1-new"])
@pytest.mark.parametrize("meanwhile", ["anonymous", "identify"])
def test_a_writer_in_between_with_the_identify_or_the_anonymous_event_is_recomputed(
    settings_for: SettingsFor, hook: str, prior: bool, meanwhile: str
) -> None:
    """Store b commits while store a is between its reads and its commit: b an anonymous
    event of a1 while a commits a1's identify, or b the identify while a commits an anonymous
    event of a1. Either way a's commit is refused, recomputed, and everything ends exact."""
    a = make_store(settings_for, identity_window_s=HOUR)
    b = make_store(settings_for, identity_window_s=HOUR)
    setup = [ev(1, 0, user="alice"), ev(2, 600, anon="a1")] if prior else [ev(1, 0, user="alice")]
    a.commit(setup)
    identify = [ev(3, 1200, user="alice", anon="a1", kind="identify")]
    anonymous = [ev(4, 900, anon="a1", kind="search"), ev(5, 1500, anon="a1")]
    a_events, b_events = (
        (identify, anonymous) if meanwhile == "anonymous" else (anonymous, identify)
    )
    pending = _between(a, hook, lambda: b.commit(b_events))
    result = a.commit(a_events)
    assert not pending, f"a's commit never called {hook}: b did not commit in between"
    assert result.created == len(a_events) and a.conflicts >= 1

    alice = a.profile("alice")
    assert alice is not None and alice.total_events == len(setup) + 3
    assert a.profile("anonymous:a1") is None
    assert [(link.anonymous_id, link.status) for link in a.links("alice")] == [("a1", "active")]
    assert_exact_with_links(a, setup + identify + anonymous)
    hour = a.periods.label("hour", DAY_START)
    assert a.series("hour", hour, hour)[0].unique_users == 1


@pytest.mark.parametrize("allow_relink", [False, True])
def test_concurrent_writers_with_many_identifies_per_anonymous_id_stay_exact(
    settings_for: SettingsFor, allow_relink: bool
) -> None:
    """Three writers, the same anonymous visitors and users, several identifies per
    anonymous id (earlier ones arriving later, second users, duplicates), a window longer than
    the traffic: every anonymous event moves, some more than once, and it all ends exact."""
    rng = random.Random(7 + allow_relink)
    users = ["alice", "bob", "carol", "team/dave"]
    events: list[Event] = []
    n = 0

    def add(at: float, **fields: Any) -> None:
        nonlocal n
        n += 1
        events.append(ev(n, round(at, 3), **fields))

    for v in range(12):
        aid = f"v{v}"
        for _ in range(6):
            session = f"s{v}" if rng.random() < 0.3 else None
            add(rng.uniform(0, 4 * HOUR), anon=aid, kind=rng.choice(FUNNEL_KINDS), session=session)
        for _ in range(rng.randint(1, 4)):
            add(rng.uniform(0, 4 * HOUR), user=rng.choice(users), anon=aid, kind="identify")
    for _ in range(60):
        add(rng.uniform(0, 4 * HOUR), user=rng.choice(users), kind=rng.choice(FUNNEL_KINDS))
    rng.shuffle(events)

    stores = [
        make_store(settings_for, identity_window_s=6 * HOUR, allow_relink=allow_relink)
        for _ in range(3)
    ]
    shares: list[list[Event]] = [[], [], []]
    for event in events:  # each event to one writer; a fifth of them to a second one as well
        first = rng.randrange(3)
        shares[first].append(event)
        if rng.random() < 0.2:
            shares[(first + 1) % 3].append(event)
    commit_concurrently(stores, shares, 8)
    # The workload does exercise every status (checked on the expectation, not the store).
    statuses = {link.status for link in expected_links(events, allow_relink)}
    assert statuses == {"active", "duplicate"} | (set() if allow_relink else {"refused"})
    assert_exact_with_links(stores[0], events)


def test_forget_with_counter_shards_stays_exact(settings_for: SettingsFor) -> None:
    store = make_store(settings_for, shards=3, identity_window_s=HOUR)
    alice, a1, stays = refused_scenario()
    alice = alice[1:]  # without the refused proposal (the contract suite's): a2 is bob's
    more = [
        ev(20 + i, 900 + 60 * i, user="alice", kind=kind) for i, kind in enumerate(FUNNEL_KINDS)
    ]
    more += [ev(30 + i, 60 * i, user="carol", kind=kind) for i, kind in enumerate(FUNNEL_KINDS)]
    everything = alice + a1 + stays + more
    for start in range(0, len(everything), 3):  # flushes land on different shards
        store.commit(everything[start : start + 3])
    assert_exact_with_links(store, everything)
    day = store.periods.label("day", DAY_START)
    before = store.series("day", day, day)[0]
    # alice (a1's visit, then her own), carol; bob and anonymous:a2 enter only.
    assert store.funnel("purchase", day, day)[0].users_by_step == [4, 2, 2, 2]

    report = store.forget("alice")
    assert report.persons == ["alice", "anonymous:a1"]
    assert report.raw_events == len(alice) + len(a1) + 5
    after = store.series("day", day, day)[0]
    assert after.total_events == before.total_events - report.raw_events
    assert after.unique_users == before.unique_users - 1
    assert store.funnel("purchase", day, day)[0].users_by_step == [3, 1, 1, 1]
    assert_matches_remaining(store)
    # After the tombstone: a1 is a new visitor of nobody's, carol counts on.
    store.commit(
        [ev(40, 1000, user="carol", kind="purchase"), sent_later(41, 86400 + 60, anon="a1")]
    )
    assert store.profile("anonymous:a1").total_events == 1  # type: ignore[union-attr]
    assert_matches_remaining(store)
