"""Shared helpers for the GCP tests."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from behavioral_analytics.broker import Broker, OutgoingMessage
from behavioral_analytics.events import Event, validate_event
from behavioral_analytics.store import TransientStoreError

BASE_TS = 1_764_320_000.123  # 2025-11-28 08:53 UTC


def recipe_payload(n: int, *, user: int | None = None, ts: float | None = None) -> dict[str, Any]:
    """A message shaped exactly like the seed recipe's generator output."""
    types = ("page_view", "button_click", "purchase", "search", "signup", "login")
    event_type = types[n % len(types)]
    properties: dict[str, Any] = {
        "page_url": f"/page/{n % 20}",
        "referrer": "google.com",
        "device_type": "mobile",
        "user_agent": "BehavioralAnalytics/1.0",
    }
    if event_type == "purchase":
        properties.update(amount=99.5, currency="USD")
    return {
        "event_id": f"evt_{100000 + n % 900000}",
        "user_id": f"user_{user if user is not None else n % 100 + 1}",
        "event_type": event_type,
        "timestamp": ts if ts is not None else BASE_TS + n * 0.5,
        "session_id": f"sess_{1000 + n % 9000}",
        "properties": properties,
    }


def event(payload: dict[str, Any], received_at: float | None = None) -> Event:
    parsed = validate_event(
        payload,
        message_id=f"msg-{payload.get('event_id')}",
        received_at=received_at if received_at is not None else payload["timestamp"] + 1.0,
    )
    assert isinstance(parsed, Event), parsed
    return parsed


def data(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class Relay:
    """A TCP relay from a loopback port of its own to `upstream` (host:port), so that a test can
    make a client's host stop answering while the session's emulator goes on serving the other
    tests: `refuse` closes the port and the connections through it (the host then refuses
    connections, as a stopped emulator's does), `hang` keeps them open and forwards nothing more
    (a host that no longer answers), `restore` listens on the same port again and forwards."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._forwarding = True
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._sockets.append(client)
                if not self._forwarding:
                    continue  # held open, never answered
                upstream = socket.create_connection(self._upstream)
                self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if self._forwarding:
                    sink.sendall(chunk)
        except OSError:  # closed
            return

    def hang(self) -> None:
        """Keep every connection open, forward nothing more."""
        self._forwarding = False

    def refuse(self) -> None:
        """Close the port and every connection through it."""
        self._forwarding = False
        with contextlib.suppress(OSError):  # wakes the accepting thread, stops listening
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # not connected
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        """After `refuse`: listen on the same port again and forward new connections."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._forwarding = True
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()


def gives_up_with_one_line(request: Callable[[], object], where: str, limit_s: float) -> str:
    """`request()` raises, within `limit_s` seconds, a one-line TransientStoreError naming
    `where` the database is and saying it is unreachable; returns the line."""
    started = time.monotonic()
    with pytest.raises(TransientStoreError) as caught:
        request()
    took_s = time.monotonic() - started
    message = str(caught.value)
    assert took_s < limit_s, (took_s, message)
    assert "\n" not in message, message
    assert where in message and "unreachable" in message, message
    assert "None" not in message, message
    return message


class LogLines(logging.Handler):
    """The package's log records, kept."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def starting(self, *prefixes: str) -> list[logging.LogRecord]:
        """The records whose message starts with one of `prefixes`."""
        return [r for r in list(self.records) if r.getMessage().startswith(prefixes)]


@contextlib.contextmanager
def kept_log_lines() -> Iterator[LogLines]:
    """The package's INFO and higher records, kept while inside."""
    logger = logging.getLogger("behavioral_analytics")
    handler, level = LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def publish_recipe(broker: Broker, first: int, count: int) -> None:
    """Publish the recipe's events `first` … `first + count - 1`, dated a minute ago."""
    now = time.time()
    broker.publish(
        [OutgoingMessage(data(recipe_payload(n, ts=now - 60))) for n in range(first, first + count)]
    )


@contextlib.contextmanager
def worker_through_relay(
    settings: Any, store: Any, pubsub_host: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Broker, Relay, Broker]]:
    """A worker running on `store` while inside, its broker reaching the Pub/Sub emulator at
    `pubsub_host` through a `Relay` (`PUBSUB_EMULATOR_HOST` is the relay's for the rest of the
    test): yields a publisher straight to the emulator (topic and subscription made), the
    relay and the worker's broker; stops the worker and closes both on the way out."""
    from behavioral_analytics.wiring import build_broker, worker_options
    from behavioral_analytics.worker import Worker

    publisher = build_broker(settings)
    publisher.init()
    relay = Relay(pubsub_host)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", relay.host)
    broker = build_broker(settings)
    options = worker_options(settings, flush_interval_s=0.2, drain_interval_s=1.0)
    stop = threading.Event()
    thread = threading.Thread(
        target=Worker(broker, store, options=options).run, args=(stop,), daemon=True
    )
    thread.start()
    try:
        yield publisher, relay, broker
    finally:
        stop.set()
        thread.join(timeout=30)
        broker.close(timeout=2)
        publisher.close(timeout=2)
        relay.refuse()
    assert not thread.is_alive(), "the worker did not stop within 30 s"
