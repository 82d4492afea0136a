"""Segment calls → canonical events (the core's `segment` module): Segment's time rules with
`sentAt`, the caller's address for client-side calls, page/screen categories, alias and group,
lone surrogates, and what a dead letter keeps of a rejected call."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from behavioral_analytics.events import Event, Rejection, parse_message
from behavioral_analytics.segment import (
    Receipt,
    dead_letter_fingerprint,
    decode_batch,
    encode_original,
    from_segment,
    prepare,
    prepare_calls,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def iso(epoch_s: float) -> str:
    return msgspec.json.decode(msgspec.json.encode(_datetime(epoch_s)))


def _datetime(epoch_s: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC)


def published(message: dict[str, Any], receipt: Receipt, **kw: Any) -> dict[str, Any]:
    """What the slow path publishes for one call, as the worker reads it."""
    payload = from_segment(message, receipt=receipt, **kw)
    assert not isinstance(payload, Rejection), payload
    prepared = prepare([(message, payload)], received_at=receipt.received_at)
    assert not prepared.rejected, prepared.rejected
    ((_, _, data),) = prepared.accepted
    return json.loads(data)


def worker_event(data: dict[str, Any]) -> Event:
    event = parse_message(json.dumps(data).encode(), message_id="x", received_at=NOW + 5)
    assert isinstance(event, Event), event
    return event


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Skewed Clock", **fields}


# -- time -------------------------------------------------------------------------------------


def test_a_clock_two_hours_ahead_is_corrected_not_rejected() -> None:
    ahead = 7200.0
    call = track(timestamp=iso(NOW - 30 + ahead), sentAt=iso(NOW - 1 + ahead))
    data = published(call, Receipt(NOW))
    assert data["timestamp"] == pytest.approx(NOW - 29)
    assert data["client_timestamp"] == pytest.approx(NOW - 30 + ahead)
    assert data["properties"]["client_time"] == {
        "timestamp": call["timestamp"],
        "sentAt": call["sentAt"],
    }


def test_a_clock_ten_minutes_behind_is_stored_at_the_right_time() -> None:
    behind = 600.0
    call = track(originalTimestamp=iso(NOW - 20 - behind), sentAt=iso(NOW - behind))
    data = published(call, Receipt(NOW))
    assert data["timestamp"] == pytest.approx(NOW - 20)
    assert data["properties"]["client_time"]["originalTimestamp"] == call["originalTimestamp"]


def test_the_batch_sent_at_applies_when_the_call_has_none() -> None:
    call = track(timestamp=iso(NOW - 3600 - 10))
    data = published(call, Receipt(NOW), batch_sent_at=iso(NOW - 3600))
    assert data["timestamp"] == pytest.approx(NOW - 10)
    own = published({**call, "sentAt": iso(NOW - 3605)}, Receipt(NOW), batch_sent_at=iso(NOW))
    assert own["timestamp"] == pytest.approx(NOW - 5)


@pytest.mark.parametrize("sent_at", [None, "not a time", 12, True, {"at": 1}])
def test_a_missing_or_unreadable_sent_at_means_no_correction(sent_at: Any) -> None:
    call = track(timestamp=iso(NOW - 50))
    if sent_at is not None:
        call["sentAt"] = sent_at
    data = published(call, Receipt(NOW))
    assert data["timestamp"] == pytest.approx(NOW - 50)
    assert "client_timestamp" not in data
    assert "client_time" not in data["properties"]


def test_a_corrected_time_after_receipt_is_clamped_to_receipt() -> None:
    call = track(timestamp=iso(NOW + 30), sentAt=iso(NOW))  # the call is "after" its sending
    data = published(call, Receipt(NOW))
    assert data["timestamp"] == NOW


def test_the_window_applies_to_the_corrected_time() -> None:
    days = 31 * 86400.0  # beyond the 30 days `Limits` accepts by default
    behind = track(timestamp=iso(NOW - days - 10), sentAt=iso(NOW - days))  # a clock 31 days late
    assert published(behind, Receipt(NOW))["timestamp"] == pytest.approx(NOW - 10)
    late = track(timestamp=iso(NOW - days), sentAt=iso(NOW - 1))  # an event 31 days late
    prepared = prepare([(late, from_segment(late, receipt=Receipt(NOW)))], received_at=NOW)
    assert [r.reason for _, r, _ in prepared.rejected] == ["timestamp_too_old"]


def test_retries_with_new_sent_at_keep_one_key() -> None:
    """Each retry carries a new `sentAt` (and so a new corrected time): the key stays the
    client's time as sent, and a copy of the call sent without `sentAt` has it too."""
    call = track(timestamp=iso(NOW - 100))
    keys = set()
    for n, delay in enumerate((0.0, 7.5, 60.0)):
        retry = {**call, "sentAt": iso(NOW - 100 + 1 + n)}
        event = worker_event(published(retry, Receipt(NOW + delay)))
        keys.add(event.key)
    keys.add(worker_event(published(call, Receipt(NOW))).key)
    assert len(keys) == 1


def test_fast_and_slow_paths_correct_alike() -> None:
    calls = [
        track(messageId=f"m-{n}", timestamp=iso(NOW + 7200 - n), sentAt=iso(NOW + 7200))
        for n in range(3)
    ]
    calls.append(track(messageId="m-9", timestamp=iso(NOW - 100 + 60)))  # the batch's sentAt
    body = msgspec.json.encode({"batch": calls, "sentAt": iso(NOW + 60)})
    decoded = decode_batch(body)
    receipt = Receipt(NOW, "198.51.100.7", browser=True)
    fast = prepare_calls(decoded.batch, None, None, receipt=receipt, batch_sent_at=decoded.sentAt)
    assert fast is not None
    slow = prepare(
        [(c, from_segment(c, receipt=receipt, batch_sent_at=iso(NOW + 60))) for c in calls],
        received_at=NOW,
    )
    assert fast.data == [data for _, _, data in slow.accepted]
    times = [json.loads(d)["timestamp"] for d in fast.data]
    assert times == pytest.approx([NOW, NOW - 1, NOW - 2, NOW - 100])


# -- the key rule -----------------------------------------------------------------------------


def test_a_retry_that_gained_a_user_id_keeps_its_key() -> None:
    """analytics.js retries a page view with the `userId` an identify taught it since (issue
    case 4): one `messageId`, one key, whatever the who-fields and `sentAt` became."""
    page = {"type": "page", "messageId": "ajs-dup-1", "anonymousId": "anon-1", "name": "Home"}
    first = worker_event(published({**page, "timestamp": iso(NOW - 5)}, Receipt(NOW)))
    retry = {**page, "userId": "user-1", "timestamp": iso(NOW - 5), "sentAt": iso(NOW + 3)}
    again = worker_event(published(retry, Receipt(NOW + 9)))
    assert first.id_kind == again.id_kind == "message"
    assert first.key == again.key
    assert (first.who, again.who) == ("anonymous:anon-1", "user-1")


def test_the_fast_path_marks_message_ids_like_the_slow_path() -> None:
    calls = [track(timestamp=iso(NOW - 5)), {**track(timestamp=iso(NOW - 5)), "messageId": ""}]
    fast = prepare_calls(
        decode_batch(msgspec.json.encode({"batch": calls})).batch, None, None, receipt=Receipt(NOW)
    )
    assert fast is not None
    kinds = [json.loads(d).get("id_kind") for d in fast.data]
    assert kinds == ["message", None]  # no messageId: an id of ours, the recipe's rule


def test_events_published_before_the_key_rule_keep_their_key() -> None:
    """A message published without `id_kind` (the recipe's, a direct publish, or a Segment call
    published before the rule existed) keeps the key it was stored under, so a redelivery of it
    after the change is still one event. The literal pins the recipe's rule."""
    old = {"event_id": "m-1", "user_id": "u-1", "event_type": "Skewed Clock", "timestamp": NOW - 5}
    event = worker_event(old)
    assert event.id_kind is None
    assert event.key == "468e2f33d33bbf8e68c5d99b4a8066c5"  # as the code before the rule
    assert event.key != worker_event({**old, "id_kind": "message"}).key


def test_an_unknown_id_kind_is_rejected() -> None:
    data = {"event_id": "e", "user_id": "u", "event_type": "t", "id_kind": "other"}
    result = parse_message(json.dumps(data).encode(), message_id="x", received_at=NOW)
    assert isinstance(result, Rejection) and result.reason == "invalid_value:id_kind"


# -- context.ip ---------------------------------------------------------------------------------


def test_a_browser_call_gets_the_connection_address() -> None:
    data = published(track(), Receipt(NOW, "198.51.100.7", browser=True))
    assert data["properties"]["context"] == {"ip": "198.51.100.7"}


@pytest.mark.parametrize("library", ["analytics.js", "analytics-ios", "RudderLabs JavaScript SDK"])
def test_a_client_library_gets_the_connection_address(library: str) -> None:
    call = track(context={"library": {"name": library, "version": "1"}})
    data = published(call, Receipt(NOW, "198.51.100.7"))
    assert data["properties"]["context"]["ip"] == "198.51.100.7"


@pytest.mark.parametrize("library", ["analytics-python", "analytics-node", "analytics-ruby"])
def test_a_server_library_gets_no_address(library: str) -> None:
    call = track(context={"library": {"name": library}})
    data = published(call, Receipt(NOW, "10.1.2.3"))
    assert "ip" not in data["properties"]["context"]
    assert "context" not in published(track(), Receipt(NOW, "10.1.2.3"))["properties"]


def test_an_address_the_client_sent_is_kept() -> None:
    call = track(context={"ip": "203.0.113.5"})
    data = published(call, Receipt(NOW, "198.51.100.7", browser=True))
    assert data["properties"]["context"]["ip"] == "203.0.113.5"


# -- fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_category_is_kept(kind: str) -> None:
    call = {"type": kind, "userId": "user-1", "name": "Getting Started", "category": "Docs"}
    data = published(call, Receipt(NOW))
    assert data["properties"]["name"] == "Getting Started"
    assert data["properties"]["category"] == "Docs"


def test_rudderstacks_empty_user_id_is_an_anonymous_visitor() -> None:
    call = track(userId="", anonymousId="anon-7", messageId="")
    data = published(call, Receipt(NOW))
    assert (data["user_id"], data["anonymous_id"]) == (None, "anon-7")
    assert len(data["event_id"]) == 32


def test_alias_and_group_are_published_as_events_naming_their_call() -> None:
    alias = {"type": "alias", "messageId": "a-1", "userId": "user-1", "previousId": "anon-1"}
    data = published(alias, Receipt(NOW))
    assert (data["event_type"], data["call"]) == ("alias", "alias")
    assert data["properties"]["previousId"] == "anon-1"
    group = {"type": "group", "userId": "user-1", "groupId": "acme", "traits": {"plan": "b2b"}}
    data = published(group, Receipt(NOW))
    assert data["call"] == "group"
    assert data["properties"] == {"groupId": "acme", "traits": {"plan": "b2b"}}
    event = parse_message(json.dumps(data).encode(), message_id="x", received_at=NOW)
    assert isinstance(event, Event)
    assert (event.call, event.event_type) == ("group", "group")
    assert event.to_dict()["call"] == "group"  # kept in the stored event


# -- lone surrogates and dead letters ----------------------------------------------------------


def test_a_lone_surrogate_in_a_property_is_replaced_in_its_event_only() -> None:
    calls_text = [
        '{"type":"track","messageId":"ok","userId":"u","event":"S","properties":{"q":"pizza"}}',
        '{"type":"track","messageId":"cut","userId":"u","event":"S","properties":{"q":"b\\ud83c"}}',
        '{"type":"track","messageId":"bad-id","userId":"u \\ud83c","event":"S"}',
    ]
    body = ('{"batch": [' + ",".join(calls_text) + "]}").encode()
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)
    calls = json.loads(body)["batch"]
    prepared = prepare(
        [(c, from_segment(c, receipt=Receipt(NOW))) for c in calls],
        received_at=NOW,
        repair_surrogates=True,
    )
    accepted = {event.event_id: event for _, event, _ in prepared.accepted}
    assert accepted["ok"].properties == {"q": "pizza"}
    assert accepted["cut"].properties == {"q": "b\ufffd"}
    ((index, rejection, original),) = prepared.rejected
    assert (index, rejection.reason) == (2, "invalid_characters:user_id")
    assert b'"userId":"u \\ud83c"' in encode_original(original)


def test_a_dead_letter_never_keeps_the_write_key() -> None:
    original = {"type": "track", "writeKey": "wk_secret", "userId": "u"}
    assert b"wk_secret" not in encode_original(original)
    assert json.loads(encode_original(original)) == {"type": "track", "userId": "u"}


def test_a_retried_calls_fingerprint_ignores_sent_at_metadata_and_write_key() -> None:
    call = {"type": "track", "userId": "u", "sentAt": iso(NOW), "_metadata": {"bundled": []}}
    retry = {**call, "sentAt": iso(NOW + 9), "_metadata": {"bundled": ["x"]}, "writeKey": "k"}
    same = dead_letter_fingerprint(call, "missing_field:event")
    assert same == dead_letter_fingerprint(retry, "missing_field:event")
    assert same != dead_letter_fingerprint({**call, "userId": "v"}, "missing_field:event")
    assert same != dead_letter_fingerprint(call, "other")
