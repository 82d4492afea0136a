"""The collector's fast path (`prepare_calls` on calls decoded into `SegmentCall`s) against the
slow path (`from_segment` + `prepare` on the generic decoding): whenever the fast path answers,
it answers exactly what the slow path would, event ids and published bytes alike; and it does
answer for the calls real clients send."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from api_helpers import WRITE
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from behavioral_analytics.api import collector
from behavioral_analytics.api.metrics import MAX_EVENT_TYPE_LABELS, OTHER, ApiMetrics
from behavioral_analytics.api.publisher import GroupPublisher
from behavioral_analytics.broker import Broker, BrokerError, OutgoingMessage
from behavioral_analytics.events import Limits, Rejection, parse_message, parse_timestamp
from behavioral_analytics.segment import (
    Outcome,
    Receipt,
    decode_batch,
    decode_call,
    epoch_seconds,
    from_segment,
    prepare,
    prepare_calls,
)

NOW = 1_800_000_000.0  # 2027-01-15


def _ids(prefix: str) -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{prefix}{n:030d}"


def slow_batch(body: bytes, limits: Limits, ordering: bool) -> Outcome | None:
    """What the slow path makes of a /v1/batch body (None: the whole request is refused)."""
    payload = msgspec.json.decode(body)
    batch = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(batch, list):
        return None
    context = payload.get("context")
    receipt = Receipt(NOW)
    sent_at = payload.get("sentAt")
    items = [
        (
            m,
            from_segment(
                m,
                None,
                context if isinstance(context, dict) else None,
                receipt=receipt,
                batch_sent_at=sent_at,
            ),
        )
        for m in batch
    ]
    new_id = _ids("g").__next__
    return Outcome.of(
        prepare(items, received_at=NOW, new_id=new_id, limits=limits), ordering=ordering
    )


def fast_batch(body: bytes, limits: Limits, ordering: bool) -> Outcome | None:
    try:
        decoded = decode_batch(body)
    except msgspec.DecodeError:
        return None
    new_id = _ids("g").__next__
    return prepare_calls(
        decoded.batch,
        None,
        decoded.context,
        receipt=Receipt(NOW),
        batch_sent_at=decoded.sentAt,
        new_id=new_id,
        limits=limits,
        ordering=ordering,
    )


def assert_same(fast: Outcome, slow: Outcome | None) -> None:
    assert slow is not None
    assert slow.rejected == []
    assert fast.ids == slow.ids
    assert fast.types == slow.types
    assert fast.data == slow.data
    assert fast.ordering_keys == slow.ordering_keys


# -- what clients send ------------------------------------------------------------------------

_STAMP = datetime.fromtimestamp(NOW - 60, UTC)


def track(n: int, **extra: Any) -> dict[str, Any]:
    call = {
        "type": "track",
        "messageId": f"m-{n}",
        "userId": f"user_{n % 3}",
        "anonymousId": None,
        "event": "Order Completed",
        "timestamp": (_STAMP + timedelta(microseconds=n)).isoformat().replace("+00:00", "Z"),
        "properties": {"total": 12.5, "items": n, "coupon": None, "gift": False},
    }
    call.update(extra)
    return call


REAL_CALLS = [
    track(1),
    track(2, userId=None, anonymousId="anon-2", messageId=None),
    track(3, context={"ip": "10.0.0.1", "library": {"name": "analytics.js"}}),
    track(4, properties={"context": "mine", "list": [1, 2, {"a": "b"}]}, context={"ip": "1"}),
    track(5, timestamp=None, originalTimestamp="2027-01-15T07:59:00.5+01:00"),
    track(6, timestamp=NOW - 5, integrations={"All": True}, sentAt="2027-01-15T08:00:00Z"),
    {"type": "page", "anonymousId": "a", "name": "Pricing", "context": {"page": {"url": "/p"}}},
    {
        "type": "page",
        "userId": "u",
        "properties": {"url": "/mine"},
        "context": {"page": {"url": "/p"}},
    },
    {"type": "screen", "userId": "u", "name": "Home", "properties": {"n": 1}},
    {"type": "identify", "userId": "u", "traits": {"email": "a@b.test", "plan": "pro"}},
    {"type": "identify", "userId": "u", "context": {"traits": {"email": "c@d.test"}}},
]


@pytest.mark.parametrize("ordering", [False, True])
@pytest.mark.parametrize("batch_context", [None, {"library": {"name": "x"}, "ip": "0"}, "junk"])
def test_the_calls_clients_send_take_the_fast_path(ordering: bool, batch_context: Any) -> None:
    body = msgspec.json.encode({"batch": REAL_CALLS, "context": batch_context})
    fast = fast_batch(body, Limits(), ordering)
    assert fast is not None
    assert_same(fast, slow_batch(body, Limits(), ordering))
    assert len(fast.ids) == len(REAL_CALLS)


def test_what_the_fast_path_publishes_the_worker_reads_back() -> None:
    body = msgspec.json.encode({"batch": REAL_CALLS})
    fast = fast_batch(body, Limits(), False)
    assert fast is not None
    for event_id, data in zip(fast.ids, fast.data, strict=True):
        event = parse_message(data, message_id="other", received_at=NOW + 100)
        assert not isinstance(event, Rejection), event
        assert event.event_id == event_id
        assert event.received_at == NOW


@pytest.mark.parametrize(
    "bad",
    [
        track(1, userId=""),
        track(1, userId=None),
        track(1, userId=42),  # the slow path accepts it as "42"
        track(1, messageId="a\x00b"),
        track(1, event=None),
        track(1, event=" "),
        track(1, timestamp="2027-01-15T08:00:00"),
        track(1, timestamp="2026-01-01T00:00:00Z"),
        track(1, timestamp=NOW * 1000),  # milliseconds: the slow path reads them
        track(1, properties={"deep": "x" * 9000}),
        track(1, properties=[1, 2]),
        track(1, context=5),
        {"type": "alias", "userId": "u"},
        {"type": "page", "userId": "u", "properties": "x"},
    ],
)
def test_one_unusual_call_sends_the_request_to_the_slow_path(bad: dict[str, Any]) -> None:
    body = msgspec.json.encode({"batch": [track(0), bad]})
    assert fast_batch(body, Limits(), False) is None


def test_an_event_over_the_size_limit_goes_to_the_slow_path() -> None:
    body = msgspec.json.encode({"batch": [track(1, properties={"p": "x" * 6000})]})
    limits = Limits(max_message_bytes=5000)
    assert fast_batch(body, limits, False) is None
    slow = slow_batch(body, limits, False)
    assert slow is not None
    assert [r.reason for _, r, _ in slow.rejected] == ["too_large"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"batch": [{"type": "track", "userId": "a", "userId": "b", "event": "e"}]}',
        b'{"batch": [{"type": "track", "\\u0075serId": "esc", "event": "e"}]}',
        b'{"batch": [], "batch": [{"type": "track", "userId": "u", "event": "e"}]}',
        b'{"context": {"ip": "1"}, "batch": [{"type": "track", "userId": "u", "event": "e"}]}',
    ],
)
def test_json_corner_cases_decode_alike(body: bytes) -> None:
    fast = fast_batch(body, Limits(), True)
    assert fast is not None
    assert_same(fast, slow_batch(body, Limits(), True))


# -- anything else: the fast path answers as the slow path or not at all ---------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
_ids_or_junk = st.one_of(
    st.none(),
    st.from_regex(r"[a-z0-9_\-]{1,12}", fullmatch=True),
    st.text(max_size=6),
    st.sampled_from(["", " ", "x" * 257, "x" * 256, "a\nb", "\u00e9t\u00e9"]),
    st.integers(-3, 3),
    st.booleans(),
)
_moments = st.datetimes(
    min_value=datetime(2026, 11, 1),  # naive bounds; the zones below
    max_value=datetime(2027, 3, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
_timestamps = st.one_of(
    st.none(),
    _moments.map(lambda d: d.isoformat()),
    _moments.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    _moments.map(lambda d: d.isoformat().replace("+00:00", "z") + " "),
    _moments.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f123Z")),
    _moments.map(lambda d: d.replace(tzinfo=None).isoformat()),
    _moments.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:60") + d.isoformat()[-6:]),
    st.floats(min_value=NOW - 40 * 86400, max_value=NOW + 7200),
    st.integers(min_value=int(NOW - 40 * 86400) * 1000, max_value=int(NOW) * 1000),
    st.integers(min_value=int(NOW - 40 * 86400), max_value=int(NOW + 7200)),
    st.text(max_size=8),
    st.booleans(),
)
_flat = st.dictionaries(
    st.text(max_size=6),
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    max_size=4,
)
_properties = st.one_of(st.none(), _flat, _json, st.just({"s": "x" * 8193}))
_contexts = st.one_of(
    st.none(),
    st.just({}),
    st.fixed_dictionaries(
        {}, optional={"ip": st.text(max_size=4), "page": _json, "traits": _json, "library": _json}
    ),
    st.integers(),
)
_calls = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "page", "screen", "identify", "alias", "Track", 3]),
        "messageId": _ids_or_junk,
        "userId": _ids_or_junk,
        "anonymousId": _ids_or_junk,
        "event": st.one_of(st.sampled_from(["Order Completed", "", " ", "x" * 129]), _ids_or_junk),
        "name": st.one_of(st.none(), st.text(max_size=6), st.integers()),
        "timestamp": _timestamps,
        "originalTimestamp": _timestamps,
        "properties": _properties,
        "traits": _properties,
        "context": _contexts,
        "sentAt": _json,
    },
)


def _mostly(valid: st.SearchStrategy[Any], junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 9).flatmap(lambda n: junk if n == 0 else valid)


_names = st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)
_recent = st.datetimes(
    min_value=datetime(2026, 12, 17),  # within 30 days before NOW and 1 h after
    max_value=datetime(2027, 1, 15, 8, 59),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]),
)
_valid_timestamps = st.one_of(
    st.none(),
    _recent.map(lambda d: d.isoformat()),
    _recent.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.floats(min_value=NOW - 29 * 86400, max_value=NOW + 3500),
)
_valid_properties = st.one_of(
    st.none(),
    st.dictionaries(_names, st.none() | st.booleans() | st.integers() | st.text(max_size=8)),
    st.dictionaries(_names, _json, max_size=3),
)
# Mostly well-formed calls (each field valid nine times in ten), so that the fast path answers
# often enough for the comparison to mean something.
_likely_calls = st.fixed_dictionaries(
    {
        "type": _mostly(
            st.sampled_from(["track", "page", "screen", "identify"]),
            st.sampled_from(["alias", "Track", 3]),
        ),
        "messageId": _mostly(st.none() | _names, _ids_or_junk),
        "userId": _mostly(_names, _ids_or_junk),
        "anonymousId": _mostly(st.none() | _names, _ids_or_junk),
        "event": _mostly(_names, st.sampled_from(["", " ", "x" * 129, "a\tb", None, 7])),
        "timestamp": _mostly(_valid_timestamps, _timestamps),
        "properties": _mostly(_valid_properties, _properties),
    },
    optional={
        "context": _mostly(st.dictionaries(_names, _json, max_size=2), _contexts),
        "name": _mostly(_names, st.integers()),
        "traits": _mostly(_valid_properties, _properties),
        "originalTimestamp": _timestamps,
        "sentAt": _json,
    },
)


@pytest.mark.slow
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_likely_calls, min_size=1, max_size=4),
    st.one_of(st.none(), _contexts),
    st.booleans(),
)
def test_the_fast_path_answers_as_the_slow_path_or_not_at_all(
    calls: list[dict[str, Any]], batch_context: Any, ordering: bool
) -> None:
    body = msgspec.json.encode({"batch": calls, "context": batch_context})
    limits = Limits(max_message_bytes=2000)
    fast = fast_batch(body, limits, ordering)
    if fast is not None:
        assert_same(fast, slow_batch(body, limits, ordering))


@settings(max_examples=300)
@given(_likely_calls, st.sampled_from(["track", "page", "screen", "identify"]))
def test_single_calls_too(call: dict[str, Any], kind: str) -> None:
    body = msgspec.json.encode(call)
    fast = prepare_calls([decode_call(body)], kind, receipt=Receipt(NOW), new_id=_ids("g").__next__)
    if fast is not None:
        message = msgspec.json.decode(body)
        items = [(message, from_segment(message, kind, receipt=Receipt(NOW)))]
        slow = Outcome.of(prepare(items, received_at=NOW, new_id=_ids("g").__next__))
        assert_same(fast, slow)


@given(st.one_of(st.text(max_size=40), _timestamps.filter(lambda t: isinstance(t, str))))
def test_epoch_seconds_reads_strings_as_validation_does(text: str) -> None:
    got = epoch_seconds(text)
    try:
        expected: float | None = parse_timestamp(text)
    except Exception:
        expected = None
    if isinstance(got, float):
        assert got == expected
    else:
        assert got == text
        assert expected is None or not 0 <= expected < 1e11


# -- through HTTP ---------------------------------------------------------------------------


def test_a_valid_batch_is_published_by_the_fast_path(
    client: TestClient, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_slow_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(collector, "prepare", no_slow_path)
    calls = [track(n, timestamp=datetime.now(UTC).isoformat()) for n in range(3)]
    response = client.post("/v1/batch", json={"batch": calls}, headers=WRITE)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": ["m-0", "m-1", "m-2"], "rejected": []}
    published = broker.pull(10, 0.5)
    assert sorted(json.loads(d.data)["event_id"] for d in published) == ["m-0", "m-1", "m-2"]
    response = client.post("/v1/track", json=track(9, timestamp=None), headers=WRITE)
    assert response.status_code == 200, response.text


def test_a_batch_with_one_bad_call_is_answered_per_event(client: TestClient) -> None:
    calls = [track(1, timestamp=None), track(2, timestamp=None, userId=None)]
    response = client.post("/v1/batch", json={"batch": calls}, headers=WRITE)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == ["m-1"]
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "missing_field:user_id")]


# -- the publisher's asyncio path and the metrics -----------------------------------------


class _GatedBroker:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail = False

    def publish(self, messages: list[Any]) -> list[str]:
        self.entered.set()
        self.gate.wait(5)
        if self.fail:
            raise BrokerError("down")
        self.calls.append(len(messages))
        return [f"id{len(self.calls)}-{i}" for i in range(len(messages))]


def test_concurrent_requests_share_a_publish_and_each_gets_its_ids() -> None:
    broker = _GatedBroker()
    publisher = GroupPublisher(broker)  # type: ignore[arg-type]
    message = OutgoingMessage(data=b"{}")

    async def main() -> list[list[str]]:
        first = asyncio.ensure_future(publisher.publish([message]))
        deadline = time.monotonic() + 5
        while not broker.entered.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # until the first publish is in flight (held by the gate)
        others = [asyncio.ensure_future(publisher.publish([message] * n)) for n in (2, 3)]
        await asyncio.sleep(0)  # both queued
        broker.gate.set()
        return await asyncio.gather(first, *others)

    try:
        results = asyncio.run(main())
    finally:
        publisher.close()
    assert results == [["id1-0"], ["id2-0", "id2-1"], ["id2-2", "id2-3", "id2-4"]]
    assert broker.calls == [1, 5]


def test_a_failed_publish_fails_every_waiting_request() -> None:
    broker = _GatedBroker()
    broker.fail = True
    broker.gate.set()
    publisher = GroupPublisher(broker)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        tasks = [publisher.publish([OutgoingMessage(data=b"{}")]) for _ in range(3)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        publisher.close()
    assert all(isinstance(r, BrokerError) for r in results)


def test_event_type_labels_stay_bounded() -> None:
    metrics = ApiMetrics()
    from collections import Counter

    for n in range(MAX_EVENT_TYPE_LABELS + 20):
        metrics.record_ingest(Counter({f"type_{n}": 2}), Counter())
    metrics.record_ingest(Counter({"type_0": 1, "type_119": 1}), Counter())
    value = metrics.registry.get_sample_value
    assert value("ba_api_events_accepted_total", {"event_type": "type_0"}) == 3
    assert value("ba_api_events_accepted_total", {"event_type": OTHER}) == 20 * 2 + 1
    assert value("ba_api_events_accepted_total", {"event_type": "type_119"}) is None
