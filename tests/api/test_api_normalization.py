"""The collector's pure steps: Segment normalization and preparing events for the broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.events import Limits, Rejection, parse_message
from behavioral_analytics.segment import from_segment, prepare

NOW = 1_800_000_000.0


def test_track_maps_event_and_ids() -> None:
    payload = from_segment(
        {
            "messageId": "m1",
            "userId": "u1",
            "anonymousId": "a1",
            "event": "Order Completed",
            "timestamp": "2027-01-15T08:00:00.000Z",
            "properties": {"total": 3},
        },
        "track",
    )
    assert payload == {
        "event_id": "m1",
        "user_id": "u1",
        "anonymous_id": "a1",
        "event_type": "Order Completed",
        "timestamp": "2027-01-15T08:00:00.000Z",
        "properties": {"total": 3},
        "id_kind": "message",  # the key is the messageId alone
    }


def test_page_becomes_page_view_with_name_and_url() -> None:
    payload = from_segment(
        {"anonymousId": "a1", "name": "Pricing", "context": {"page": {"url": "https://x.test/p"}}},
        "page",
    )
    assert isinstance(payload, dict)
    assert payload["event_type"] == "page_view"
    assert payload["properties"]["name"] == "Pricing"
    assert payload["properties"]["url"] == "https://x.test/p"
    assert payload["properties"]["context"] == {"page": {"url": "https://x.test/p"}}


def test_identify_carries_traits_as_properties() -> None:
    payload = from_segment({"userId": "u1", "traits": {"email": "a@b.test"}}, "identify")
    assert isinstance(payload, dict)
    assert payload["event_type"] == "identify"
    assert payload["properties"] == {"email": "a@b.test"}


def test_batch_context_is_merged_under_the_message_context() -> None:
    payload = from_segment(
        {"type": "track", "userId": "u", "event": "e", "context": {"ip": "1"}},
        None,
        {"ip": "0", "library": "x"},
    )
    assert isinstance(payload, dict)
    assert payload["properties"]["context"] == {"ip": "1", "library": "x"}


def test_a_context_property_of_the_client_stays_and_the_calls_context_moves_beside_it() -> None:
    payload = from_segment(
        {"userId": "u", "event": "e", "properties": {"context": "mine"}, "context": {"ip": "1"}},
        "track",
    )
    assert isinstance(payload, dict)
    assert payload["properties"] == {"context": "mine", "$context": {"ip": "1"}}
    both = {"context": "mine", "$context": "also mine"}  # both names taken: the call's is left
    payload = from_segment(
        {"userId": "u", "event": "e", "properties": both, "context": {"ip": "1"}}, "track"
    )
    assert isinstance(payload, dict) and payload["properties"] == both


@pytest.mark.parametrize(
    ("message", "call", "reason"),
    [
        ({"userId": "u"}, "track", "missing_field:event"),
        ({"type": "merge", "userId": "u"}, None, "unsupported_type"),
        ({"userId": "u"}, None, "unsupported_type"),
        (["not", "a", "dict"], "track", "not_an_object"),
        ({"userId": "u", "event": "e", "context": 5}, "track", "invalid_type:context"),
    ],
)
def test_malformed_calls_are_rejected_with_a_reason(
    message: Any, call: str | None, reason: str
) -> None:
    result = from_segment(message, call)
    assert isinstance(result, Rejection)
    assert result.reason == reason


def test_prepare_assigns_ids_and_received_at_and_keeps_the_client_id() -> None:
    ids = iter(["generated1"])
    prepared = prepare(
        [
            ({}, {"user_id": "u", "event_type": "t", "timestamp": NOW - 5}),
            ({}, {"event_id": "mine", "user_id": "u", "event_type": "t"}),
            ({}, {"event_id": "bad", "user_id": "u"}),
        ],
        received_at=NOW,
        new_id=lambda: next(ids),
    )
    assert [event.event_id for _, event, _ in prepared.accepted] == ["generated1", "mine"]
    assert prepared.accepted[1][1].timestamp == NOW  # no timestamp: the time of receipt
    ((index, rejection, _),) = prepared.rejected
    assert (index, rejection.reason, rejection.event_id) == (2, "missing_field:event_type", "bad")
    for _, _, data in prepared.accepted:
        assert json.loads(data)["received_at"] == NOW


def test_a_client_received_at_is_overridden() -> None:
    prepared = prepare(
        [({}, {"user_id": "u", "event_type": "t", "received_at": 5})], received_at=NOW
    )
    assert json.loads(prepared.accepted[0][2])["received_at"] == NOW


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "messageId",
                "userId",
                "anonymousId",
                "event",
                "name",
                "timestamp",
                "properties",
                "traits",
                "context",
            ]
        ),
        _json,
    ),
    st.sampled_from([None, "track", "page", "screen", "identify"]),
)
def test_whatever_a_client_sends_the_worker_reads_the_same_event(
    message: dict[str, Any], call: str | None
) -> None:
    """Normalization never raises, and what the collector publishes the worker parses back into
    the very event the collector validated (same dedupe key)."""
    payload = from_segment(message, call)
    prepared = prepare([(message, payload)], received_at=NOW, limits=Limits())
    for _, event, data in prepared.accepted:
        parsed = parse_message(data, message_id="other", received_at=NOW + 100)
        assert not isinstance(parsed, Rejection), parsed
        assert parsed.key == event.key
        assert parsed.received_at == NOW
    assert len(prepared.accepted) + len(prepared.rejected) == 1


@pytest.mark.parametrize(
    "timestamp",
    [
        "2027-01-15T08:00:00.000Z",
        "2027-01-15T08:00:00+02:00",
        " 2027-01-15T08:00:00z ",
        "1969-12-31T23:59:59Z",  # before the epoch: refused as a date, not as a number
        "9999-12-31T23:59:59Z",  # past 1e11 s: not read as milliseconds
        "2027-01-15T08:00:00",  # no offset
        "2027-13-45T08:00:00Z",
        "",
        "x" * 80,
        "2026-12-15T08:00:00Z",  # in the future
        "2026-01-01T08:00:00Z",  # too old
    ],
)
def test_prepare_validates_rfc3339_timestamps_as_validation_does(timestamp: str) -> None:
    """prepare reads string timestamps itself (for validation's fast path): the outcome is the
    one validating the event as sent gives, reason, detail and dedupe key alike."""
    from behavioral_analytics.events import validate_event

    now = 1_798_000_000.0  # 2026-12-22
    sent = {"event_id": "e1", "user_id": "u", "event_type": "t", "timestamp": timestamp}
    expected = validate_event(dict(sent), message_id="", received_at=now)
    prepared = prepare([(sent, dict(sent))], received_at=now)
    if isinstance(expected, Rejection):
        assert not prepared.accepted
        assert prepared.rejected[0][1] == expected
    else:
        assert prepared.accepted[0][1] == expected
    assert sent["timestamp"] == timestamp  # the client's object is untouched
