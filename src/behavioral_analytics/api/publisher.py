"""Group commit for the collector: one thread publishes for all requests.

Requests hand their messages to the publisher thread and wait for the broker's confirmation.
Requests that arrive while a publish is in flight are folded into the next `Broker.publish`
call together, so concurrent requests share one durable write, and publishes never contend
with each other for the broker. Each request is answered only after the publish holding its
messages returned; if that publish fails, every request in it gets the error.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from behavioral_analytics.broker import Broker, OutgoingMessage

__all__ = ["GroupPublisher"]

# Messages per Broker.publish call (Pub/Sub takes 1,000 messages or 10 MB per request; the
# adapters split larger calls themselves, so this only bounds the time one call takes).
MAX_GROUP_MESSAGES = 5000

_Item = tuple[Sequence[OutgoingMessage], "Future[list[str]]"]


class GroupPublisher:
    def __init__(self, broker: Broker, max_group_messages: int = MAX_GROUP_MESSAGES) -> None:
        self.broker = broker
        self.max_group_messages = max_group_messages
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """The broker's message ids, once the publish holding `messages` is durable."""
        return await asyncio.wrap_future(self.submit(messages))

    def submit(self, messages: Sequence[OutgoingMessage]) -> Future[list[str]]:
        future: Future[list[str]] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="collector-publisher", daemon=True
                )
                self._thread.start()
            self._queue.put((messages, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued, then stop the thread (a later `submit` starts a new one)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        try:
            if thread is not None:
                thread.join(timeout)
        finally:
            with self._lock:
                self._thread = None
                self._closed = False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            size = len(first[0])
            while size < self.max_group_messages:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item[0])
            self._publish(group)

    def _publish(self, group: list[_Item]) -> None:
        live = [
            (messages, future)
            for messages, future in group
            if future.set_running_or_notify_cancel()
        ]
        if not live:
            return
        try:
            ids = self.broker.publish([message for messages, _ in live for message in messages])
        except BaseException as exc:
            for _, future in live:
                future.set_exception(exc)
            return
        start = 0
        for messages, future in live:
            future.set_result(ids[start : start + len(messages)])
            start += len(messages)
