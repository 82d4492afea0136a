"""The API's helpers: rate limiter, single-flight cache, loopback check, group publisher, the
write key of a body."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from behavioral_analytics.api.auth import is_loopback
from behavioral_analytics.api.bodies import body_write_key
from behavioral_analytics.api.cache import TTLCache
from behavioral_analytics.api.publisher import GroupPublisher
from behavioral_analytics.api.ratelimit import RateLimiter, bucket_of
from behavioral_analytics.broker import BrokerError, OutgoingMessage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_a_burst_then_waits_for_the_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    assert limiter.acquire("k", 25) == 0  # bucket had 10: admitted, 15 in debt
    wait = limiter.acquire("k", 1)
    assert wait == pytest.approx(1.5, abs=0.01)
    assert limiter.retry_after_header(wait) == "2"
    assert limiter.acquire("other", 1) == 0  # per key
    clock.now += 1.6
    assert limiter.acquire("k", 1) == 0


def test_token_bucket_holds_the_long_run_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock)
    admitted = 0
    for _ in range(1000):  # 10 s of requests of 5 events every 10 ms (500/s offered)
        if limiter.acquire("k", 5) == 0:
            admitted += 5
        clock.now += 0.01
    assert 1000 <= admitted <= 1100 + 5


def test_a_full_table_charges_new_addresses_to_the_shared_bucket() -> None:
    """Many addresses can neither grow the table past `max_keys` nor escape the limit: a new
    one, while every bucket is in debt, is charged to the key's shared bucket."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, max_keys=100)
    shared = bucket_of("k", None)
    for n in range(1000):
        limiter.acquire(bucket_of("k", f"2001:db8:{n:x}::1"), 50, shared)
    assert len(limiter._buckets) <= 101
    assert limiter.acquire(bucket_of("k", "203.0.113.9"), 1, shared) > 0  # the shared, in debt
    clock.now += 60.0  # every bucket refilled: a new address gets its own again
    assert limiter.acquire(bucket_of("k", "203.0.113.9"), 1, shared) == 0


def test_ipv6_addresses_of_one_network_share_a_bucket() -> None:
    assert bucket_of("k", "2001:db8:1:2::5") == bucket_of("k", "2001:db8:1:2:ffff::1")
    assert bucket_of("k", "2001:db8:1:3::5") != bucket_of("k", "2001:db8:1:2::5")
    assert bucket_of("k", "203.0.113.7") != bucket_of("k", "203.0.113.8")
    assert bucket_of("k", None) == bucket_of("k", "") and bucket_of("k", "x:y") == "k\x1fx:y"


def test_cache_serves_within_the_ttl_and_reloads_after() -> None:
    clock = FakeClock()
    cache = TTLCache(1.0, clock=clock)
    calls = []
    load = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert cache.get("k", load) == 1
    assert cache.get("k", load) == 1
    clock.now += 1.01
    assert cache.get("k", load) == 2


def test_cache_single_flight_shares_one_load_among_concurrent_callers() -> None:
    cache = TTLCache(1.0)
    calls = 0
    started = threading.Event()

    def slow() -> int:
        nonlocal calls
        calls += 1
        started.set()
        time.sleep(0.2)
        return 42

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == [42] * 10
    assert calls == 1


def test_cache_shares_errors_but_does_not_keep_them() -> None:
    cache = TTLCache(10.0)

    def boom() -> int:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        cache.get("k", boom)
    assert cache.get("k", lambda: 7) == 7


def test_cache_stays_bounded() -> None:
    cache = TTLCache(60.0, max_entries=10)
    for i in range(100):
        cache.get(i, lambda: 0)
    assert len(cache._entries) <= 10


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.4", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


class _RecordingBroker:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()

    def publish(self, messages: list[Any]) -> list[str]:
        self.gate.wait(5)
        self.calls.append(len(messages))
        return [f"id{len(self.calls)}-{i}" for i in range(len(messages))]


def test_group_publisher_folds_waiting_requests_into_one_publish() -> None:
    broker = _RecordingBroker()
    publisher = GroupPublisher(broker)  # type: ignore[arg-type]
    message = OutgoingMessage(data=b"{}")
    first = publisher.submit([message])
    time.sleep(0.05)  # the first publish is in flight (held by the gate)
    waiting = [publisher.submit([message] * n) for n in (2, 3)]
    broker.gate.set()
    assert first.result(5) == ["id1-0"]
    assert waiting[0].result(5) == ["id2-0", "id2-1"]
    assert waiting[1].result(5) == ["id2-2", "id2-3", "id2-4"]
    assert broker.calls == [1, 5]
    publisher.close()
    assert publisher.submit([message]).result(5) == ["id3-0"]  # restarts after close
    publisher.close()


def test_group_publisher_fails_every_request_of_a_failed_publish() -> None:
    class Down:
        def publish(self, messages: list[Any]) -> list[str]:
            raise BrokerError("down")

    publisher = GroupPublisher(Down())  # type: ignore[arg-type]
    future = publisher.submit([OutgoingMessage(data=b"{}")])
    with pytest.raises(BrokerError):
        future.result(5)
    publisher.close()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"writeKey": "k", "batch": [{"writeKey": "other"}]}', "k"),
        (b'{"batch": [{"writeKey": "first"}, {"writeKey": "second"}]}', "first"),
        (b'{"writeKey": null, "batch": [{"writeKey": "first"}]}', "first"),
        (b'{"type": "track", "writeKey": 5}', 5),  # the key check refuses it, not this
        (b'{"writeKey": "k", "properties": {"x": NaN}}', "k"),  # a lenient reader's JSON
        (b'{"batch": [{"writeKey": "k", "q": "\\ud83c"}]}', "k"),
        (b'{"batch": {"writeKey": "k"}}', None),  # one call where a list belongs
        (b'{"batch": [1, {"writeKey": "k"}]}', None),
        (b'{"batch": []}', None),
        (b'{"batch": null}', None),
        (b'[{"writeKey": "k"}]', None),
        (b'{"writeKey": "k"', None),
        (b'{"writeKey": "k", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", None),  # too deep
    ],
)
def test_the_write_key_of_a_body_is_read_from_the_call_or_the_first_of_a_batch(
    body: bytes, key: object
) -> None:
    assert body_write_key(body) == key
