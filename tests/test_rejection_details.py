"""Rejections in the core: every one carries the client's id when it sent one, whatever the
reason, and a one-line detail that starts with the field as the caller spelled it (the
recipe's names for its events, Segment's for Segment calls, also in the worker's alias and
group rules); reason codes stay as they were."""

from __future__ import annotations

import json
from typing import Any

import pytest

from behavioral_analytics.events import Event, Rejection, parse_message, sent_id, validate_event
from behavioral_analytics.named_calls import rejection
from behavioral_analytics.segment import Receipt, from_segment, prepare

NOW = 1_800_000_000.0
BLANK = "is empty or only whitespace: expected non-blank text"
REFUSED = "control characters, lone surrogates, U+2028/2029 and bidi overrides are not allowed"
GOOD = {"event_id": "e-1", "user_id": "u", "event_type": "t", "timestamp": NOW - 10}


def recipe_rejection(**changes: Any) -> Rejection:
    payload = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    result = validate_event(payload, message_id="broker-1", received_at=NOW)
    assert isinstance(result, Rejection), result
    return result


def segment_rejection(call: dict[str, Any]) -> Rejection:
    """A call's rejection as the collector answers it (`from_segment`, then `prepare`)."""
    payload = from_segment(call, receipt=Receipt(NOW))
    if isinstance(payload, Rejection):
        return payload
    [(_, result, _)] = prepare([(call, payload)], received_at=NOW).rejected
    return result


@pytest.mark.parametrize(
    ("changes", "reason", "detail"),
    [
        (
            {"event_type": None},
            "missing_field:event_type",
            "event_type is required: the event's name",
        ),
        ({"user_id": None}, "missing_field:user_id", "user_id or anonymous_id is required"),
        ({"event_type": " "}, "empty_field:event_type", "event_type " + BLANK),
        ({"event_type": ""}, "empty_field:event_type", "event_type " + BLANK),
        ({"user_id": "a\tb"}, "invalid_characters:user_id", "user_id: " + REFUSED),
        ({"session_id": []}, "invalid_type:session_id", "session_id: expected a string, got array"),
        ({"event_type": "t" * 129}, "too_long:event_type", "event_type: 129 characters > 128"),
        (
            {"timestamp": "noon"},
            "invalid_timestamp",
            "timestamp: 'noon' is not RFC 3339 (e.g. 2026-11-28T13:05:00Z)",
        ),
        (
            {"timestamp": NOW + 7200},
            "timestamp_in_future",
            "timestamp is 7200 s ahead of receipt (limit 3600 s)",
        ),
        (
            {"timestamp": NOW - 40 * 86400},
            "timestamp_too_old",
            "timestamp is 40.0 days before receipt (limit 30 days)",
        ),
        (
            {"received_at": True},
            "invalid_received_at",
            "received_at: expected a number or an RFC 3339 string",
        ),
        (
            {"client_timestamp": -1},
            "invalid_client_timestamp",
            "client_timestamp: -1 is not a point in time",
        ),
        (
            {"properties": [1]},
            "invalid_type:properties",
            "properties: expected an object, got array",
        ),
        (
            {"properties": {str(n): n for n in range(201)}},
            "too_many_properties",
            "properties: 201 keys > 200",
        ),
        ({"id_kind": "x"}, "invalid_value:id_kind", "id_kind: expected 'message' or no id_kind"),
        ({"call": "merge"}, "invalid_value:call", "call: expected one of alias, group or no call"),
    ],
)
def test_every_recipe_rejection_names_its_field_and_echoes_the_id(
    changes: dict[str, Any], reason: str, detail: str
) -> None:
    assert recipe_rejection(**changes) == Rejection(reason, detail, "e-1")


@pytest.mark.parametrize(
    ("event_id", "echoed"),
    [
        ("x" * 300, "x" * 300),  # too long, still the client's
        ("a\nb", "a\nb"),
        (42, "42"),  # validation reads an integer id as its text
        ({"id": 1}, None),  # not an id
        (True, None),
        ("", None),  # empty: absent
        ("ab\ud83c", None),  # a lone surrogate: no answer can carry it
    ],
)
def test_an_invalid_id_is_echoed_when_it_can_be(event_id: Any, echoed: str | None) -> None:
    assert sent_id(event_id) == echoed
    assert recipe_rejection(event_id=event_id, user_id=None).event_id == echoed


def test_a_message_without_an_id_echoes_none_not_the_brokers_id() -> None:
    assert recipe_rejection(event_id=None, event_type=None).event_id is None
    rejected = parse_message(b'{"user_id": "u"}', message_id="broker-1", received_at=NOW)
    assert rejected == Rejection(
        "missing_field:event_type", "event_type is required: the event's name", None
    )


@pytest.mark.parametrize(
    ("call", "reason", "detail"),
    [
        ({"type": "track", "messageId": "m", "userId": "u"}, "missing_field:event",
         "event is required: a track call names its action"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e", "context": "oops"},
         "invalid_type:context", "context: expected an object, got string"),
        ({"type": "merge", "messageId": "m"}, "unsupported_type",
         "type 'merge' is not one of track, page, screen, identify, alias, group"),
        ({"type": "track", "messageId": "m", "event": "e"}, "missing_field:user_id",
         "userId or anonymousId is required"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "  "},
         "empty_field:event_type", "event is empty or only whitespace: expected non-blank text"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": 5},
         "invalid_type:event_type", "event: expected a string, got number"),
        ({"type": "track", "messageId": "m", "userId": 5.5, "event": "e"},
         "invalid_type:user_id", "userId: expected a string, got number"),
        ({"type": "track", "messageId": "m" * 257, "userId": "u", "event": "e"},
         "too_long:event_id", "messageId: 257 characters > 256"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e", "timestamp": "noon"},
         "invalid_timestamp", "timestamp: 'noon' is not RFC 3339 (e.g. 2026-11-28T13:05:00Z)"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e",
          "originalTimestamp": "2020-01-01T00:00:00Z"},
         "timestamp_too_old", "originalTimestamp is 2571.3 days before receipt (limit 30 days)"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e", "properties": [1]},
         "invalid_type:properties", "properties: expected an object, got array"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e",
          "properties": {"cart": [[1]]}},
         "nested_array", "properties.cart[0]: arrays of arrays cannot be stored"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e",
          "properties": {"context": {"a": [[1]]}}},
         "nested_array", "properties.context.a[0]: arrays of arrays cannot be stored"),
        ({"type": "track", "messageId": "m", "userId": "u", "event": "e",
          "context": {"a": [[1]]}},
         "nested_array", "context.a[0]: arrays of arrays cannot be stored"),
        ({"type": "identify", "messageId": "m", "userId": "u", "traits": 3},
         "invalid_type:properties", "traits: expected an object, got number"),
        ({"type": "identify", "messageId": "m", "userId": "u", "traits": {"a": [[1]]}},
         "nested_array", "traits.a[0]: arrays of arrays cannot be stored"),
        ({"type": "identify", "messageId": "m", "userId": "u",
          "context": {"traits": {"a": [[1]]}}},
         "nested_array", "context.traits.a[0]: arrays of arrays cannot be stored"),
        ({"type": "page", "messageId": "m", "userId": "u", "name": [[1]]},
         "nested_array", "name[0]: arrays of arrays cannot be stored"),
        ({"type": "page", "messageId": "m", "userId": "u", "name": "n",
          "properties": {"name": [[1]]}},
         "nested_array", "properties.name[0]: arrays of arrays cannot be stored"),
        ({"type": "page", "messageId": "m", "userId": "u",
          "context": {"page": {"url": "u" * 8193}}},
         "string_too_long", "context.page.url: 8193 characters > 8192"),
        ({"type": "screen", "messageId": "m", "userId": "u", "category": [[1]]},
         "nested_array", "category[0]: arrays of arrays cannot be stored"),
        ({"type": "alias", "messageId": "m", "userId": "u", "previousId": [[1]]},
         "nested_array", "previousId[0]: arrays of arrays cannot be stored"),
        ({"type": "group", "messageId": "m", "userId": "u", "groupId": "g",
          "traits": {"a": [[1]]}},
         "nested_array", "traits.a[0]: arrays of arrays cannot be stored"),
    ],
)  # fmt: skip
def test_every_segment_rejection_names_the_calls_field_and_echoes_its_message_id(
    call: dict[str, Any], reason: str, detail: str
) -> None:
    assert segment_rejection(call) == Rejection(reason, detail, call["messageId"])


def test_a_segment_call_without_a_message_id_echoes_none() -> None:
    for call in (
        {"type": "track", "userId": "u"},
        {"type": "track", "event": "e"},
        {"type": "track", "messageId": "", "event": "e"},
    ):
        assert segment_rejection(call).event_id is None


def worker_event(call: dict[str, Any]) -> Event:
    """A Segment call as the worker reads it: normalized by the collector, published, parsed."""
    payload = from_segment(call, receipt=Receipt(NOW))
    assert not isinstance(payload, Rejection), payload
    [(_, _, data)] = prepare([(call, payload)], received_at=NOW).accepted
    event = parse_message(data, message_id="broker-1", received_at=NOW)
    assert isinstance(event, Event), event
    return event


@pytest.mark.parametrize(
    ("call", "reason", "detail"),
    [
        ({"type": "group", "userId": "u"}, "missing_field:group_id",
         "groupId is required: the id of the group joined"),
        ({"type": "group", "userId": "u", "groupId": " "}, "invalid_value:group_id",
         "groupId: expected an id, a string of 1 to 256 characters, not only whitespace, "
         "without control characters"),
        ({"type": "group", "userId": "u", "groupId": "g", "traits": [1]}, "invalid_type:traits",
         "traits: expected an object, got array"),
        ({"type": "alias", "anonymousId": "a", "previousId": "a"}, "missing_field:user_id",
         "userId is required: an alias names its user"),
        ({"type": "alias", "userId": "u"}, "missing_field:previous_id",
         "previousId is required: the id the user was known by before"),
        ({"type": "alias", "userId": "u", "previousId": 5}, "invalid_value:previous_id",
         "previousId: expected an id, a string of 1 to 256 characters, not only whitespace, "
         "without control characters"),
    ],
)  # fmt: skip
def test_the_workers_alias_and_group_rules_name_segments_fields(
    call: dict[str, Any], reason: str, detail: str
) -> None:
    event = worker_event({**call, "messageId": "m-1"})
    assert rejection(event) == Rejection(reason, detail, "m-1")


def test_a_segment_call_published_to_the_topic_is_told_where_it_belongs() -> None:
    call = {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-1"}
    result = parse_message(json.dumps(call).encode(), message_id="b-1", received_at=NOW)
    assert isinstance(result, Rejection) and result.reason == "missing_field:user_id"
    assert result.detail.startswith("user_id or anonymous_id is required: this is a Segment")
    assert "send it to the collector (POST /v1/track" in result.detail


@pytest.mark.parametrize(
    ("data", "reason", "detail", "echoed"),
    [
        (b"nope", "not_json", "Expecting value at line 1, column 1", None),
        (b"nul", "not_json", "Expecting value at line 1, column 1", None),
        (b'{"user_id": "u"', "not_json", "Expecting ',' delimiter at line 1, column 16", None),
        (
            b'{"user_id": "u",\n "a": "\x01"}',
            "not_json",
            "Invalid control character at line 2, column 8",
            None,
        ),
        (  # the collector's answer to the same text (the standard library reads it)
            b'{"event_id": "e-1", "user_id": "u", "event_type": "t", "timestamp": 1e400}',
            "invalid_timestamp",
            "timestamp: inf is not a point in time",
            "e-1",
        ),
        (
            b'{"user_id": "u", "event_type": "t", "properties": {"cart": [1, -2.5e308]}}',
            "invalid_number",
            "properties.cart[1]: -Infinity is not a number JSON has",
            None,
        ),
        (
            b'{"event_id": 7, "user_id": "u", "event_type": "t", "timestamp": NaN}',
            "invalid_timestamp",
            "timestamp: nan is not a point in time",
            "7",
        ),
        (  # a field no rule reads: validation would take it, so the decoder's refusal stands
            b'{"user_id": "u", "event_type": "t", "extra": 1e400}',
            "invalid_number",
            "extra: 1e400 is past a 64-bit float's range",
            None,
        ),
        (
            b'{"user_id": "u", "event_type": "t", "extra": NaN}',
            "not_json",
            "extra: NaN is no JSON number (RFC 8259, section 6)",
            None,
        ),
        (  # past the interpreter's 4,300 digits: the collector's reason and detail
            b'{"event_id": "e-2", "user_id": "u", "event_type": "t", "properties": {"n": '
            + b"9" * 4301
            + b"}}",
            "invalid_number",
            "properties.n: integer outside 64 bits",
            "e-2",
        ),
        (  # an id of such digits is its text, as the collector reads it: too long
            b'{"user_id": ' + b"9" * 4301 + b', "event_type": "t"}',
            "too_long:user_id",
            "user_id: 4301 characters > 256",
            None,
        ),
        (b"1e999", "not_an_object", "expected a JSON object, got a JSON number", None),
        (
            rb'{"user_id": "u", "event_type": "t", "properties": {"k\n\udc00": ["x\ud800"]}}',
            "not_json",
            r"properties.k\u000a\udc00: \udc00 is a lone surrogate, no character (RFC 8259, "
            "section 8.2)",
            None,
        ),
        (  # validation quotes the key: escaped, or no store could hold the dead letter
            rb'{"user_id": "u", "event_type": "t", "properties": {"\ud800": NaN}}',
            "invalid_number",
            r"properties.\ud800: NaN is not a number JSON has",
            None,
        ),
        (b"", "empty_message", "the message holds no bytes: expected a JSON object", None),
        (
            b" \n\t",
            "empty_message",
            "the message holds only whitespace (3 bytes): expected a JSON object",
            None,
        ),
    ],
    ids=[
        "word",
        "truncated-literal",
        "truncated-object",
        "control-character",
        "float-overflow-timestamp",
        "nested-float-overflow",
        "nan-timestamp",
        "float-overflow-unread",
        "nan-unread",
        "integer-past-4300-digits",
        "id-past-4300-digits",
        "bare-overflow",
        "lone-surrogate-in-a-key",
        "lone-surrogate-key-of-a-nan",
        "no-bytes",
        "whitespace",
    ],
)
def test_a_message_that_does_not_decode_says_where_and_names_the_field(
    data: bytes, reason: str, detail: str, echoed: str | None
) -> None:
    """msgspec's own words pointed past the token it gave up on (`nope`: byte 4) or at no field
    (`1e400`: "Number out of range - at `$[...]`"), a 4,301-digit integer raised, and a blank
    message had no detail. Text the standard library reads gets the collector's answer."""
    rejected = parse_message(data, message_id="broker-1", received_at=NOW)
    assert rejected == Rejection(reason, detail, echoed)
    rejected.detail.encode()  # what a store writes: no lone surrogate
