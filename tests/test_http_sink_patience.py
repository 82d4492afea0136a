"""The load generator's HTTP sink waits out a collector that stops answering for a while (a
restart), and gives up with a line that says so once its patience is spent."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from behavioral_analytics.loadtest import HttpSink, LoadTestError
from tests.conftest import cli


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(len(json.loads(body)))
        answer = json.dumps({"accepted": [], "rejected": []}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _collector(port: int, received: list[int]) -> Iterator[None]:
    handler = type("Handler", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


EVENTS = [json.dumps({"event_id": f"e{i}", "event_type": "x"}).encode() for i in range(150)]


def test_a_collector_back_within_the_patience_gets_the_batch():
    port = _free_port()
    received: list[int] = []
    sink = HttpSink(f"http://127.0.0.1:{port}", None, timeout_s=5, patience_s=30)
    with _collector(port, received):
        assert sink.send(EVENTS[:10]) == 0

    def restart() -> None:
        time.sleep(1.5)  # the outage
        with _collector(port, received):
            deadline = time.monotonic() + 20
            while sum(received) < 160 and time.monotonic() < deadline:
                time.sleep(0.05)

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        assert sink.send(EVENTS) == 0  # refused for about 1.5 s, then delivered
    finally:
        sink.close()
        thread.join(timeout=30)
    assert received == [10, 100, 50]


def test_a_collector_gone_for_longer_than_the_patience_ends_the_run_in_one_line():
    port = _free_port()
    sink = HttpSink(f"http://127.0.0.1:{port}", None, timeout_s=5, patience_s=1.0)
    began = time.monotonic()
    with pytest.raises(LoadTestError, match=r"has not answered for 1 s: .*refused"):
        sink.send(EVENTS[:5])
    assert time.monotonic() - began < 10


class _RefusesAfterTwenty(_Collector):
    """Takes 20 requests, then answers 401 as a collector whose keys changed."""

    def do_POST(self) -> None:
        if len(self.received) >= 20:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_POST()


def test_a_run_that_stops_part_way_says_what_was_sent_and_how_to_send_it_again():
    received: list[int] = []
    handler = type("Handler", (_RefusesAfterTwenty,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ("generate", "--via", "http", "--url", url, "-n", "2500", "--seed", "5")
        result = cli(*args, "--malformed-rate", "0", check=False)
    finally:
        server.shutdown()
        server.server_close()
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1, err  # a failure part way, not a usage error
    assert err[-2] == "error: the collector refused the write key: set BA_WRITE_KEY", err
    # The whole command line to paste, its start added: the same messages again.
    again = " ".join(("behavioral-analytics", *args, "--malformed-rate", "0", "--start "))
    assert err[-1].startswith(f"2,000 of 2,500 messages were sent; `{again}"), err
    assert err[-1].endswith("` sends the same ones again, and the events stored already count once")


def test_the_sink_says_while_it_waits_and_when_the_collector_is_back():
    port = _free_port()
    received: list[int] = []
    said: list[str | None] = []
    sink = HttpSink(f"http://127.0.0.1:{port}", None, timeout_s=5, patience_s=30)
    sink.on_wait = said.append

    def start_later() -> None:
        time.sleep(1.0)  # the outage
        with _collector(port, received):
            deadline = time.monotonic() + 20
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        assert sink.send(EVENTS[:3]) == 0
    finally:
        sink.close()
        thread.join(timeout=30)
    assert said and said[-1] is None, said
    assert all(
        text.startswith("collector not answering: retrying (") and text.endswith(" s of 30)")
        for text in said[:-1]
    ), said
