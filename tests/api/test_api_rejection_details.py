"""The collector's per-event rejections over HTTP: each carries the client's id when it sent one
(`messageId`, or `event_id` on /v1/events), whatever the reason, and a one-line detail naming
the field as the caller spelled it; the dead letters keep the same."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import WRITE, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.segment import dead_letter_fingerprint
from behavioral_analytics.store import Store


def iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + ".000Z"


def rejected(client: TestClient, path: str, body: Any) -> list[dict[str, Any]]:
    response = client.post(path, json=body, headers=WRITE)
    assert response.status_code in (200, 202, 400), response.text
    return list(response.json()["rejected"])


def test_every_rejection_of_a_batch_echoes_its_message_id(client: TestClient, store: Store) -> None:
    batch = [
        {"type": "track", "messageId": "b-0", "userId": "u1", "event": "ok"},
        {"type": "track", "messageId": "b-1", "userId": "u1", "event": "e", "context": "oops"},
        {"type": "merge", "messageId": "b-2", "userId": "u1"},
        {"type": "track", "messageId": "b-3", "event": "e"},
        {"type": "track", "messageId": "b-4", "userId": "u1", "event": "   "},
        {"type": "track", "messageId": "b-5", "userId": "u1", "event": "e", "timestamp": "x"},
        {"type": "track", "messageId": "b-6", "userId": "u3"},
        {"type": "identify", "messageId": 7, "userId": "u1", "traits": "vip"},
        {"type": "track", "messageId": "b-8", "userId": {"id": 1}, "event": "e"},
        {"type": "track", "userId": "u1"},
    ]
    answer = rejected(client, "/v1/batch", {"batch": batch})
    assert [(r["index"], r["event_id"], r["reason"]) for r in answer] == [
        (1, "b-1", "invalid_type:context"),
        (2, "b-2", "unsupported_type"),
        (3, "b-3", "missing_field:user_id"),
        (4, "b-4", "empty_field:event_type"),
        (5, "b-5", "invalid_timestamp"),
        (6, "b-6", "missing_field:event"),
        (7, "7", "invalid_type:properties"),
        (8, "b-8", "invalid_type:user_id"),
        (9, None, "missing_field:event"),  # no messageId: nothing to echo
    ]
    letters = {letter.message_id: letter for letter in store.dead_letters(20).items}
    for row in answer[:-1]:
        assert letters[row["event_id"]].detail == row["detail"]


def test_a_single_calls_rejection_echoes_its_message_id(client: TestClient) -> None:
    call = {"messageId": "s-12", "userId": "u1", "event": "e", "context": "oops"}
    [row] = rejected(client, "/v1/track", call)
    assert row == {
        "index": 0,
        "event_id": "s-12",
        "reason": "invalid_type:context",
        "detail": "context: expected an object, got string",
    }


def test_events_rejections_echo_the_event_id(client: TestClient) -> None:
    events = [
        {"event_id": "e-1", "user_id": "u1"},
        {"event_id": "e-2", "event_type": "x"},
        {**recipe_event(3), "event_id": "e-3", "properties": "p"},
        {"user_id": "u1"},
    ]
    answer = rejected(client, "/v1/events", events)
    assert [(r["event_id"], r["reason"]) for r in answer] == [
        ("e-1", "missing_field:event_type"),
        ("e-2", "missing_field:user_id"),
        ("e-3", "invalid_type:properties"),
        (None, "missing_field:event_type"),  # the id the collector made up is not echoed
    ]


@pytest.mark.parametrize(
    ("call", "reason", "detail"),
    [
        (
            {"type": "track", "messageId": "m", "event": "e"},
            "missing_field:user_id",
            "userId or anonymousId is required",
        ),
        (
            {"type": "track", "messageId": "m", "userId": "u", "event": "   "},
            "empty_field:event_type",
            "event is empty or only whitespace: expected non-blank text",
        ),
        (
            {"type": "track", "messageId": "m", "userId": "u"},
            "missing_field:event",
            "event is required: a track call names its action",
        ),
        (
            {"type": "track", "messageId": "m", "anonymousId": " ", "event": "e"},
            "empty_field:anonymous_id",
            "anonymousId is empty or only whitespace: expected non-blank text",
        ),
        (
            {"type": "page", "messageId": "m", "userId": "u", "originalTimestamp": "noon"},
            "invalid_timestamp",
            "originalTimestamp: 'noon' is not RFC 3339 (e.g. 2026-11-28T13:05:00Z)",
        ),
        (
            {"type": "identify", "messageId": "m", "userId": "u", "traits": {"a": [[1]]}},
            "nested_array",
            "traits.a[0]: arrays of arrays cannot be stored",
        ),
        (
            {"type": "track", "messageId": "m", "userId": "u", "event": "e",
             "context": {"page": {"path": [[1]]}}},
            "nested_array",
            "context.page.path[0]: arrays of arrays cannot be stored",
        ),
    ],
)  # fmt: skip
def test_segment_details_use_segments_field_names(
    client: TestClient, call: dict[str, Any], reason: str, detail: str
) -> None:
    [row] = rejected(client, "/v1/batch", {"batch": [call]})
    assert (row["event_id"], row["reason"], row["detail"]) == ("m", reason, detail)


@pytest.mark.parametrize(
    ("event", "reason", "detail"),
    [
        ({"user_id": "u"}, "missing_field:event_type", "event_type is required: the event's name"),
        ({"event_type": "x"}, "missing_field:user_id", "user_id or anonymous_id is required"),
        (
            {"user_id": "u", "event_type": "  "},
            "empty_field:event_type",
            "event_type is empty or only whitespace: expected non-blank text",
        ),
        (
            {"user_id": "u", "event_type": "x", "session_id": 1.5},
            "invalid_type:session_id",
            "session_id: expected a string, got number",
        ),
    ],
)
def test_events_details_use_the_recipes_field_names(
    client: TestClient, event: dict[str, Any], reason: str, detail: str
) -> None:
    [row] = rejected(client, "/v1/events", {"event_id": "e", **event})
    assert (row["event_id"], row["reason"], row["detail"]) == ("e", reason, detail)


def test_a_group_without_group_id_is_dead_lettered_with_a_detail(
    client: TestClient, store: Store, process: Callable[[], None]
) -> None:
    calls = [
        {"type": "group", "messageId": "g-1", "userId": "u1", "timestamp": iso(time.time())},
        {"type": "alias", "messageId": "a-1", "anonymousId": "x", "previousId": "x",
         "timestamp": iso(time.time())},
    ]  # fmt: skip
    response = client.post("/v1/batch", json={"batch": calls}, headers=WRITE)
    assert response.json()["rejected"] == []  # the worker applies the group and alias rules
    process()
    letters = {letter.reason: letter.detail for letter in store.dead_letters(10).items}
    assert letters == {
        "missing_field:group_id": "groupId is required: the id of the group joined",
        "missing_field:user_id": "userId is required: an alias names its user",
    }


def test_a_too_long_message_id_is_echoed_but_does_not_name_the_dead_letter(
    client: TestClient, store: Store
) -> None:
    long_id = "m" * 300
    call = {"type": "track", "messageId": long_id, "userId": "u1", "event": "e"}
    [row] = rejected(client, "/v1/batch", {"batch": [call]})
    assert (row["event_id"], row["reason"]) == (long_id, "too_long:event_id")
    assert row["detail"] == "messageId: 300 characters > 256"
    [letter] = store.dead_letters(10).items
    assert letter.message_id == dead_letter_fingerprint(call, "too_long:event_id")
