"""The copies of raw events the Firestore store keeps to spare queries (`kept_copies`): each
person's digest of recent events and each anonymous actor's list of its events. Changed behind
the store's back (a bug, a hand edit), they change no figure until that person's next commit,
which then derives from them: `verify` compares them with the raw events, and `--repair`
drops them (a commit reads the raw events instead, and keeps them anew)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from behavioral_analytics.events import Event, Limits
from behavioral_analytics.funnels import parse_funnels
from behavioral_analytics.stores.firestore.behavior import decode_recent, encode_recent
from behavioral_analytics.stores.firestore.identity import (
    decode_anonymous_events,
    encode_anonymous_events,
)
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    ANONYMOUS_EVENTS_FIELD,
    RECENT_FIELD,
)
from behavioral_analytics.verification import compare, verify
from tests.contract.builders import without_copies
from tests.faults import assert_recounts as recounts_cleanly
from tests.faults import behavior_event
from tests.gcp.test_firestore_behavior import DAY_START, NOW, PURCHASE, make_store


def _ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, DAY_START + at, received_at=NOW, **fields)


def test_verify_finds_a_digest_or_list_that_disagrees_with_the_raw_events(
    settings_for: Callable[..., Any],
) -> None:
    store = make_store(settings_for)
    events = [
        _ev(1, 0, user="bob"),  # no client session id: in bob's digest
        _ev(2, 60, user="bob", kind="search", session="s1"),  # a funnel step: in it too
        _ev(3, 120, anon="a1", kind="scroll"),  # a1's, listed
        _ev(4, 180, anon="a1", kind="scroll", session="s2"),
    ]
    store.commit(events)
    recounts_cleanly(store, NOW)
    snapshot = store.snapshot()
    assert snapshot.recent_events is not None and snapshot.anonymous_events is not None
    assert set(snapshot.recent_events["bob"][1]) == {events[0].key, events[1].key}
    assert [row[0] for row in snapshot.anonymous_events["anonymous:a1"]] == [
        events[2].key,
        events[3].key,
    ]

    bob = store.db.collection(AGGREGATES).document("user_bob")
    since, digest = decode_recent(bob.get().to_dict()[RECENT_FIELD])  # type: ignore[index]
    lost = digest.pop(events[1].key)
    bob.update({RECENT_FIELD: encode_recent(since, digest)})
    a1 = store.db.collection(AGGREGATES).document("user_anonymous:a1")
    listed = decode_anonymous_events("anonymous:a1", a1.get().to_dict()[ANONYMOUS_EVENTS_FIELD])  # type: ignore[index]
    assert listed is not None
    a1.update({ANONYMOUS_EVENTS_FIELD: encode_anonymous_events(listed[:1])})

    report = verify(store, store.periods, now=NOW, retention_s=None)
    drift = {(d.what, d.key): (d.stored, d.expected) for d in report.drift}
    assert drift == {
        ("recent_events", "bob"): ([], [[lost.key, lost.timestamp, False, {"purchase": [1]}]]),
        ("anonymous_events", "anonymous:a1"): (
            [],
            [[events[3].key, events[3].timestamp, "scroll", "s2"]],
        ),
    }
    assert report.state_drifted == 2 and report.figures_drifted == 0

    # Drift in these copies alone drops them, no rebuild: so no refusal for the aggregates
    # older than the retention (bob's first event's minute and hour), which a rebuild would
    # recount short.
    as_received = Limits(max_future_skew_s=0.0)  # none dated ahead: the horizon is DAY_START + 30
    repair = verify(
        store, store.periods, now=NOW, retention_s=86400 - 30, repair=True, limits=as_received
    )
    assert repair.repaired and repair.not_checked > 0
    repaired = store.snapshot()
    assert "bob" not in (repaired.recent_events or {})
    assert "anonymous:a1" not in (repaired.anonymous_events or {})
    assert without_copies(repaired) == without_copies(snapshot)  # every figure as it was
    recounts_cleanly(store, NOW)
    # Counting goes on from the raw events; bob's next commit keeps a digest anew (a1's list
    # stays unknown: a link moving a1's events queries them).
    store.commit([_ev(5, 240, user="bob", kind="add_to_cart"), _ev(6, 300, anon="a1")])
    store.commit([_ev(7, 360, user="carol", anon="a1", kind="identify")])
    recounts_cleanly(store, NOW)
    again = store.snapshot()
    assert again.recent_events is not None and "bob" in again.recent_events
    assert store.profile("carol").total_events == 4  # type: ignore[union-attr]


def test_a_funnel_change_that_moves_no_figure_leaves_stale_digests_that_config_apply_drops(
    settings_for: Callable[..., Any],
) -> None:
    """A funnel added whose first step no retained event matches moves no figure, but the
    digests' entries lack its steps: bob's late `checkout` would then reach its first step only.
    `config apply`'s comparison under the new rules finds them (copies only), and dropping them
    makes the late event count from the raw events."""
    store = make_store(settings_for)
    store.commit([_ev(1, 60, user="bob", kind="search", session="s1")])  # purchase step 1
    added = parse_funnels('[{"name": "y", "steps": ["checkout", "search"], "window_s": 3600}]')
    store = make_store(settings_for, funnels=(*PURCHASE, *added))
    periods = store.periods
    report = compare(store.snapshot(), store.iter_raw_events(), periods, None, store.rules)
    search = _ev(1, 60, user="bob", kind="search", session="s1")
    assert [(d.what, d.key, d.stored, d.expected) for d in report.drift] == [
        (
            "recent_events",
            "bob",
            [[search.key, search.timestamp, False, {"purchase": [1]}]],
            [[search.key, search.timestamp, False, {"purchase": [1], "y": [1]}]],
        )
    ]
    assert report.copies_only
    store.record_config(replace=True)  # as `config apply` goes on
    store.drop_copies(*report.copy_owners())
    store.commit([_ev(2, 0, user="bob", kind="checkout", session="s1")])  # late, before it
    recounts_cleanly(store, NOW)
    [day] = store.funnel("y", periods.of(DAY_START)[2], periods.of(DAY_START)[2])
    assert day.users_by_step == [1, 1]
