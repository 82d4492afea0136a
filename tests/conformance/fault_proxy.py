"""A loopback HTTP proxy that injects the faults client libraries must survive.

It stands between a client library and the collector and, on a deterministic schedule, either
forwards a request and drops the answer (the collector has the events, the client sees a
failure and retries a delivered request), or answers `503` or `429` with `Retry-After` itself
(nothing delivered). A fault names the event or page/screen name of a message it waits for and
fires on the first POST carrying it; each fault fires once, in schedule order per name, so
retries of one request can meet several faults in a row. CORS preflights and GETs always pass.

Every request gets its own connection (`Connection: close` on every answer): Chromium silently
resends a request whose *reused* connection closed without an answer, so with keep-alive the
browser library would never see a dropped answer. The Host header is passed through unchanged,
as a reverse proxy does, so that answers naming the collector's address name the proxy.

Every exchange is logged with the messages it carried and what the client got, so a failing
test can say which request a library sent and what the collector answered. The proxy is bounded:
after `max_requests` requests it answers `500` and records the overflow.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

__all__ = ["Action", "Exchange", "Fault", "FaultProxy", "messages_in"]

Action = Literal["drop", "503", "429"]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
RETRY_AFTER_S = 1
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


@dataclass(slots=True)
class Fault:
    """Answer the first POST that carries a message named `marker` (its `event` or `name`, or
    its `type` for identify/alias/group) with `action` instead of the collector's answer."""

    action: Action
    marker: str
    fired_on: int | None = None  # the index of the exchange it answered


@dataclass(slots=True)
class Exchange:
    """One request through the proxy: what the client sent, and what each side answered.

    `status`/`answer` is what the client received (None when the answer was dropped);
    `upstream_status`/`upstream_answer` what the collector answered (None when not forwarded).
    """

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: str
    messages: list[dict[str, Any]]
    action: str = "pass"
    status: int | None = None
    answer: str = ""
    upstream_status: int | None = None
    upstream_answer: str = ""

    def message_ids(self) -> list[str]:
        return [m["messageId"] for m in self.messages if isinstance(m.get("messageId"), str)]

    def describe(self, limit: int = 400) -> str:
        """One line for an assertion message: the request, and the answers."""
        ctype = self.headers.get("content-type", "-")
        retry = self.headers.get("x-retry-count")
        sent = f"#{self.index} {self.method} {self.path} [{ctype}]" + (
            f" X-Retry-Count: {retry}" if retry else ""
        )
        if self.action == "pass":
            return f"{sent} → {self.status} {self.answer[:limit]}"
        if self.action == "drop":
            return (
                f"{sent} → collector answered {self.upstream_status} "
                f"{self.upstream_answer[:limit]}; the answer was dropped"
            )
        return f"{sent} → injected {self.status}"


def messages_in(body: str) -> list[dict[str, Any]]:
    """The Segment messages of a request body: the message itself, or a batch's `batch`."""
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        return [m for m in payload["batch"] if isinstance(m, dict)]
    return [payload] if isinstance(payload, dict) else []


def _labels(message: dict[str, Any]) -> set[str]:
    return {
        value
        for value in (message.get("event"), message.get("name"), message.get("type"))
        if isinstance(value, str)
    }


def _decoded(body: bytes, encoding: str) -> str:
    if encoding == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return "<invalid gzip>"
    return body.decode("utf-8", "replace")


class _BadRequest(Exception):
    pass


class FaultProxy:
    """The proxy, served from a thread of its own on 127.0.0.1. `start()`, then send requests
    to `url`; `stop()` closes it. `exchanges` and `faults` are read after (or while) it runs."""

    def __init__(
        self,
        upstream: str,
        faults: Iterable[Fault] = (),
        *,
        max_requests: int = 400,
        upstream_timeout_s: float = 30.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = list(faults)
        self.max_requests = max_requests
        self.upstream_timeout_s = upstream_timeout_s
        self.overflowed = 0
        self._exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def unfired(self) -> list[Fault]:
        with self._lock:
            return [fault for fault in self.faults if fault.fired_on is None]

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.upstream_timeout_s)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._client is not None:
            await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            await self._answer(writer, *request)
        except (_BadRequest, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await _write(writer, 400, {"content-type": "text/plain"}, b"bad request")
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        lower = {name.lower(): value for name, value in headers}
        text = _decoded(body, lower.get("content-encoding", "").lower())
        with self._lock:
            exchange = Exchange(
                len(self._exchanges), method, target, lower, text, messages_in(text)
            )
            if len(self._exchanges) >= self.max_requests:
                self.overflowed += 1
                fault = None
                exchange.action = "over budget"
            else:
                self._exchanges.append(exchange)
                fault = self._fault_for(exchange) if method == "POST" else None
        if exchange.action == "over budget":
            await _write(writer, 500, {}, b'{"code":"proxy_budget","message":"too many requests"}')
            return
        if fault is not None and fault.action in ("503", "429"):
            await self._injected(writer, exchange, fault.action)
            return
        assert self._client is not None
        try:
            response = await self._client.request(
                method,
                self.upstream + target,
                headers=[(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP],
                content=body,
            )
        except httpx.HTTPError as exc:
            exchange.upstream_answer = f"<{type(exc).__name__}: {exc}>"
            await _write(writer, 502, {}, b'{"code":"bad_gateway","message":"upstream failed"}')
            exchange.status, exchange.answer = 502, "upstream failed"
            return
        exchange.upstream_status = response.status_code
        exchange.upstream_answer = response.text
        if fault is not None:  # "drop": delivered, but the client never hears of it
            writer.transport.abort()
            return
        answer_headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-encoding"
        }
        await _write(writer, response.status_code, answer_headers, response.content)
        exchange.status, exchange.answer = response.status_code, response.text

    def _fault_for(self, exchange: Exchange) -> Fault | None:
        labels = (
            set().union(*(_labels(m) for m in exchange.messages)) if exchange.messages else set()
        )
        for fault in self.faults:
            if fault.fired_on is None and fault.marker in labels:
                fault.fired_on = exchange.index
                exchange.action = fault.action
                return fault
        return None

    async def _injected(
        self, writer: asyncio.StreamWriter, exchange: Exchange, action: str
    ) -> None:
        status = int(action)
        headers = {"content-type": "application/json"}
        code = "unavailable" if status == 503 else "rate_limited"
        if status == 429:
            headers["retry-after"] = str(RETRY_AFTER_S)
        origin = exchange.headers.get("origin")
        if origin:  # what the collector's CORS layer adds to its own answers
            headers["access-control-allow-origin"] = origin
            headers["access-control-expose-headers"] = "Retry-After"
            headers["vary"] = "Origin"
        body = json.dumps({"code": code, "message": "injected by the conformance proxy"})
        await _write(writer, status, headers, body.encode())
        exchange.status, exchange.answer = status, body


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None  # a connection opened and closed without a request
        raise
    if len(head) > MAX_HEAD_BYTES:
        raise _BadRequest("head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _BadRequest(lines[0])
    method, target, _ = parts
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    lower = {name.lower(): value for name, value in headers}
    if "chunked" in lower.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        length = int(lower.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            raise _BadRequest("body too large")
        body = await reader.readexactly(length)
    return method, target, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise _BadRequest("body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _write(
    writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"content-length: {len(body)}", "connection: close", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1") + body)
    await writer.drain()


_REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
