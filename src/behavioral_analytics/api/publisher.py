"""Group commit for the collector: one thread publishes for all requests.

Requests hand their messages to the publisher thread and wait for the broker's confirmation.
Requests that arrive while a publish is in flight are folded into the next `Broker.publish`
call together, so concurrent requests share one durable write, and publishes never contend
with each other for the broker. Each request is answered only after the publish holding its
messages returned; if that publish fails, every request in it gets the error.

A request waiting in the event loop is answered through its loop, one callback per publish
and loop for all the requests it held (rather than a thread-safe future per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from behavioral_analytics.broker import Broker, OutgoingMessage

__all__ = ["GroupPublisher"]

# Messages per Broker.publish call (Pub/Sub takes 1,000 messages or 10 MB per request; the
# adapters split larger calls themselves, so this only bounds the time one call takes).
MAX_GROUP_MESSAGES = 5000

# The messages, and who waits for their ids: a thread-safe future (`submit`, loop None), or an
# asyncio future and its loop (`publish`).
_Item = tuple[Sequence[OutgoingMessage], Any, asyncio.AbstractEventLoop | None]
# (waiter, ids, error) for the requests of one publish that wait in the same loop.
_Settled = list[tuple["asyncio.Future[list[str]]", list[str] | None, BaseException | None]]


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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[str]] = loop.create_future()
        self._put((messages, waiter, loop))
        return await waiter

    def submit(self, messages: Sequence[OutgoingMessage]) -> Future[list[str]]:
        """The same from any thread: a future of the broker's message ids."""
        future: Future[list[str]] = Future()
        self._put((messages, future, None))
        return future

    def _put(self, item: _Item) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="collector-publisher", daemon=True
                )
                self._thread.start()
            self._queue.put(item)

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
            (messages, waiter, loop)
            for messages, waiter, loop in group
            # A request cancelled before its publish started is not published. (Reading an
            # asyncio future's state from this thread: at worst a request cancelled just now
            # is published, as it would be a moment later.)
            if (waiter.set_running_or_notify_cancel() if loop is None else not waiter.cancelled())
        ]
        if not live:
            return
        ids: list[str] | None = None
        error: BaseException | None = None
        try:
            ids = self.broker.publish([message for messages, _, _ in live for message in messages])
        except BaseException as exc:
            error = exc
        by_loop: dict[asyncio.AbstractEventLoop, _Settled] = {}
        start = 0
        for messages, waiter, loop in live:
            mine = None if ids is None else ids[start : start + len(messages)]
            start += len(messages)
            if loop is None:
                if error is None:
                    waiter.set_result(mine)
                else:
                    waiter.set_exception(error)
            else:
                by_loop.setdefault(loop, []).append((waiter, mine, error))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: _Settled) -> None:
    for waiter, ids, error in settled:
        if waiter.done():  # cancelled meanwhile
            continue
        if error is None:
            # the queue holds the waiters untyped, as (messages, waiter, loop) tuples
            waiter.set_result(ids)  # type: ignore[arg-type]
        else:
            waiter.set_exception(error)
