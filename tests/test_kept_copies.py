"""`kept_copies`: a store's digests of recent events and lists of anonymous events against the
raw events, pure (the Firestore store's copies are compared end to end in
tests/gcp/test_firestore_kept_copies.py)."""

from __future__ import annotations

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.kept_copies import AnonymousRow, Copies
from tests.faults import BOT_AGENT, behavior_event

NOW = 1_764_320_400.0
RULES = BehaviorRules(funnels=parse_funnels(PURCHASE_FUNNEL))


def _events() -> list[Event]:
    return [
        behavior_event(1, NOW - 600, received_at=NOW, user="bob"),  # loose, funnel step 0
        behavior_event(2, NOW - 500, received_at=NOW, user="bob", kind="scroll", session="s"),
        behavior_event(3, NOW - 400, received_at=NOW, user="bob", kind="search", session="s"),
        behavior_event(4, NOW - 300, received_at=NOW, anon="a1", kind="scroll"),
        behavior_event(
            5, NOW - 200, received_at=NOW, anon="a1", kind="scroll", user_agent=BOT_AGENT
        ),
        behavior_event(6, NOW - 100, received_at=NOW, user="carol", anon="a1", kind="scroll"),
    ]


def _gathered(events: list[Event]) -> tuple[Copies, dict[str, str]]:
    copies = Copies(RULES)
    assert list(copies.gathering(iter(events))) == events  # passes every event on
    persons = {e.key: e.who for e in events if e is not events[4]}  # the bot's is no person's
    return copies, persons


def test_copies_that_hold_what_the_raw_events_say_are_no_drift() -> None:
    events = _events()
    copies, persons = _gathered(events)
    bob_first, bob_search, a1_scroll = events[0], events[2], events[3]
    recent = {
        "bob": (
            NOW - 700,
            {
                bob_first.key: (NOW - 600, True, {"purchase": frozenset({0})}),
                # a client session's event is kept for its funnel step; one matching none is not
                bob_search.key: (NOW - 400, False, {"purchase": frozenset({1})}),
            },
        ),
        "anonymous:a1": (NOW - 300, {a1_scroll.key: (NOW - 300, True, {})}),  # no bot in it
        "carol": (NOW - 50, {}),  # nothing of hers at or after its start
    }
    listed = {"anonymous:a1": [(a1_scroll.key, NOW - 300, "scroll", None)]}  # not carol's
    assert copies.drift(recent, listed, persons, None) == []
    assert copies.drift(None, None, persons, None) == []  # a store that keeps none


def test_an_entry_missing_extra_or_wrong_is_drift_with_both_sides_rows() -> None:
    events = _events()
    copies, persons = _gathered(events)
    bob_first, bob_search, a1_scroll = events[0], events[2], events[3]
    recent = {
        "bob": (
            NOW - 700,
            {
                bob_first.key: (NOW - 600, True, {}),  # its funnel step lost
                "0" * 32: (NOW - 450, True, {}),  # no such event
            },  # and the search missing
        ),
    }
    listed: dict[str, list[AnonymousRow]] = {"anonymous:a1": []}
    found = {
        (what, key): (stored, expected)
        for what, key, stored, expected in copies.drift(recent, listed, persons, None)
    }
    stored, expected = found.pop(("recent_events", "bob"))
    assert stored == sorted([["0" * 32, NOW - 450, True, {}], [bob_first.key, NOW - 600, True, {}]])
    assert expected == sorted(
        [
            [bob_first.key, NOW - 600, True, {"purchase": [0]}],
            [bob_search.key, NOW - 400, False, {"purchase": [1]}],
        ]
    )
    assert found.pop(("anonymous_events", "anonymous:a1")) == (
        [],
        [[a1_scroll.key, NOW - 300, "scroll", None]],
    )
    assert found == {}


def test_entries_at_or_before_the_horizon_and_before_the_digests_start_are_not_compared() -> None:
    events = _events()
    copies, persons = _gathered(events)
    bob_search = events[2]
    recent = {
        # From after bob's first event: it is not expected. An entry of an event that expired
        # (at or before the horizon) is not drift.
        "bob": (
            NOW - 550,
            {
                bob_search.key: (NOW - 400, False, {"purchase": frozenset({1})}),
                "1" * 32: (NOW - 900, True, {}),
            },
        ),
    }
    listed = {"anonymous:a1": [("2" * 32, NOW - 900, "scroll", None)]}  # a1's scroll expired
    assert copies.drift(recent, listed, persons, NOW - 800) != []  # a1's scroll is kept
    listed["anonymous:a1"].append((events[3].key, NOW - 300, "scroll", None))
    assert copies.drift(recent, listed, persons, NOW - 800) == []
    assert {key for _, key, _, _ in copies.drift(recent, listed, persons, NOW - 1000)} == {
        "bob",
        "anonymous:a1",
    }


def test_an_event_listed_twice_is_drift() -> None:
    """The store moves each listed entry: an event listed twice would be moved, and counted
    for the user, twice."""
    events = _events()
    copies, persons = _gathered(events)
    row = (events[3].key, NOW - 300, "scroll", None)
    found = copies.drift(None, {"anonymous:a1": [row, row]}, persons, None)
    assert found == [("anonymous_events", "anonymous:a1", [list(row)], [])]


def test_steps_of_a_funnel_no_longer_configured_are_not_compared() -> None:
    """No commit reads them: a funnel removed (`config apply`) leaves them in the digests."""
    events = _events()
    copies, persons = _gathered(events)
    bob_first, bob_search = events[0], events[2]
    recent = {
        "bob": (
            NOW - 700,
            {
                bob_first.key: (
                    NOW - 600,
                    True,
                    {"purchase": frozenset({0}), "gone": frozenset({1})},
                ),
                bob_search.key: (NOW - 400, False, {"purchase": frozenset({1})}),
                # kept for the removed funnel's step alone: as absent
                events[1].key: (NOW - 500, False, {"gone": frozenset({0})}),
            },
        ),
    }
    assert copies.drift(recent, None, persons, None) == []
