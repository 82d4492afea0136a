"""Requests refused whole leave a trace: a dead letter (when the write key was accepted), a
counter by reason and a log line. Segment's Node and Python libraries drop a batch refused
with a 4xx other than 408/410/429/460, so without these its events were lost unseen."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from api_helpers import WRITE, WRITE_KEY, make_settings, recipe_event
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.api.bodies import MAX_REQUEST_BYTES
from behavioral_analytics.api.collector import MAX_EVENTS_PER_REQUEST
from behavioral_analytics.api.refusals import blank_key, blank_write_keys
from behavioral_analytics.broker import Broker
from behavioral_analytics.privacy import who_first
from behavioral_analytics.segment import encode_original
from behavioral_analytics.store import Store

TRACK = {"type": "track", "userId": "u1", "event": "Signed Up"}
PLAIN = {**WRITE, "Content-Type": "text/plain"}


def _letters(store: Store) -> list[Any]:
    return [d for d in store.dead_letters(100).items if d.reason.startswith("request:")]


def _refused(client: TestClient, route: str, reason: str) -> float:
    registry = client.app.state.api.metrics.registry  # type: ignore[attr-defined]
    value = registry.get_sample_value(
        "ba_api_requests_refused_total", {"route": route, "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"batch": [{"type": "track", "userId": "u1", "event": "A"}', "not_json"),
        (b'{"batch": {}}', "invalid_batch"),
        (b'{"batch": []}', "empty_batch"),
    ],
    ids=["not_json", "invalid_batch", "empty_batch"],
)
def test_an_unreadable_batch_is_kept_as_sent(
    client: TestClient, store: Store, body: bytes, reason: str
) -> None:
    response = client.post("/v1/batch", content=body, headers=WRITE)
    assert response.status_code == 400
    assert response.json()["error"] == reason
    (letter,) = _letters(store)
    assert letter.reason == f"request:{reason}"
    assert letter.source == "collector"
    assert letter.attributes == {"route": "batch"}
    if reason == "not_json":
        assert letter.data == body
        # The standard library's words, where it stops; msgspec's pointed past the token.
        assert response.json()["detail"] == "Expecting ',' delimiter at line 1, column 59"
    else:  # its JSON, less any write key
        assert json.loads(letter.data) == json.loads(body)
    assert letter.detail.startswith(f"the whole request to batch ({len(body)} bytes): ")
    assert _refused(client, "batch", reason) == 1


def test_a_batch_over_the_event_count_is_kept_in_part_without_its_write_key(
    client: TestClient, store: Store
) -> None:
    calls = [{**TRACK, "messageId": f"m{i}"} for i in range(MAX_EVENTS_PER_REQUEST + 1)]
    body = json.dumps({"writeKey": WRITE_KEY, "batch": calls}).encode()
    response = client.post("/v1/batch", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 413
    (letter,) = _letters(store)
    assert letter.reason == "request:too_large"
    assert WRITE_KEY.encode() not in letter.data
    whole = encode_original(who_first({"batch": calls}))
    assert letter.data == whole[:32_768]  # an event's size, not a request's
    assert letter.detail.startswith(
        f"the whole request to batch ({len(body):,} bytes; the first 32,768 of its "
        f"{len(whole):,} kept, who-fields first): "
    )
    assert f"{MAX_EVENTS_PER_REQUEST + 1} events in one request" in letter.detail


def test_an_escaped_write_key_is_not_kept_either(client: TestClient, store: Store) -> None:
    """`"write\\u004bey"` is `writeKey` once decoded: the key it holds is accepted."""
    body = b'{"write\\u004bey": "' + WRITE_KEY.encode() + b'", "batch": {}}'
    assert client.post("/v1/batch", content=body, headers=PLAIN).status_code == 400
    (letter,) = _letters(store)
    assert WRITE_KEY.encode() not in letter.data
    assert json.loads(letter.data) == {"batch": {}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"write\\u004bey": "KEY", "batch": [{"type": "track"',  # no JSON, the name escaped
        b"{'writeKey': 'KEY', 'batch': []}",  # no JSON: single quotes
        b'{"writeKey": "KEY", "batch": {"writeKey": "KEY", "type": "track"}}',  # one call
        b'{"batch": [{"type": "track", "writeKey": "KEY", "x": 1}',  # cut short
        b'{"batch": [], "note": "K\\u0045Y"}',  # the value escaped, elsewhere
    ],
    ids=["escaped_name", "single_quotes", "batch_object", "in_a_call", "escaped_value"],
)
def test_the_accepted_write_key_is_kept_nowhere_in_a_refused_body(
    client: TestClient, store: Store, body: bytes
) -> None:
    key = WRITE_KEY.encode()
    body = body.replace(b"KEY", key).replace(b"K\\u0045Y", key.replace(b"e", b"\\u0065"))
    refused = client.post("/v1/batch", content=body, headers=PLAIN)
    assert refused.status_code == 400
    (letter,) = _letters(store)
    assert key not in letter.data and b"wk_t" not in letter.data


def test_bodies_refused_unread_are_told_apart_by_route_and_size(
    client: TestClient, store: Store
) -> None:
    for path, size in (("/v1/batch", 600_000), ("/v1/events", 600_000), ("/v1/batch", 700_000)):
        headers = {**WRITE, "Content-Length": str(size)}
        assert client.post(path, content=b"x" * size, headers=headers).status_code == 413
    over = f"bytes > {MAX_REQUEST_BYTES}: send the events in smaller requests"
    assert sorted((d.attributes["route"], d.detail) for d in _letters(store)) == [
        ("batch", f"the whole request to batch (not read): request body of 600000 {over}"),
        ("batch", f"the whole request to batch (not read): request body of 700000 {over}"),
        ("events", f"the whole request to events (not read): request body of 600000 {over}"),
    ]


def test_refusals_past_the_rate_limit_are_counted_not_kept(
    tmp_path: Path, broker: Broker, store: Store
) -> None:
    settings = make_settings(tmp_path, rate_limit=2)
    with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as limited:
        for n in range(6):
            body = json.dumps({"batch": {"n": n}}).encode()
            assert limited.post("/v1/batch", content=body, headers=WRITE).status_code == 400
        assert _refused(limited, "batch", "invalid_batch") == 6
    assert 1 <= len(_letters(store)) < 6


def test_a_retried_refusal_is_one_dead_letter(client: TestClient, store: Store) -> None:
    """analytics-node's retries change `sentAt`; the letter's identity leaves it out."""
    for sent_at in ("2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"):
        body = {"batch": {"not": "a list"}, "sentAt": sent_at}
        assert client.post("/v1/batch", json=body, headers=WRITE).status_code == 400
    assert len(_letters(store)) == 1
    assert _refused(client, "batch", "invalid_batch") == 2


def test_a_retried_refusal_holding_an_integer_too_long_to_convert_is_one_dead_letter(
    client: TestClient, store: Store
) -> None:
    """Past 4,300 digits Python's `int` refuses the literal; read as bytes, the body's retries
    (`sentAt` changed) were a dead letter each."""
    digits = "7" * 5000
    for sent_at in ("2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"):
        body = f'{{"batch": {{"x": {digits}}}, "sentAt": "{sent_at}"}}'
        assert client.post("/v1/batch", content=body, headers=PLAIN).status_code == 400
    (letter,) = _letters(store)
    assert letter.data.startswith(f'{{"batch":{{"x":{digits}}},"sentAt":'.encode())


def test_a_body_refused_before_it_is_read_is_kept_empty_with_its_size(
    client: TestClient, store: Store
) -> None:
    events = [recipe_event(i, properties={"pad": "y" * 20_000}) for i in range(30)]
    body = json.dumps(events).encode()
    assert len(body) > MAX_REQUEST_BYTES
    assert client.post("/v1/events", content=body, headers=WRITE).status_code == 413
    (letter,) = _letters(store)
    assert letter.data == b""
    assert letter.attributes == {"route": "events"}
    assert letter.detail == (
        f"the whole request to events (not read): request body of {len(body)} bytes > "
        f"{MAX_REQUEST_BYTES}: send the events in smaller requests"
    )


def test_a_corrupt_gzip_body_is_kept_as_received(client: TestClient, store: Store) -> None:
    body = gzip.compress(json.dumps({"batch": [TRACK]}).encode())[:-6]
    headers = {**WRITE, "Content-Encoding": "gzip"}
    assert client.post("/v1/batch", content=body, headers=headers).status_code == 400
    (letter,) = _letters(store)
    assert letter.reason == "request:invalid_gzip"
    assert letter.detail.endswith("the gzip body is truncated")


def test_a_single_call_over_32_kb_is_kept(client: TestClient, store: Store) -> None:
    call = {**TRACK, "properties": {"blob": "x" * 33_000}}
    assert client.post("/v1/track", json=call, headers=WRITE).status_code == 413
    (letter,) = _letters(store)
    assert letter.attributes == {"route": "track"}
    assert letter.data == encode_original(who_first(call))[:32_768]


def test_forget_finds_a_cut_copy_by_the_who_fields_put_first(
    client: TestClient, store: Store
) -> None:
    """The user id last in a call over 32 KB, its personal data first: the kept prefix still
    names the user, so `forget` deletes it."""
    call = {
        "type": "track",
        "event": "Uploaded",
        "properties": {"email": "kim@example.test", "blob": "x" * 40_000},
        "userId": "kim",
    }
    assert client.post("/v1/track", json=call, headers=WRITE).status_code == 413
    (letter,) = _letters(store)
    assert letter.data.startswith(b'{"userId":"kim",') and b"kim@example.test" in letter.data
    store.forget("kim")
    assert _letters(store) == []


def test_a_refusal_without_an_accepted_key_is_counted_not_kept(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can send a request: one whose key is unknown must not fill the dead letters."""
    events = [recipe_event(i, properties={"pad": "y" * 20_000}) for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="behavioral_analytics"):
        response = client.post("/v1/events", json=events, headers={"X-Write-Key": "nope"})
    assert response.status_code == 413
    assert _letters(store) == []
    assert _refused(client, "events", "too_large") == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert record.__dict__["recorded"] is False
    assert record.__dict__["reason"] == "too_large"


def test_refused_requests_are_not_replayed_by_all(client: TestClient, store: Store) -> None:
    """`dlq replay --all` leaves the collector's letters to their clients."""
    from behavioral_analytics.replay_verdicts import FROM_COLLECTOR, judged_dead_letters
    from behavioral_analytics.settings import load_settings

    assert client.post("/v1/batch", content=b"{", headers=WRITE).status_code == 400
    judged = list(judged_dead_letters(store, 10, load_settings().limits))
    assert [refusal for _, refusal in judged] == [FROM_COLLECTOR]


def test_blank_write_keys_leaves_the_rest_as_it_was() -> None:
    body = b'{"writeKey" : "k\\"ey", "batch": [{"writeKey":"x","a":1}], "b": "writeKey"}'
    assert blank_write_keys(body) == (
        b'{"writeKey" : "", "batch": [{"writeKey":"","a":1}], "b": "writeKey"}'
    )


def test_a_short_write_key_is_blanked_as_a_whole_string_only() -> None:
    """A key that is also part of an id (`demo` in `demo-user-7`) leaves the id whole, so that
    `forget demo-user-7` still finds the letter."""
    body = b'{"userId": "demo-user-7", "k": "demo", \'q\': \'d\\u0065mo\', "demo": 1}'
    assert blank_key(body, "demo") == b'{"userId": "demo-user-7", "k": "", \'q\': \'\', "": 1}'
    assert blank_key(b"writeKey=demo&id=x.demo&v=demo_1", "demo") == (
        b"writeKey=&id=x.demo&v=demo_1"
    )
