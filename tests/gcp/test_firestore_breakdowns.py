"""Breakdowns on the Firestore store (the emulator): the same figures as the SQLite store on the
same batches (identity links moving events, values past K counted under `(other)`, a crawler,
`forget`, `verify --repair`), the document layout (map keys a value may break, escaped), one
write per breakdown document per flush, and the size of a full document by Firestore's rules.
The contract suite (tests/contract/test_breakdowns.py) holds both stores to the port."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.dimensions import DIMENSIONS, MAX_VALUE_CHARS
from behavioral_analytics.events import Event
from behavioral_analytics.store import Store
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.breakdowns import breakdown_doc_id, doc_size_bytes
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
)
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.faults import BOT_AGENT, behavior_event

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0
DAY_START = NOW - 86400
DIMS = ("page", "referrer", "device", "event_type", "property:plan")
ODD_PAGES = ["/a.b", "/`tick`", "/~home", "/__x__", "/p/1", "/p/2", "/p/3"]
# Values a map key could trip on: dots, backticks, a leading `~`, the reserved `__…__` shape.
ODD_VALUES = ["a.b", "`tick`", "~home", "__x__", "p/1", "ü ñ", "(none)"]


def ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, DAY_START + at, received_at=NOW, **fields)


def firestore_store(settings_for: Callable[..., Any], **options: Any) -> FirestoreStore:
    settings = settings_for()
    return FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        clock=lambda: NOW,
        **options,
    )


def rules(max_values: int = 3) -> BehaviorRules:
    return BehaviorRules(breakdowns=BreakdownRules(dimensions=DIMS, max_values=max_values))


def workload(seed: int) -> list[Event]:
    """Two days of page views by users and anonymous visitors (some of whom identify, moving
    their earlier events), more pages than K, a crawler."""
    rng = random.Random(seed)
    events: list[Event] = []
    for n in range(160):
        at = rng.uniform(0, 20 * HOUR) + (0 if n < 110 else -20 * HOUR)
        fields: dict[str, Any] = {
            "page_url": f"https://shop.example{rng.choice(ODD_PAGES)}?utm_source=x",
            "referrer": rng.choice(["google.com", "direct", "news.example", "shop.example"]),
            "device_type": rng.choice(["mobile", "desktop"]),
        }
        if rng.random() < 0.7:
            fields["plan"] = rng.choice(["free", "pro", 3, True, "team"])
        who = rng.randrange(6)
        if who < 3:
            fields["user"] = f"u{who}"
        else:
            fields["anon"] = f"a{who}"
        kind = rng.choice(["page_view", "button_click", "purchase"])
        events.append(ev(n, at, kind=kind, **fields))
    # a3 and a4 sign in (a3 as u0, a4 as u1): their earlier events move to the users.
    events.append(ev(900, 19 * HOUR, kind="identify", user="u0", anon="a3", page_url="/in"))
    events.append(ev(901, 19 * HOUR, kind="identify", user="u1", anon="a4", page_url="/in"))
    events.append(ev(902, 3 * HOUR, anon="crawler", user_agent=BOT_AGENT, page_url="/bot"))
    return events


def figures(store: Store) -> dict[str, Any]:
    snap = store.snapshot()
    points = {
        (dimension, granularity): [p.to_dict() for p in store.breakdown(dimension, granularity)]
        for dimension in DIMS
        for granularity in ("hour", "day")
    }
    return {
        "events": snap.breakdown_events,
        "users": snap.breakdown_users,
        "admitted": snap.breakdown_admitted,
        "points": points,
    }


def commit_in_batches(stores: list[Store], events: list[Event], seed: int) -> None:
    rng = random.Random(seed)
    position = 0
    while position < len(events):
        size = rng.randint(1, 40)
        batch = events[position : position + size]
        for store in stores:
            store.commit(batch)
            assert store.commit(batch[: len(batch) // 2 + 1]).created == 0  # redelivered
        position += size


def test_firestore_breakdowns_equal_sqlite_through_links_forget_and_repair(
    settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    fs = firestore_store(settings_for, rules=rules())
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=rules())
    try:
        commit_in_batches([fs, lite], workload(5), seed=6)
        got = figures(fs)
        assert got == figures(lite)
        assert any("(other)" in key for key in got["events"]), "K was never reached"
        assert got["users"], "no unique users per value"
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok

        fs.forget("u0")
        lite.forget("u0")
        assert figures(fs) == figures(lite)
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok

        before = figures(fs)
        day = fs.periods.of(DAY_START + HOUR)[2]
        damaged = fs.db.collection(BREAKDOWNS).document(breakdown_doc_id("day", day, "page"))
        damaged.update({"events": {}, "users": {}})
        assert not verify(fs, fs.periods, now=NOW, retention_s=None).ok
        fs.rebuild(fs.iter_raw_events())  # verify --repair
        assert figures(fs) == before
    finally:
        fs.close()
        lite.close()


def test_breakdown_documents_are_written_once_per_flush_with_escaped_keys(
    settings_for: Callable[..., Any],
) -> None:
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        events = [
            ev(n, 2 * HOUR + n, user=f"u{n % 7}", page_url=ODD_PAGES[n % 7], plan=ODD_VALUES[n % 7])
            for n in range(300)
        ]
        before = store.write_ops
        store.commit(events)
        writes = store.write_ops - before
        people = 7
        # Raw events, people, the buckets (5 minutes, an hour, a day), freshness, and one
        # document per (granularity, dimension): 2 x 5, however many events fall in each.
        assert writes == len(events) + people + (5 + 1 + 1) + 1 + 2 * len(DIMS)

        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        collection = store.db.collection(BREAKDOWNS)
        stored = collection.document(breakdown_doc_id("day", day, "page")).get().to_dict()
        assert stored is not None
        assert stored["admitted"] == ODD_PAGES  # each value once; counts keyed by rank
        assert stored["events"] == {str(rank): 43 - (rank == 6) for rank in range(7)}
        assert stored["users"] == {str(rank): 1 for rank in range(7)}  # one page each
        person = store.db.collection(AGGREGATES).document("user_u1").get().to_dict()
        assert person is not None
        assert person[BREAKDOWN_MARKER_FIELD][day]["page"] == {"/`tick`": True}
        assert person[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"`tick`": True}
        escaped = store.db.collection(AGGREGATES).document("user_u2").get().to_dict() or {}
        assert escaped[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"~~home": True}
        escaped = store.db.collection(AGGREGATES).document("user_u3").get().to_dict() or {}
        assert escaped[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"~__x__": True}
        (point,) = store.breakdown("property:plan", "day")
        assert set(point.events) == set(ODD_VALUES)
        assert point.unique_users == dict.fromkeys(ODD_VALUES, 1)
    finally:
        store.close()


def test_a_full_breakdown_document_stays_under_256_kib() -> None:
    """The largest daily document at the default K: K admitted values of the longest length in
    the widest UTF-8 (4 bytes a character), each with events and users, plus `(other)`, sized
    by Firestore's storage-size rules."""
    k = BreakdownRules().max_values
    values = [f"{n:03d}" + "😀" * (MAX_VALUE_CHARS - 3) for n in range(k)]
    counts = {key: 2**40 for key in [*map(str, range(k)), "(other)"]}
    data = {
        "kind": "breakdown",
        "granularity": "day",
        "period": "2026-11-01",
        "dimension": "property:" + "p" * 200,
        "admitted": values,
        "events": counts,
        "users": counts,
        "last_updated": 0.0,
    }
    name = f"projects/p/databases/d/documents/{BREAKDOWNS}/" + breakdown_doc_id(
        "day", "2026-11-01", data["dimension"]
    )
    size = doc_size_bytes(name, data)
    assert 4 * k * MAX_VALUE_CHARS < size < 256 * 1024
    assert len(DIMENSIONS) == 10


@pytest.mark.parametrize("value", ["plain", "a.b", "`x`", "~y", "__z__", "ü/ñ", "(other)"])
def test_marker_and_value_keys_round_trip(value: str) -> None:
    from behavioral_analytics.stores.firestore.breakdowns import decode_markers, encode_markers

    markers = [("2026-11-01", "property:a.b", value)]
    assert decode_markers(encode_markers(markers)) == frozenset(markers)
