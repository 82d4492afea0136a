"""Where a load test sends its traffic, and how fast: the broker or the HTTP collector (`Sink`),
paced on a monotonic clock (`Pacer`)."""

import http.client
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from behavioral_analytics.broker import Broker, OutgoingMessage

BROKER_BATCH = 1000  # messages per publish call
HTTP_BATCH = 100  # events per POST /v1/events


class LoadTestError(Exception):
    """The load test could not run (not: it ran and found a problem). One line, for a user."""


class Sink(Protocol):
    def send(self, batch: Sequence[bytes]) -> int:
        """Send the messages; return how many were rejected on the way (by a collector)."""
        ...

    def close(self) -> None: ...


class BrokerSink:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def send(self, batch: Sequence[bytes]) -> int:
        for start in range(0, len(batch), BROKER_BATCH):
            chunk = batch[start : start + BROKER_BATCH]
            self.broker.publish([OutgoingMessage(data) for data in chunk])
        return 0

    def close(self) -> None:
        self.broker.close()


class HttpSink:
    """POST /v1/events with JSON lists of up to 100 events; bodies that are not JSON go alone,
    as they are. Honours 429/503 Retry-After; keeps one connection open. A request the
    collector does not answer (refused, reset, timed out after `timeout_s`) or keeps refusing
    with 429/503 is retried with backoff for up to `patience_s` seconds (a restart of the
    collector fits), then `send` raises LoadTestError; while it waits, `on_wait` (when set) is
    told why and for how long so far, and told None once the collector answers again."""

    def __init__(
        self,
        url: str,
        write_key: str | None,
        timeout_s: float = 30.0,
        patience_s: float = 60.0,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadTestError(f"--url {url!r} is not an http(s) URL")
        self.parts = parts
        self.path = parts.path.rstrip("/") + "/v1/events"
        self.headers = {"Content-Type": "application/json"}
        if write_key:
            self.headers["X-Write-Key"] = write_key
        self.timeout_s = timeout_s
        self.patience_s = patience_s
        self.on_wait: Callable[[str | None], None] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self.statuses: Counter[int] = Counter()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self.parts.hostname or "", self.parts.port, timeout=self.timeout_s)
        return self._conn

    def send(self, batch: Sequence[bytes]) -> int:
        rejected = 0
        objects: list[bytes] = []
        for data in batch:
            try:
                json.loads(data)
            except ValueError:
                rejected += self._post(data, 1)
            else:
                objects.append(data)
        for start in range(0, len(objects), HTTP_BATCH):
            chunk = objects[start : start + HTTP_BATCH]
            rejected += self._post(b"[" + b",".join(chunk) + b"]", len(chunk))
        return rejected

    def _post(self, body: bytes, count: int) -> int:
        began = time.monotonic()
        deadline = began + self.patience_s
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if attempt and self.on_wait is not None:
                self.on_wait(
                    f"collector not answering: retrying ({time.monotonic() - began:.0f} s "
                    f"of {self.patience_s:g})"
                )
            try:
                conn = self._connection()
                conn.request("POST", self.path, body=body, headers=self.headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if left <= 0:
                    raise LoadTestError(
                        f"the collector at {self.parts.netloc} has not answered for "
                        f"{self.patience_s:g} s: {exc}"
                    ) from exc
                time.sleep(min(0.2 * 2**attempt, 5.0, left))
                attempt += 1
                continue
            if attempt and self.on_wait is not None:
                self.on_wait(None)
            attempt = 0
            self.statuses[response.status] += 1
            if response.status in (429, 503):
                if left <= 0:
                    raise LoadTestError(
                        f"POST {self.path}: still answered {response.status} after "
                        f"{self.patience_s:g} s of retries"
                    )
                retry = response.getheader("Retry-After") or "1"
                wait = float(retry) if retry.replace(".", "", 1).isdigit() else 1.0
                time.sleep(min(wait, 10.0, left))
                continue
            if response.status == 401:
                raise LoadTestError("the collector refused the write key: set BA_WRITE_KEY")
            if response.status in (202, 200, 400):
                try:
                    document = json.loads(payload)
                except ValueError:
                    document = None
                if isinstance(document, dict) and isinstance(document.get("rejected"), list):
                    return len(document["rejected"])
                return count if response.status == 400 else 0
            # One line, whatever answered: a web server's HTML page is many.
            text = " ".join(payload[:200].decode(errors="replace").split())
            raise LoadTestError(
                f"POST {self.path} answered {response.status} (is the collector at this "
                f"address?): {text}"
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- pacing ---------------------------------------------------------------------------------


class Pacer:
    """Splits `total` messages into small batches due at `rate` per second on a monotonic
    clock. Behind schedule, it sends what is due at once (up to `max_batch`) without sleeping."""

    def __init__(
        self,
        total: int,
        rate: float,
        *,
        interval_s: float = 0.05,
        max_batch: int = BROKER_BATCH,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.total = total
        self.rate = rate
        self.interval_s = interval_s
        self.max_batch = max_batch
        self.clock = clock
        self.sleep = sleep

    def batches(self) -> Iterator[tuple[int, int]]:
        """(start, end) index ranges, each yielded when it is due."""
        sent = 0
        if self.rate <= 0 or math.isinf(self.rate):
            while sent < self.total:
                end = min(self.total, sent + self.max_batch)
                yield sent, end
                sent = end
            return
        step = max(1, min(self.max_batch, round(self.rate * self.interval_s)))
        began = self.clock()
        while sent < self.total:
            end = min(self.total, sent + step)
            due = began + end / self.rate  # the last message of this batch is due then
            wait = due - self.clock()
            if wait > 0:
                self.sleep(wait)
            else:
                late = min(self.total, int((self.clock() - began) * self.rate + 1e-6))
                end = max(end, min(late, sent + self.max_batch))
            yield sent, end
            sent = end
