"""A recount holds each repeated value of the retained raw events once (`shared_values`), and
counts the same: equal values become one object, values JSON tells apart stay apart, and a store's
events as `verify` reads them share their type, person and derived map."""

from __future__ import annotations

from pathlib import Path

import pytest

from behavioral_analytics import shared_values
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.recount_reads import retained_events
from behavioral_analytics.shared_values import SharedValues, shared_events
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev


def _copy(text: str) -> str:
    return "".join(list(text))  # an equal string, another object


def test_equal_strings_become_one_object_and_long_ones_stay_as_read() -> None:
    shared = SharedValues()
    first = _copy("page_view")
    assert shared.text(_copy("page_view")) is not first
    assert shared.text(first) is shared.text(_copy("page_view"))
    long = "x" * (shared_values.MAX_SHARED_CHARS + 1)
    assert shared.text(long) is long
    assert shared.text(_copy(long)) is not long


def test_properties_keep_their_values_and_share_equal_maps_and_lists() -> None:
    shared = SharedValues()
    derived = {"browser": "Chrome", "parsers": {"user_agent": "1.0", "geo": "3.3"}}
    one = {"page_url": "/a", "$derived": derived, "items": ["x", {"n": 1}]}
    two = {"page_url": _copy("/a"), "$derived": {**derived}, "items": ["x", {"n": 1}]}
    a, b = shared.properties(one), shared.properties(two)
    assert a == one and b == two and a is not one
    assert a["$derived"] is b["$derived"] and a["items"] is b["items"]
    assert a["page_url"] is b["page_url"]


@pytest.mark.parametrize("other", [1.0, True, "1", [1], None])
def test_values_json_tells_apart_are_not_shared(other: object) -> None:
    shared = SharedValues()
    a = shared.properties({"nested": {"n": 1}})
    b = shared.properties({"nested": {"n": other}})
    assert b["nested"]["n"] == other and type(b["nested"]["n"]) is type(other)
    assert a["nested"] is not b["nested"]


def test_past_the_bound_maps_are_kept_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_values, "MAX_SHARED_NESTED", 1)
    shared = SharedValues()
    shared.properties({"m": {"n": 1}})
    a, b = (shared.properties({"m": {"n": 2}}) for _ in range(2))
    assert a == b and a["m"] is not b["m"]
    c, d = (shared.properties({"m": {"n": 1}}) for _ in range(2))
    assert c["m"] is d["m"]  # the one known before the bound is still shared


def test_past_the_bound_new_strings_are_kept_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_values, "MAX_SHARED_TEXTS", 2)
    shared = SharedValues()
    known = [shared.text(_copy(t)) for t in ("alpha", "beta")]
    late = _copy("gamma")
    assert shared.text(late) is late and shared.text(_copy("gamma")) is not late
    assert all(shared.text(_copy(t)) is k for t, k in zip(("alpha", "beta"), known, strict=True))


def test_a_stores_events_as_verify_reads_them_share_their_values(tmp_path: Path) -> None:
    rules = BehaviorRules(breakdowns=BreakdownRules(("page",), 10))
    store = SQLiteStore(tmp_path / "store.db", rules=rules, clock=FakeClock(NOW))
    derived = {"browser": "Chrome", "parsers": {"user_agent": "1.0"}}
    store.commit(
        [
            ev(n, n * 10, user="u1", page_url="https://shop.example/a", **{"$derived": derived})
            for n in range(1, 4)
        ]
    )
    events = list(retained_events(store))
    assert len(events) == 3
    first, *others = events
    for event in others:
        assert event.event_type is first.event_type and event.who is first.who
        assert event.properties["$derived"] is first.properties["$derived"]
        assert event.properties is not first.properties
    assert first.properties["$derived"] == derived
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def test_shared_events_keep_every_field() -> None:
    events = [ev(n, n, anon=f"a{n % 2}", session="s1", page_url="/p") for n in range(4)]
    before = [(e.to_dict(), e.key, e.who, e.call, e.id_kind) for e in events]
    after = list(shared_events(events))
    assert [(e.to_dict(), e.key, e.who, e.call, e.id_kind) for e in after] == before
