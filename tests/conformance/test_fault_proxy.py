"""The fault-injecting proxy itself, against a recording upstream: faults fire where scheduled
and nowhere else, a dropped answer was delivered upstream, injected answers reach nothing,
preflights pass, and the proxy stays bounded. Without these, a conformance test could pass
because the faults never happened."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conformance.fault_proxy import Action, Fault, FaultProxy


class Upstream:
    """Answers every request 200 with `{"seen": N}` and records (method, path, host, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, bytes]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                requests.append((self.command, self.path, self.headers.get("Host", ""), body))
                answer = json.dumps({"seen": len(requests)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                if self.command == "OPTIONS":
                    self.send_header("Access-Control-Allow-Origin", "http://site.test")
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET = do_OPTIONS = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def batch(*events: str) -> bytes:
    return json.dumps(
        {"batch": [{"type": "track", "event": e, "messageId": f"m-{e}"} for e in events]}
    ).encode()


def test_a_dropped_answer_was_delivered_and_the_client_sees_a_failure(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, [Fault("drop", "A")]) as proxy, httpx.Client() as client:
        with pytest.raises(httpx.TransportError):
            client.post(proxy.url + "/v1/batch", content=batch("A", "B"))
        retry = client.post(proxy.url + "/v1/batch", content=batch("A", "B"))
    assert retry.status_code == 200 and retry.json() == {"seen": 2}
    assert [r[3] for r in upstream.requests] == [batch("A", "B")] * 2
    dropped, passed = proxy.exchanges
    assert (dropped.action, dropped.upstream_status, dropped.status) == ("drop", 200, None)
    assert dropped.message_ids() == ["m-A", "m-B"]
    assert (passed.action, passed.status) == ("pass", 200)
    assert proxy.unfired() == []


@pytest.mark.parametrize("action", ["503", "429"])
def test_an_injected_answer_reaches_nothing_upstream(upstream: Upstream, action: Action) -> None:
    with FaultProxy(upstream.url, [Fault(action, "A")]) as proxy:
        answer = httpx.post(
            proxy.url + "/v1/b",
            content=batch("A"),
            headers={"Origin": "http://site.test", "Content-Type": "text/plain"},
        )
    assert answer.status_code == int(action) and upstream.requests == []
    assert set(answer.json()) >= {"code", "message"}
    assert answer.headers["access-control-allow-origin"] == "http://site.test"
    assert "Retry-After" in answer.headers["access-control-expose-headers"]
    assert answer.headers.get("retry-after") == ("1" if action == "429" else None)


def test_faults_fire_once_each_in_order_on_the_requests_they_name(upstream: Upstream) -> None:
    faults = [Fault("503", "B"), Fault("429", "B"), Fault("503", "identify")]
    with FaultProxy(upstream.url, faults) as proxy, httpx.Client() as client:
        statuses = [
            client.post(proxy.url + "/v1/batch", content=body).status_code
            for body in (batch("A"), batch("A", "B"), batch("A", "B"), batch("B"), batch("C"))
        ]
        identify = json.dumps({"type": "identify", "userId": "u", "messageId": "m-i"}).encode()
        statuses.append(client.post(proxy.url + "/v1/identify", content=identify).status_code)
    assert statuses == [200, 503, 429, 200, 200, 503]
    assert [f.fired_on for f in faults] == [1, 2, 5]
    assert len(upstream.requests) == 3


def test_preflights_and_gets_pass_with_the_host_unchanged(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, [Fault("503", "A")]) as proxy, httpx.Client() as client:
        preflight = client.options(
            proxy.url + "/v1/t",
            headers={
                "Origin": "http://site.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,x-retry-count",
            },
        )
        settings = client.get(proxy.url + "/v1/projects/wk/settings")
    assert preflight.status_code == 200 and settings.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://site.test"
    assert preflight.headers["connection"] == "close"
    assert [(m, p, h) for m, p, h, _ in upstream.requests] == [
        ("OPTIONS", "/v1/t", f"127.0.0.1:{proxy.port}"),
        ("GET", "/v1/projects/wk/settings", f"127.0.0.1:{proxy.port}"),
    ]
    assert proxy.unfired() == [proxy.faults[0]]


def test_a_gzip_body_is_read_for_the_schedule_and_forwarded_as_sent(upstream: Upstream) -> None:
    body = gzip.compress(batch("A"))
    with FaultProxy(upstream.url, [Fault("503", "A")]) as proxy, httpx.Client() as client:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        first = client.post(proxy.url + "/v1/batch", content=body, headers=headers)
        second = client.post(proxy.url + "/v1/batch", content=body, headers=headers)
    assert (first.status_code, second.status_code) == (503, 200)
    assert upstream.requests[0][3] == body
    assert proxy.exchanges[0].message_ids() == ["m-A"]


def test_the_proxy_is_bounded(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, max_requests=2) as proxy, httpx.Client() as client:
        statuses = [
            client.post(proxy.url + "/v1/batch", content=batch("A")).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 500]
    assert proxy.overflowed == 1 and len(upstream.requests) == 2
