"""The SQLite store keeps each raw event's `$derived.parsers` once per distinct value
(`stores.sqlite.derived_parsers`): the stored properties go without them, every read gives
them back where they were, and what cannot be given back exactly stays in the properties."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.funnels import parse_funnels
from behavioral_analytics.stores.sqlite import SQLiteStore, derived_parsers
from behavioral_analytics.stores.sqlite.layout import LAYOUT
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

PARSERS = {"user_agent": "1.0.2/202610", "geo": "3.3.170"}


def _derived(**values: Any) -> dict[str, Any]:
    return {"browser": "Firefox", "os": "Linux", "device": "desktop", **values}


def _stored(path: Path) -> dict[str, tuple[str, int | None]]:
    db = sqlite3.connect(path)
    try:
        return {
            event_id: (
                properties.decode() if isinstance(properties, bytes) else properties,
                parsers_id,
            )
            for event_id, properties, parsers_id in db.execute(
                "SELECT event_id, properties, parsers_id FROM events"
            )
        }
    finally:
        db.close()


def _read_back(store: SQLiteStore) -> dict[str, str]:
    """Each raw event's properties as every read gives them, as JSON text (key order kept)."""
    scanned = {e.event_id: json.dumps(e.properties) for e in store.iter_raw_events()}
    timeline = {
        s.event.event_id: json.dumps(s.event.properties) for s in store.timeline("u1").items
    }
    keys = [e.key for e in store.iter_raw_events()]
    fetched = {s.event.event_id: json.dumps(s.event.properties) for s in store.get_events(keys)}
    assert scanned == fetched
    assert {k: v for k, v in scanned.items() if k in timeline} == timeline
    return scanned


def test_parsers_are_stored_once_and_every_read_gives_them_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    sent = {
        "e1": {"page_url": "/a", "$derived": {**_derived(country="NL"), "parsers": PARSERS}},
        "e2": {"$derived": {"parsers": PARSERS}, "after": [1, {"x": None}]},
        "e3": {"$derived": {**_derived(), "parsers": {**PARSERS, "geo": "3.4.0"}}},
    }
    store.commit([ev(n, n, user="u1", **sent[f"e{n}"]) for n in (1, 2, 3)])

    stored = _stored(path)
    assert all("parsers" not in properties for properties, _ in stored.values()), stored
    assert stored["e1"][1] == stored["e2"][1] != stored["e3"][1] is not None
    assert json.loads(stored["e2"][0]) == {"$derived": {}, "after": [1, {"x": None}]}
    assert _read_back(store) == {k: json.dumps(v) for k, v in sent.items()}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


@pytest.mark.parametrize(
    "properties",
    [
        {"$derived": {"parsers": PARSERS, **_derived()}},  # not the last key: order kept
        {"$derived": {**_derived(), "parsers": "1.0"}},  # not an object
        {"$derived": "from a publisher"},
        {"$derived": {}},
        {"plain": True},
    ],
    ids=["parsers-first", "parsers-text", "derived-text", "derived-empty", "no-derived"],
)
def test_other_shapes_stay_in_the_properties_as_sent(
    tmp_path: Path, properties: dict[str, Any]
) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([ev(1, 0, user="u1", **properties)])
    [(text, parsers_id)] = _stored(path).values()
    assert parsers_id is None
    assert json.loads(text) == properties
    assert _read_back(store) == {"e1": json.dumps(properties)}
    store.close()


def test_past_the_tables_room_the_parsers_stay_in_the_properties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derived_parsers, "MAX_PARSERS_ROWS", 2)
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    sent = {
        f"e{n}": {"$derived": {**_derived(), "parsers": {**PARSERS, "geo": f"3.{n % 3}"}}}
        for n in range(1, 7)
    }
    store.commit([ev(n, n, user="u1", **sent[f"e{n}"]) for n in range(1, 4)])
    store.commit([ev(n, n, user="u1", **sent[f"e{n}"]) for n in range(4, 7)])
    stored = _stored(path)
    kept_apart = {k for k, (_, parsers_id) in stored.items() if parsers_id is not None}
    assert len({stored[k][1] for k in kept_apart}) == 2
    assert len(kept_apart) == 4  # two values of the three, each sent twice
    assert all('"parsers"' in stored[k][0] for k in stored.keys() - kept_apart)
    assert _read_back(store) == {k: json.dumps(v) for k, v in sent.items()}
    store.close()


def test_a_store_from_before_the_table_is_migrated_and_its_events_read_as_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    before = {"$derived": {**_derived(), "parsers": PARSERS}}
    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([ev(1, 0, user="u1", **before)])
    store.close()
    db = sqlite3.connect(path)  # as layout 1 wrote it: the parsers in the properties
    with db:
        db.execute("UPDATE events SET properties = ?, parsers_id = NULL", (json.dumps(before),))
        db.execute("ALTER TABLE events DROP COLUMN parsers_id")
        db.execute("DROP TABLE derived_parsers")
        db.execute("PRAGMA user_version = 1")
    db.close()

    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([ev(2, 60, user="u1", **before)])
    stored = _stored(path)
    assert stored["e1"][1] is None and '"parsers"' in stored["e1"][0]
    assert stored["e2"][1] is not None and '"parsers"' not in stored["e2"][0]
    assert _read_back(store) == {"e1": json.dumps(before), "e2": json.dumps(before)}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LAYOUT == 2
    db.close()


def test_a_funnel_step_filtered_on_the_parsers_counts_across_commits(tmp_path: Path) -> None:
    """A step's `where` may name any property path: the funnel's read of events stored by an
    earlier commit gives it the parsers, as the recount does."""
    (funnel,) = parse_funnels(
        [
            {
                "name": "f",
                "steps": [
                    {"event_type": "page_view", "where": {"$derived.parsers.geo": "3.3.170"}},
                    {"event_type": "purchase", "where": {"$derived.browser": "Firefox"}},
                ],
                "window_s": 3600,
            }
        ]
    )
    store = SQLiteStore(
        tmp_path / "store.db", clock=FakeClock(NOW), rules=BehaviorRules(funnels=(funnel,))
    )
    derived = {"$derived": {**_derived(), "parsers": PARSERS}}
    store.commit([ev(1, 0, user="u1", **derived)])
    store.commit([ev(2, 60, user="u1", kind="purchase", **derived)])  # reads e1 from the store
    assert [day.users_by_step for day in store.funnel("f")] == [[1, 1]]
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def test_a_value_goes_with_the_last_event_naming_it(tmp_path: Path) -> None:
    """What a publisher sends as parsers may be anyone's: `forget` and the purge of expired
    events take a row with the last event that names it, and leave one still named."""
    path = tmp_path / "store.db"
    clock = FakeClock(NOW)
    store = SQLiteStore(path, clock=clock, raw_retention_s=3600.0)
    own = {"$derived": {**_derived(), "parsers": {"note": "alice@example.com"}}}
    shared = {"$derived": {**_derived(), "parsers": PARSERS}}
    old = {"$derived": {**_derived(), "parsers": {**PARSERS, "geo": "3.2.0"}}}
    store.commit(
        [
            ev(1, 0, user="alice", **own),
            ev(2, 1, user="alice", **shared),
            ev(3, 2, user="bo", **old),
        ]
    )
    clock.advance(1800.0)
    store.commit([ev(4, 3, user="bo", **shared)])

    def values() -> set[str]:
        db = sqlite3.connect(path)
        try:
            return {row[0] for row in db.execute("SELECT parsers FROM derived_parsers")}
        finally:
            db.close()

    assert len(values()) == 3
    store.forget("alice")
    assert values() == {
        json.dumps(PARSERS, separators=(",", ":")),
        '{"user_agent":"1.0.2/202610","geo":"3.2.0"}',
    }
    clock.advance(1900.0)  # e3 expired, e4 not
    assert store.purge_expired(clock()) == 1
    assert values() == {json.dumps(PARSERS, separators=(",", ":"))}
    assert _read_back(store) == {"e4": json.dumps(shared)}
    store.close()


def test_a_value_only_a_duplicate_carried_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored with its parsers inline (no room then), delivered again once there is
    room: the duplicate stores nothing, and no row keeps its value (`forget` could not find it)."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    sent = {"$derived": {**_derived(), "parsers": {"note": "alice@example.com"}}}
    monkeypatch.setattr(derived_parsers, "MAX_PARSERS_ROWS", 0)
    store.commit([ev(1, 0, user="alice", **sent)])
    monkeypatch.setattr(derived_parsers, "MAX_PARSERS_ROWS", 256)
    shared = {"$derived": {**_derived(), "parsers": PARSERS}}
    store.commit([ev(1, 0, user="alice", **sent), ev(2, 1, user="bo", **shared)])
    db = sqlite3.connect(path)
    try:
        kept = [row[0] for row in db.execute("SELECT parsers FROM derived_parsers")]
    finally:
        db.close()
    assert kept == [json.dumps(PARSERS, separators=(",", ":"))]
    assert _read_back(store)["e1"] == json.dumps(sent)
    store.close()
