"""The key rule's version is recorded in the store (docs/events.md), and an event stored under
the old rule (published before `id_kind` existed) and redelivered under the new one is still
one event."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from behavioral_analytics.events import KEY_RULE_VERSION, Event, parse_message
from behavioral_analytics.store import Store
from tests.contract.builders import DAY_START, NOW, MakeStore, assert_recounts, ev


def segment_page(*, id_kind: bool) -> bytes:
    """A Segment page call as the collector publishes it; before the key rule of version 2 it
    carried no `id_kind`."""
    payload: dict[str, Any] = {
        "event_id": "ajs-msg-1",
        "user_id": None,
        "anonymous_id": "v1",
        "event_type": "page_view",
        "timestamp": DAY_START + 60,
        "properties": {"name": "Home"},
    }
    if id_kind:
        payload["id_kind"] = "message"
    return json.dumps(payload).encode()


def parsed(data: bytes) -> Event:
    event = parse_message(data, message_id="m1", received_at=NOW)
    assert isinstance(event, Event), event
    return event


def unrecord_key_rule(store: Store) -> None:
    """Make the store look written before the key rule was recorded."""
    if hasattr(store, "gateway"):
        store.gateway.client.collection("analytics_metadata").document("key_rule").delete()
    else:
        with sqlite3.connect(store.path) as db:  # type: ignore[attr-defined]
            db.execute("DELETE FROM metadata WHERE name = 'key_rule'")


def test_a_new_store_records_the_key_rule_it_is_written_with(make_store: MakeStore) -> None:
    store = make_store()
    assert store.key_rules() == []  # type: ignore[attr-defined]
    store.commit([ev(1, 0, user="alice")])
    assert store.key_rules() == [KEY_RULE_VERSION] == [2]  # type: ignore[attr-defined]


def test_an_event_stored_before_the_key_rule_and_redelivered_after_it_is_one_event(
    make_store: MakeStore,
) -> None:
    old = make_store()
    old.commit([parsed(segment_page(id_kind=False))])  # published and stored under rule 1
    unrecord_key_rule(old)
    new = make_store()  # a worker of the new rule, on the same data
    result = new.commit([parsed(segment_page(id_kind=False))])  # the same message, redelivered
    assert (result.created, result.duplicates) == (0, 1)
    assert new.key_rules() == [1, 2]  # type: ignore[attr-defined]
    profile = new.profile("anonymous:v1")
    assert profile is not None and profile.total_events == 1
    # What the new collector publishes is keyed by the message id alone: a different key.
    assert parsed(segment_page(id_kind=True)).key != parsed(segment_page(id_kind=False)).key
    assert_recounts(new)
