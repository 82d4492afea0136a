"""`Store.breakdown`: events per value of a dimension per hour and day, the first K values of a
(period, dimension) admitted and later ones counted under `(other)`, unique users per value
per day counted for the person (identity applied), crawlers left out, redeliveries changing
nothing, a forgotten person's events and markers leaving the counts, and `verify` comparing
the markers themselves (docs/breakdowns.md, "How breakdowns are counted")."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from behavioral_analytics.breakdowns import OTHER, BreakdownRules
from behavioral_analytics.dimensions import NONE
from behavioral_analytics.events import Event
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.store import BreakdownPoint, Store
from behavioral_analytics.stores.firestore.schema import AGGREGATES, BREAKDOWN_MARKER_FIELD
from behavioral_analytics.verification import verify
from tests.contract.builders import (
    BOT_AGENT,
    DAY,
    HOUR,
    NOW,
    MakeStore,
    assert_recounts,
    ev,
)

DAY_LABEL = "2025-11-27"  # DAY_START's day (UTC); it starts at 09:00
HOUR_LABEL = f"{DAY_LABEL}-09"
RULES = BreakdownRules(("page", "event_type"), max_values=2)
WIDE = BreakdownRules(("page",), max_values=10)  # no set fills


def page(n: int, at: float, path: str, **fields: Any) -> Event:
    """A page view of `https://shop.example{path}`."""
    return ev(n, at, page_url=f"https://shop.example{path}", **fields)


def one(store: Store, dimension: str, granularity: str = "day") -> BreakdownPoint:
    points = store.breakdown(dimension, granularity)  # type: ignore[arg-type]
    assert len(points) == 1, points
    return points[0]


def test_counts_per_value_admit_the_first_k_and_count_later_ones_under_other(
    make_store: MakeStore,
) -> None:
    store = make_store(breakdowns=RULES)
    store.commit(
        [
            page(1, 0, "/a", user="u1"),
            page(2, 10, "/b", user="u2"),
            page(3, 20, "/c", user="u1"),  # a third value: (other)
            page(4, 30, "/a", user="u2"),
        ]
    )
    store.commit([page(5, 40, "/d", user="u3"), page(6, 50, "/b", user="u3")])
    day = one(store, "page")
    assert (day.granularity, day.period, day.dimension) == ("day", DAY_LABEL, "page")
    assert day.events == {"/a": 2, "/b": 2}
    assert day.other_events == 2
    assert day.unique_users == {"/a": 2, "/b": 2, OTHER: 2}
    hour = one(store, "page", "hour")
    assert (hour.period, hour.events, hour.other_events) == (HOUR_LABEL, day.events, 2)
    assert hour.unique_users is None
    kinds = one(store, "event_type")
    assert kinds.events == {"page_view": 6} and kinds.unique_users == {"page_view": 3}
    assert store.breakdown("browser", "day") == []  # not broken down
    snap = store.snapshot()
    assert snap.breakdown_admitted[("day", DAY_LABEL, "page")] == ("/a", "/b")
    assert snap.breakdown_events[("day", DAY_LABEL, "page", OTHER)] == 2
    assert snap.breakdown_users[(DAY_LABEL, "page", OTHER)] == 2
    assert_recounts(store)


def test_each_hour_and_day_admits_its_own_values(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES)
    store.commit(
        [
            page(1, 0, "/a", user="u1"),
            page(2, 10, "/b", user="u1"),
            page(3, HOUR, "/c", user="u1"),  # the next hour: admitted there, not in the day
            page(4, DAY, "/c", user="u1"),  # the next day: admitted
        ]
    )
    hours = store.breakdown("page", "hour")
    assert [(p.period, p.events, p.other_events) for p in hours] == [
        (HOUR_LABEL, {"/a": 1, "/b": 1}, 0),
        (f"{DAY_LABEL}-10", {"/c": 1}, 0),
        ("2025-11-28-09", {"/c": 1}, 0),
    ]
    days = store.breakdown("page", "day", DAY_LABEL, DAY_LABEL)
    assert [(p.events, p.other_events) for p in days] == [({"/a": 1, "/b": 1}, 1)]
    assert [p.period for p in store.breakdown("page", "day", start="2025-11-28")] == ["2025-11-28"]
    assert_recounts(store)


def test_a_redelivery_changes_nothing(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES)
    batch = [page(1, 0, "/a", user="u1"), page(2, 5, "/b", user="u2"), page(3, 9, "/c", anon="v")]
    store.commit(batch)
    before = store.snapshot()
    points = store.breakdown("page", "day")
    assert store.commit(list(reversed(batch))).created == 0
    assert store.commit(batch[1:]).created == 0
    after = store.snapshot()
    assert store.breakdown("page", "day") == points
    assert after.breakdown_events == before.breakdown_events
    assert after.breakdown_users == before.breakdown_users
    assert after.breakdown_admitted == before.breakdown_admitted


def test_an_anonymous_visitor_who_identifies_counts_as_one_person_per_value(
    make_store: MakeStore,
) -> None:
    store = make_store(breakdowns=RULES, identity_window_s=DAY)
    store.commit([page(1, 0, "/a", anon="a1"), page(2, 10, "/b", anon="a1")])
    assert one(store, "page").unique_users == {"/a": 1, "/b": 1}
    # The identify moves a1's earlier events to alice: still one person per value.
    store.commit([ev(3, 60, user="alice", anon="a1", kind="identify")])
    store.commit([page(4, 120, "/a", user="alice")])
    day = one(store, "page")
    assert day.events == {"/a": 2, "/b": 1}
    assert day.unique_users == {"/a": 1, "/b": 1, OTHER: 1}  # the identify has no page: (none)
    assert one(store, "event_type").unique_users == {"page_view": 1, "identify": 1}
    assert_recounts(store)


def test_crawlers_are_in_no_breakdown(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES)
    store.commit(
        [
            page(1, 0, "/robots", anon="crawler", user_agent=BOT_AGENT),
            page(2, 10, "/a", user="u1"),
        ]
    )
    day = one(store, "page")
    assert (day.events, day.other_events, day.unique_users) == ({"/a": 1}, 0, {"/a": 1})
    assert store.snapshot().breakdown_admitted[("day", DAY_LABEL, "page")] == ("/a",)
    assert_recounts(store)


def test_forget_takes_the_persons_events_and_markers_out(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES, identity_window_s=HOUR)
    store.commit(
        [
            page(1, 0, "/a", user="bob"),
            page(2, 5, "/a", anon="a1"),
            page(3, 10, "/a", user="alice", anon="a1", kind="identify"),
            page(4, 20, "/b", user="alice"),
            page(5, 30, "/c", user="alice"),  # (other)
            page(6, 40, "/c", user="bob"),
        ]
    )
    assert one(store, "page").unique_users == {"/a": 2, "/b": 1, OTHER: 2}
    store.forget("alice")
    day = one(store, "page")
    assert (day.events, day.other_events) == ({"/a": 1}, 1)
    assert day.unique_users == {"/a": 1, OTHER: 1}
    hour = one(store, "page", "hour")
    assert (hour.events, hour.other_events) == ({"/a": 1}, 1)
    assert one(store, "event_type").events == {"page_view": 2}
    assert one(store, "event_type").unique_users == {"page_view": 1}
    # The admitted set stays: /b is still admitted, so a later /b is not (other).
    store.commit([page(7, 50, "/b", user="carol")])
    assert one(store, "page").events == {"/a": 1, "/b": 1}
    assert_recounts(store)


def _lose_and_stray_markers(store: Store, backend: str) -> None:
    """u1's per-value markers lost, u2's pages replaced by a stray `/z`, behind the store's
    back (a bug or a hand edit)."""
    if backend == "sqlite":
        db = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        with db:
            db.execute("DELETE FROM breakdown_markers WHERE person = 'u1'")
            (pairs,) = db.execute("SELECT pairs FROM breakdown_markers WHERE person = 'u2'")
            stray = json.dumps({**json.loads(pairs[0]), "page": ["/z"]}, separators=(",", ":"))
            db.execute("UPDATE breakdown_markers SET pairs = ? WHERE person = 'u2'", (stray,))
        db.close()
        return
    people = store.db.collection(AGGREGATES)  # type: ignore[attr-defined]
    people.document("user_u1").update({BREAKDOWN_MARKER_FIELD: {}})
    stray = f"{BREAKDOWN_MARKER_FIELD}.`{DAY_LABEL}`.page"
    people.document("user_u2").update({stray: {"/z": True}})


def test_verify_finds_a_lost_or_stray_marker_that_no_count_shows_yet(
    make_store: MakeStore, backend: str
) -> None:
    """A person's markers lost (or one left over) change no count until that person is seen
    again, then a unique user is counted twice (or not at all): `verify` compares the markers
    themselves, and `--repair` puts them back."""
    store = make_store(breakdowns=RULES)
    store.commit([page(1, 0, "/a", user="u1"), page(2, 10, "/a", user="u2")])
    assert_recounts(store)
    _lose_and_stray_markers(store, backend)
    periods = store.periods  # type: ignore[attr-defined]
    report = verify(store, periods, now=NOW, retention_s=None)
    drift = {(d.what, d.key): (d.stored, d.expected) for d in report.drift}
    assert drift[("breakdown_markers", f"{DAY_LABEL}:page:/a")] == ({"extra": 0}, {"missing": 2})
    assert drift[("breakdown_markers", f"{DAY_LABEL}:page:/z")] == ({"extra": 1}, {"missing": 0})
    assert drift[("breakdown_markers", f"{DAY_LABEL}:event_type:page_view")] == (
        {"extra": 0},
        {"missing": 1},
    )
    assert {what for what, _ in drift} == {"breakdown_markers"}  # no count shows it yet
    assert verify(store, periods, now=NOW, retention_s=None, repair=True).repaired
    assert_recounts(store)


def test_repair_rebuilds_breakdowns_under_the_stored_admitted_sets(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES)
    store.commit([page(1, 0, "/z", user="u1")])
    store.commit([page(2, 10, "/a", user="u2"), page(3, 20, "/b", user="u3")])
    points = store.breakdown("page", "day")
    assert points[0].events == {"/z": 1, "/a": 1} and points[0].other_events == 1
    snap = store.snapshot()
    store.rebuild(store.iter_raw_events())
    assert store.breakdown("page", "day") == points
    assert store.snapshot().breakdown_admitted == snap.breakdown_admitted


def test_an_added_dimension_is_counted_from_the_raw_events(make_store: MakeStore) -> None:
    narrow = make_store(breakdowns=BreakdownRules(("page",), 2))
    narrow.commit([page(1, 0, "/a", user="u1"), page(2, 10, "/b", user="u2")])
    narrow.commit([ev(3, 20, user="u1", kind="search")])
    wider = make_store(breakdowns=BreakdownRules(("page", "event_type"), 2))
    wider.record_config()
    recorded = wider.recorded_config()
    assert recorded is not None and recorded.breakdown_dimensions == ("page", "event_type")
    kinds = one(wider, "event_type")
    assert (kinds.events, kinds.unique_users) == (
        {"page_view": 2, "search": 1},
        {"page_view": 2, "search": 1},
    )
    assert one(wider, "page").events == {"/a": 1, "/b": 1}
    assert wider.commit([page(4, 30, "/c", user="u3", kind="signup")]).created == 1
    assert one(wider, "event_type").other_events == 1  # two admitted: the third is (other)
    assert_recounts(wider)


def test_apply_recounts_for_new_values_admitted_and_drops_a_removed_dimension(
    make_store: MakeStore,
) -> None:
    make_store(breakdowns=RULES).commit(
        [page(1, 0, "/a", user="u1"), page(2, 10, "/b", user="u2"), page(3, 20, "/c", user="u3")]
    )
    wider = make_store(breakdowns=BreakdownRules(("page",), 3))
    wider.record_config(replace=True)
    day = one(wider, "page")
    assert (day.events, day.other_events) == ({"/a": 1, "/b": 1, "/c": 1}, 0)
    assert wider.breakdown("event_type", "day") == []
    snap = wider.snapshot()
    assert {key[2] for key in snap.breakdown_admitted} <= {"page", "entry_page", "exit_page"}
    if snap.breakdown_sessions is not None:  # the entry pages' sets are chosen again too
        assert snap.breakdown_admitted[("day", DAY_LABEL, "entry_page")] == ("/a", "/b", "/c")
        assert one(wider, "entry_page").sessions == {"/a": 1, "/b": 1, "/c": 1}
    assert_recounts(wider)


def test_apply_without_any_dimension_drops_the_entry_and_exit_pages_too(
    make_store: MakeStore,
) -> None:
    """Entry and exit pages are kept while any dimension is (`BA_BREAKDOWN_DIMENSIONS=none`
    keeps none): removing the last one deletes their session counts and admitted sets."""
    make_store(breakdowns=RULES).commit(
        [page(1, 0, "/a", user="u1"), page(2, 10, "/b", user="u2"), page(3, 7200, "/c", user="u1")]
    )
    none = make_store(breakdowns=BreakdownRules((), 2))
    none.record_config(replace=True)
    recorded = none.recorded_config()
    assert recorded is not None and recorded.breakdown_dimensions == ()
    for dimension in ("page", "event_type", "entry_page", "exit_page"):
        assert none.breakdown(dimension, "day") == []
    snap = none.snapshot()
    assert not snap.breakdown_admitted and not snap.breakdown_sessions
    assert none.commit([page(4, 30, "/d", user="u3")]).created == 1
    assert none.breakdown("entry_page", "day") == []
    assert_recounts(none)
    again = make_store(breakdowns=RULES)
    again.record_config(replace=True)
    assert sessions(again, "entry_page") == {"/a": 1, "/b": 1, OTHER: 2}
    assert_recounts(again)


# -- sessions per value, entry and exit pages (docs/breakdowns.md) ---------------------------


def sessions(store: Store, dimension: str, granularity: str = "day") -> dict[str, int]:
    """The one point's sessions per value (every store keeps them: never None)."""
    sessions = one(store, dimension, granularity).sessions
    assert sessions is not None
    return sessions


def test_a_late_event_that_becomes_a_sessions_first_or_last_moves_its_entry_and_exit_page(
    make_store: MakeStore,
) -> None:
    store = make_store(breakdowns=RULES)
    store.commit([page(1, 600, "/b", user="u1"), page(2, 700, "/c", user="u1")])
    assert sessions(store, "entry_page") == {"/b": 1}
    assert sessions(store, "exit_page") == {"/c": 1}
    assert sessions(store, "page") == {"/b": 1}  # the first event's value
    entry = one(store, "entry_page")
    assert (entry.events, entry.other_events, entry.unique_users) == ({}, 0, None)
    # Earlier than the session's first event, within the gap: the session starts there now.
    store.commit([page(3, 300, "/a", user="u1")])
    assert sessions(store, "entry_page") == {"/a": 1}  # admitted in entry_page's own set
    assert sessions(store, "entry_page", "hour") == {"/a": 1}
    # In `page` the set holds /b and /c (K = 2): the session counts where /a counts, (other).
    assert sessions(store, "page") == {OTHER: 1}
    assert sessions(store, "event_type") == {"page_view": 1}
    assert sessions(store, "exit_page") == {"/c": 1}
    store.commit([page(4, 800, "/d", user="u1")])  # a later last event
    assert sessions(store, "exit_page") == {"/d": 1}
    assert sessions(store, "entry_page") == {"/a": 1}
    snap = store.snapshot()
    assert snap.breakdown_admitted[("day", DAY_LABEL, "entry_page")] == ("/b", "/a")
    assert snap.breakdown_admitted[("day", DAY_LABEL, "exit_page")] == ("/c", "/d")
    assert_recounts(store)


def test_an_event_in_the_gap_joins_two_sessions_into_one_count(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES)
    # 50 minutes apart: two sessions (the gap is 30 minutes).
    store.commit([page(1, 0, "/a", user="u1"), page(2, 3000, "/b", user="u1")])
    assert sessions(store, "entry_page") == {"/a": 1, "/b": 1}
    assert sessions(store, "exit_page") == {"/a": 1, "/b": 1}
    assert sessions(store, "page") == {"/a": 1, "/b": 1}
    store.commit([page(3, 1500, "/b", user="u1")])  # 25 minutes from each: one session
    assert sessions(store, "entry_page") == {"/a": 1}
    assert sessions(store, "exit_page") == {"/b": 1}
    assert sessions(store, "page", "hour") == {"/a": 1}
    store.commit([page(3, 1500, "/b", user="u1")])  # redelivered: nothing moves
    assert sessions(store, "entry_page") == {"/a": 1}
    assert_recounts(store)


def test_forget_and_a_link_move_sessions_per_value(make_store: MakeStore) -> None:
    store = make_store(breakdowns=RULES, identity_window_s=HOUR)
    store.commit(
        [
            page(1, 0, "/a", user="bob"),
            page(2, 100, "/b", anon="a1"),
            page(3, 200, "/a", user="bob"),
        ]
    )
    assert sessions(store, "entry_page") == {"/a": 1, "/b": 1}
    # alice identifies as a1: a1's session is hers, and her later event joins it.
    store.commit(
        [
            page(4, 150, "/c", user="alice", anon="a1", kind="identify"),
            page(5, 400, "/c", user="alice"),
        ]
    )
    assert sessions(store, "entry_page") == {"/a": 1, "/b": 1}
    # Her session now ends on /c, which exit_page's full set (/a, /b) counts under (other).
    assert sessions(store, "exit_page") == {"/a": 1, OTHER: 1}
    store.forget("alice")
    assert sessions(store, "entry_page") == {"/a": 1}
    assert sessions(store, "exit_page") == {"/a": 1}
    assert sessions(store, "page") == {"/a": 1}
    assert_recounts(store)


def test_a_session_a_relink_leaves_with_one_event_exits_where_it_enters(
    make_store: MakeStore,
) -> None:
    """A relink takes the last event of a person's session: the session keeps its start and
    its one event left is its exit as well as its entry (it kept the exit it had)."""
    store = make_store(breakdowns=WIDE, sessions=SessionRules(gap_s=120.0), allow_relink=True)
    store.commit([ev(1, 0, kind="identify", user="u2", anon="a1")])
    store.commit([page(2, 450, "/e", user="u2"), page(3, 510, "/c", anon="a1")])
    assert sessions(store, "exit_page") == {NONE: 1, "/c": 1}  # u2's visit: 450 to 510
    store.commit([ev(4, 500, kind="identify", user="u1", anon="a1")])  # u1 takes the 510 one
    assert sessions(store, "exit_page") == {NONE: 1, "/e": 1, "/c": 1}  # u1's from 500
    assert_recounts(store)


def test_a_session_whose_last_event_a_link_swaps_at_the_same_instant_exits_at_the_new_one(
    make_store: MakeStore,
) -> None:
    """A sign-in dated earlier takes a person's last event while the same batch brings them
    another at that instant: the session's start, end and size are unchanged, its exit is the
    new event."""
    store = make_store(breakdowns=WIDE)
    store.commit(
        [
            ev(1, 100, kind="identify", user="u1", anon="a1"),
            page(2, 400, "/y", user="u1", session="s1"),
            page(3, 500, "/x", anon="a1", session="s1"),
        ]
    )
    assert sessions(store, "exit_page") == {NONE: 1, "/x": 1}
    store.commit(
        [
            ev(4, 50, kind="identify", user="u2", anon="a1"),  # dated earlier: takes a1's
            page(5, 500, "/z", user="u1", session="s1"),
        ]
    )
    assert sessions(store, "exit_page") == {NONE: 2, "/z": 1, "/x": 1}  # /x: u2's now
    assert_recounts(store)
