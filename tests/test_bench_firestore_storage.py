"""Index entries by Firestore's storage-size rules (`bench/firestore_storage.py`): the page's
own examples, and what the repository's index configuration gives a raw event's document."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from behavioral_analytics.events import Event, dedupe_key
from behavioral_analytics.stores.firestore.documents import event_doc
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from firestore_storage import IndexConfig, index_entries, name_size, parent_name_size

TASK = "projects/p/databases/(default)/documents/users/jeff/tasks/my_task_id"
FIELDS = {"type": "Personal", "done": False, "priority": 1, "description": "Learn Cloud Firestore"}


def test_the_pages_examples() -> None:
    # cloud.google.com/firestore/docs/storage-size: a document name of 44 bytes, its parent's
    # of 27; the single-field entry on `done` 109 bytes, the composite on (done, priority) 112.
    assert name_size(TASK) == 44
    assert parent_name_size(TASK) == 27
    only_done = IndexConfig(exempt={"tasks": frozenset({"type", "priority", "description"})})
    entries = index_entries(TASK, FIELDS, only_done)
    assert (entries.single, entries.single_bytes) == (2, 2 * 109)  # ascending and descending
    composite = IndexConfig(
        exempt={"tasks": frozenset(FIELDS)}, composites={"tasks": [("done", "priority")]}
    )
    entries = index_entries(TASK, FIELDS, composite)
    assert (entries.single, entries.composite, entries.composite_bytes) == (0, 1, 112)


def test_maps_are_indexed_by_their_fields_and_arrays_by_their_elements() -> None:
    path = "projects/p/databases/d/documents/c/doc"
    base = name_size(path) + parent_name_size(path) + 32
    assert parent_name_size(path) == 16  # a top-level collection: an empty parent name
    entries = index_entries(
        path, {"m": {"a": 1, "b": {"c": True}}, "xs": ["u", "u", "v"]}, IndexConfig()
    )
    expected = 2 * (base + 4 + 8) + 2 * (base + 6 + 1) + 2 * (base + 3 + 2)
    assert (entries.single, entries.single_bytes) == (6, expected)
    exempt = IndexConfig(exempt={"c": frozenset({"m", "xs"})})
    assert index_entries(path, {"m": {"a": 1}, "xs": ["u"]}, exempt).entries == 0


def test_a_long_string_or_bytes_value_is_indexed_by_its_first_1500_bytes() -> None:
    path = "projects/p/databases/d/documents/c/doc"
    for long, short in (("x" * 5000, "x" * 1500), (b"x" * 5000, b"x" * 1500)):
        assert index_entries(path, {"s": long}, IndexConfig()).single_bytes == (
            index_entries(path, {"s": short}, IndexConfig()).single_bytes
        )
    assert index_entries(path, {"s": "x" * 1499}, IndexConfig()).single_bytes < (
        index_entries(path, {"s": "x" * 1500}, IndexConfig()).single_bytes
    )


def test_a_raw_event_under_the_repositorys_configuration() -> None:
    config = IndexConfig.load(REPO / "firestore.indexes.json")
    ts = 1_764_320_000.0
    event = Event(
        key=dedupe_key("e1", "user_1", "page_view", ts),
        event_id="e1",
        user_id="user_1",
        anonymous_id=None,
        event_type="page_view",
        timestamp=ts,
        session_id="s1",
        properties={"page_url": "/p", "context": {"page": {"path": "/p"}}},
        received_at=ts + 1,
    )
    moment = datetime.fromtimestamp(ts, UTC)
    doc = event_doc(event, "user_1", ts + 2, moment, moment)
    path = f"projects/p/databases/d/documents/user_events/{event.key}"
    entries = index_entries(path, doc, config)
    # Every composite index on user_events names fields a raw event always has.
    assert entries.composite == len(config.composites["user_events"]) == 5
    # The exempted fields (timestamps, properties) have no single-field entries; the others
    # have two each.
    exempt = config.exempt["user_events"]
    indexed = [name for name in doc if name not in exempt]
    assert "properties" in exempt and "timestamp" in exempt
    assert entries.single == 2 * len(indexed)
