"""The event contract: every malformed kind gets a precise reason; good shapes normalize."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.events import (
    Event,
    Invalid,
    Limits,
    Rejection,
    dedupe_key,
    parse_message,
    parse_timestamp,
    validate_event,
)

NOW = float(int(time.time()))  # events in the table are fresh whenever the test runs
_A_MINUTE_AGO = datetime.fromtimestamp(NOW - 60, UTC)
GOOD = {
    "event_id": "evt_482913",
    "user_id": "user_42",
    "event_type": "purchase",
    "timestamp": NOW - 10.123,
    "session_id": "sess_5821",
    "properties": {
        "page_url": "/page/7",
        "referrer": "google.com",
        "device_type": "mobile",
        "user_agent": "BehavioralAnalytics/1.0",
        "amount": 99.5,
        "currency": "USD",
    },
}


def parse(data: bytes | str | object, **kw: object) -> Event | Rejection:
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = json.dumps(data).encode()
    return parse_message(data, message_id="m-1", received_at=NOW, **kw)  # type: ignore[arg-type]


def with_(**changes: object) -> dict[str, object]:
    event = {**GOOD, **changes}
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def test_recipe_payload_is_accepted_as_is() -> None:
    event = parse(GOOD)
    assert isinstance(event, Event)
    assert event.event_id == "evt_482913"
    assert event.user_id == "user_42" and event.who == "user_42"
    assert event.timestamp == pytest.approx(NOW - 10.123)
    assert event.properties["amount"] == 99.5
    assert event.received_at == NOW
    assert len(event.key) == 32


@pytest.mark.parametrize(
    "timestamp",
    [
        NOW - 60,
        (NOW - 60) * 1000,
        _A_MINUTE_AGO.strftime("%Y-%m-%dT%H:%M:%SZ"),
        _A_MINUTE_AGO.astimezone(timezone(timedelta(hours=1))).isoformat(),
    ],
    # Ids that do not change with the clock: every test process collects the same tests.
    ids=["seconds", "milliseconds", "rfc3339 utc", "rfc3339 offset"],
)
def test_timestamps_in_seconds_millis_and_rfc3339(timestamp: object) -> None:
    event = parse(with_(timestamp=timestamp))
    assert isinstance(event, Event)
    assert event.timestamp == pytest.approx(NOW - 60, abs=1e-3)


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),
        ("2016-12-31t23:59:60.25z", "2017-01-01T00:00:00.250000+00:00"),
        ("2016-12-31T18:59:60-05:00", "2017-01-01T00:00:00+00:00"),
    ],
)
def test_a_leap_second_is_the_next_minutes_start(text: str, instant: str) -> None:
    """RFC 3339 5.6 allows `:60`; epoch seconds have no such second."""
    assert parse_timestamp(text) == datetime.fromisoformat(instant).timestamp()


@pytest.mark.parametrize(
    "text",
    ["2016-12-31T23:59:61Z", "2016-12-31T23:59:60", "2016-12-31T23:60:00Z", "9999-12-31T23:59:60Z"],
)
def test_only_a_second_of_60_with_an_offset_is_read_as_a_leap_second(text: str) -> None:
    with pytest.raises(Invalid) as raised:
        parse_timestamp(text)
    assert raised.value.reason == "invalid_timestamp"


def test_missing_event_id_uses_the_message_id_and_missing_timestamp_the_receipt() -> None:
    event = parse(with_(event_id=_DROP, timestamp=_DROP))
    assert isinstance(event, Event)
    assert event.event_id == "m-1"
    assert event.timestamp == NOW


def test_anonymous_id_stands_in_for_user_id() -> None:
    event = parse(with_(user_id=_DROP, anonymous_id="anon-7"))
    assert isinstance(event, Event)
    assert event.user_id is None and event.who == "anonymous:anon-7"


def test_collector_received_at_is_honoured() -> None:
    event = parse(with_(received_at=NOW - 5))
    assert isinstance(event, Event) and event.received_at == NOW - 5


def test_dedupe_key_matches_on_all_four_parts_only() -> None:
    base = dedupe_key("evt_1", "user_1", "page_view", 100.0)
    assert base == dedupe_key("evt_1", "user_1", "page_view", 100.0000000001)
    assert base != dedupe_key("evt_1", "user_2", "page_view", 100.0)
    assert base != dedupe_key("evt_1", "user_1", "purchase", 100.0)
    assert base != dedupe_key("evt_1", "user_1", "page_view", 101.0)
    assert base != dedupe_key("evt_2", "user_1", "page_view", 100.0)


def test_same_event_in_seconds_or_millis_has_one_key() -> None:
    a = parse(with_(timestamp=NOW - 1.5))
    b = parse(with_(timestamp=(NOW - 1.5) * 1000))
    assert isinstance(a, Event) and isinstance(b, Event) and a.key == b.key


def test_recipe_weak_ids_do_not_merge_distinct_events() -> None:
    a = parse(with_(user_id="user_1"))
    b = parse(with_(user_id="user_2"))
    assert isinstance(a, Event) and isinstance(b, Event) and a.key != b.key


def _deep(levels: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(levels):
        value = {"n": value}
    return value


MALFORMED: list[tuple[str, bytes | str | object, str]] = [
    ("not json", "this is not json", "not_json"),
    ("truncated json", '{"user_id": "u"', "not_json"),
    ("NaN literal", '{"user_id": "u", "event_type": "x", "timestamp": NaN}', "invalid_timestamp"),
    ("invalid utf-8", b'{"user_id": "\xff\xfe", "event_type": "x"}', "invalid_utf8"),
    ("empty message", "", "empty_message"),
    ("json array", [GOOD], "not_an_object"),
    ("json string", '"hello"', "not_an_object"),
    ("json null", "null", "not_an_object"),
    ("no user_id and no anonymous_id", with_(user_id=_DROP), "missing_field:user_id"),
    ("null user_id", with_(user_id=None), "missing_field:user_id"),
    ("user_id is an object", with_(user_id={"id": 1}), "invalid_type:user_id"),
    ("user_id is a bool", with_(user_id=True), "invalid_type:user_id"),
    ("empty user_id is absent", with_(user_id=""), "missing_field:user_id"),
    ("blank user_id", with_(user_id="   "), "empty_field:user_id"),
    ("control characters in user_id", with_(user_id="a\x00b"), "invalid_characters:user_id"),
    ("very long user_id", with_(user_id="u" * 300), "too_long:user_id"),
    ("user_id of a visitor", with_(user_id="anonymous:zz"), "invalid_value:user_id"),
    ("missing event_type", with_(event_type=_DROP), "missing_field:event_type"),
    ("empty event_type", with_(event_type=""), "empty_field:event_type"),
    ("event_type is a number", with_(event_type=7), "invalid_type:event_type"),
    ("very long event_type", with_(event_type="e" * 200), "too_long:event_type"),
    ("event_id is a list", with_(event_id=[1]), "invalid_type:event_id"),
    ("session_id is a float", with_(session_id=1.5), "invalid_type:session_id"),
    ("garbage timestamp", with_(timestamp="yesterday-ish"), "invalid_timestamp"),
    ("timestamp without offset", with_(timestamp="2025-11-28T08:52:20"), "invalid_timestamp"),
    ("negative timestamp", with_(timestamp=-5), "invalid_timestamp"),
    ("absurd timestamp", with_(timestamp=1e20), "invalid_timestamp"),
    ("bool timestamp", with_(timestamp=True), "invalid_type:timestamp"),
    ("object timestamp", with_(timestamp={"s": 1}), "invalid_type:timestamp"),
    ("far-future timestamp", with_(timestamp=NOW + 86400 * 365), "timestamp_in_future"),
    ("ancient timestamp", with_(timestamp=NOW - 86400 * 400), "timestamp_too_old"),
    ("properties is a list", with_(properties=[1, 2]), "invalid_type:properties"),
    ("properties is a string", with_(properties="a=b"), "invalid_type:properties"),
    ("deeply nested properties", with_(properties=_deep(40)), "too_deep"),
    ("huge string property", with_(properties={"blob": "x" * 9000}), "string_too_long"),
    (
        "too many properties",
        with_(properties={f"k{i}": i for i in range(300)}),
        "too_many_properties",
    ),
    ("empty property key", with_(properties={"": 1}), "invalid_property_key"),
    ("huge property key", with_(properties={"k" * 300: 1}), "invalid_property_key"),
    ("array of arrays", with_(properties={"m": [[1, 2]]}), "nested_array"),
    ("integer beyond 64 bits", with_(properties={"n": 2**70}), "invalid_number"),
    ("bad received_at", with_(received_at="soon"), "invalid_received_at"),
    ("message too large", with_(properties={f"k{i}": "v" * 200 for i in range(190)}), "too_large"),
]


@pytest.mark.parametrize(("kind", "payload", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_event_gets_a_precise_reason(kind: str, payload: object, reason: str) -> None:
    result = parse(payload)
    assert isinstance(result, Rejection), f"{kind} was accepted"
    assert result.reason == reason


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (
            b'{"user_id": "\xff\xfe", "event_type": "x"}',
            "invalid_utf8",
            "byte 0xff at position 13 is not UTF-8 (invalid start byte): JSON text is UTF-8 "
            "(RFC 8259)",
        ),
        (
            b'\xef\xbb\xbf{"user_id": "u", "event_type": "x"}',
            "not_json",
            "starts with a UTF-8 byte order mark, which JSON text must not (RFC 8259, section "
            "8.1): save the file as UTF-8 without it",
        ),
    ],
    ids=["invalid-utf8", "byte-order-mark"],
)
def test_bytes_that_are_no_json_text_say_which_and_where(
    data: bytes, reason: str, detail: str
) -> None:
    """The detail said Python's codec message (`'utf-8' codec can't decode byte 0xff…`), and a
    file saved with a byte order mark was `invalid character (byte 0)`."""
    result = parse_message(data, message_id="m", received_at=NOW)
    assert result == Rejection(reason, detail)


def test_at_least_twenty_kinds_of_malformed_input_are_covered() -> None:
    assert len(MALFORMED) >= 20
    assert len({reason for _, _, reason in MALFORMED}) >= 20


def test_rejection_keeps_the_event_id_when_it_could_be_read() -> None:
    result = parse(with_(timestamp="garbage"))
    assert isinstance(result, Rejection) and result.event_id == "evt_482913"


def test_nan_from_a_python_caller_is_rejected() -> None:
    result = validate_event(with_(properties={"x": math.nan}), message_id="m", received_at=NOW)
    assert isinstance(result, Rejection) and result.reason == "invalid_number"
    assert result.detail == "properties.x: NaN is not a number JSON has"  # as a client spells it


def test_limits_are_configurable() -> None:
    tight = Limits(max_future_skew_s=0)
    result = parse(with_(timestamp=NOW + 1), limits=tight)
    assert isinstance(result, Rejection) and result.reason == "timestamp_in_future"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse(data), Event | Rejection)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from([*GOOD, "anonymous_id", "x"]), json_values))
def test_arbitrary_objects_never_raise(payload: dict[str, object]) -> None:
    result = validate_event(payload, message_id="m", received_at=NOW)
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Event):
        assert result.who and result.event_type and len(result.key) == 32


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": st.none() | st.text(max_size=5) | st.integers(),
            "user_id": st.none() | st.text(max_size=5) | st.booleans(),
            "anonymous_id": st.none() | st.text(max_size=5),
            "session_id": st.none() | st.text(max_size=5) | st.floats(),
            "event_type": st.none() | st.text(max_size=5) | st.integers(),
            "timestamp": st.none()
            | st.floats(min_value=NOW - 40 * 86400, max_value=NOW + 7200)
            | st.integers(min_value=int(NOW) - 40 * 86400, max_value=int(NOW) + 7200)
            | st.just(True),
            "properties": st.none() | json_values,
        },
    )
)
def test_the_fast_path_agrees_with_the_full_checks(payload: dict[str, object]) -> None:
    import behavioral_analytics.events as events_module

    fast = events_module._common_case(payload, "m", NOW, events_module.DEFAULT_LIMITS)
    full = events_module.validate_event(payload, message_id="m", received_at=NOW)
    if fast is not None:
        assert fast == full
    saved = events_module._common_case
    try:
        events_module._common_case = lambda *_: None  # type: ignore[assignment]
        slow = events_module.validate_event(payload, message_id="m", received_at=NOW)
    finally:
        events_module._common_case = saved
    assert slow == full


# -- text a person writes, ids left empty, the client's time in the key, pending calls --------


@pytest.mark.parametrize(
    "text",
    [
        "Dev \U0001f469\u200d\U0001f4bb Login",  # ZWJ emoji sequence
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian with ZWNJ
        "heart \u2764\ufe0f",  # variation selector
        "no\u00a0break",  # NBSP
        "\u3000ideographic space",
        "\u05e9\u05dc\u05d5\u05dd\u200f!",  # RLM
        "new emoji \U0001fae9",  # newer than Python 3.11's Unicode database
    ],
)
def test_names_and_ids_accept_the_text_people_write(text: str) -> None:
    event = parse(with_(event_type=text, user_id=text, anonymous_id=text, session_id=text))
    assert isinstance(event, Event), event
    assert (event.event_type, event.user_id, event.session_id) == (text, text, text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a\x00b", "C0"),
        ("a\x1fb", "C0"),
        ("a\x7fb", "DEL"),
        ("a\x85b", "C1"),
        ("line\u2028break", "line separator"),
        ("para\u2029graph", "paragraph separator"),
        ("\u202euser", "bidi override"),
        ("a\u202ab", "bidi embedding"),
    ],
)
def test_only_the_deny_list_is_refused(text: str, why: str) -> None:
    for field in ("user_id", "event_type"):
        result = validate_event(with_(**{field: text}), message_id="m", received_at=NOW)
        assert isinstance(result, Rejection), why
        assert result.reason == f"invalid_characters:{field}", why


def test_a_lone_surrogate_in_an_id_is_refused() -> None:
    result = validate_event(with_(user_id="burger \ud83c"), message_id="m", received_at=NOW)
    assert isinstance(result, Rejection)
    assert result.reason == "invalid_characters:user_id"


@pytest.mark.parametrize("field", ["user_id", "event_id", "session_id"])
def test_an_empty_optional_id_is_absent(field: str) -> None:
    event = parse(with_(anonymous_id="anon-1", **{field: ""}))
    assert isinstance(event, Event), event
    assert getattr(event, field) == ("m-1" if field == "event_id" else None)
    assert event.who == ("anonymous:anon-1" if field == "user_id" else "user_42")


def test_both_who_fields_empty_is_missing_who() -> None:
    result = parse(with_(user_id="", anonymous_id=""))
    assert isinstance(result, Rejection)
    assert result.reason == "missing_field:user_id"


def test_the_key_uses_the_clients_time_as_sent_when_the_time_was_corrected() -> None:
    plain = parse(with_(timestamp=NOW - 100))
    corrected = parse(with_(timestamp=NOW - 40, client_timestamp=NOW - 100))
    assert isinstance(plain, Event) and isinstance(corrected, Event)
    assert corrected.key == plain.key
    assert corrected.timestamp == NOW - 40
    assert corrected.to_dict()["client_timestamp"] == NOW - 100
    assert "client_timestamp" not in plain.to_dict()
    again = parse(json.dumps(corrected.to_dict()))
    assert isinstance(again, Event)
    assert (again.key, again.client_timestamp) == (plain.key, NOW - 100)


def test_an_unreadable_client_time_is_a_reason() -> None:
    result = parse(with_(client_timestamp="yesterday"))
    assert isinstance(result, Rejection)
    assert result.reason == "invalid_client_timestamp"


@pytest.mark.parametrize("call", ["alias", "group"])
def test_alias_and_group_calls_are_events_naming_their_call(call: str) -> None:
    result = parse(with_(event_type=call, call=call))
    assert isinstance(result, Event)
    assert result.call == call
    again = parse(json.dumps(result.to_dict()))
    assert isinstance(again, Event) and (again.call, again.key) == (call, result.key)


def test_an_unknown_call_is_a_reason() -> None:
    result = parse(with_(call="merge"))
    assert isinstance(result, Rejection)
    assert result.reason == "invalid_value:call"
