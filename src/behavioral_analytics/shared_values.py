"""Equal values held once while a recount holds every retained raw event. Pure.

`verify`, `verify --repair` and `config apply` recount from every retained raw event at once
(`verification.compare`, the stores' `rebuild`). Read from a store, each event decodes its own
copy of every value, though most repeat from event to event: the user and anonymous ids, the
event type, the session id, property values (a page, a referrer, a device) and the `$derived`
map the worker adds to every event (docs/breakdowns.md). `shared_events` hands each event, for
every such value, the object of an equal value seen before, so the recount holds it once: on a
store of a million live events (`bench/verify_memory.py --events 1000000`, 2026-12-04) the
recount grew by 1,177 MiB instead of 2,161 (1,227 bytes per retained event instead of 2,253),
in the same time.

What is shared must not be changed afterwards: an event's own properties map is rebuilt for it,
but the strings, maps and lists in it may be another event's too. Nothing that reads the raw
events changes them (the worker enriches an event before it is stored, not after).

Strings of at most `MAX_SHARED_CHARS` characters are shared while `MAX_SHARED_TEXTS` distinct
ones are known, and maps and lists (in properties) while `MAX_SHARED_NESTED` are: past those,
a new value is kept as read, so the tables stay bounded (about 110 MB at most, with strings of
25 characters and small maps) however many distinct values a store holds. Those known by then
are shared on: the event types, pages and devices of the first events read are those of most
events. An event's key and id are unique and never shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from behavioral_analytics.events import Event

__all__ = [
    "MAX_SHARED_CHARS",
    "MAX_SHARED_NESTED",
    "MAX_SHARED_TEXTS",
    "SharedValues",
    "shared_events",
]

MAX_SHARED_CHARS = 256
MAX_SHARED_TEXTS = 500_000
MAX_SHARED_NESTED = 100_000

_encode = msgspec.json.Encoder().encode


class SharedValues:
    """The values seen so far, each held once: `text`, `properties` and `event` hand back, for
    a value equal to one seen before, the object seen first."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._nested: dict[bytes, Any] = {}  # by the value's JSON

    def text(self, value: str) -> str:
        """`value`, or the equal string seen first (a string over `MAX_SHARED_CHARS`
        characters, or a new one once `MAX_SHARED_TEXTS` are known, as it is)."""
        if len(value) > MAX_SHARED_CHARS:
            return value
        shared = self._texts.get(value)
        if shared is not None:
            return shared
        if len(self._texts) < MAX_SHARED_TEXTS:
            self._texts[value] = value
        return value

    def event(self, event: Event) -> Event:
        """`event`, changed in place to hold its ids, type, session id and properties as the
        equal objects seen before (see the module's docstring for what must not change
        afterwards)."""
        text = self.text
        if event.user_id is not None:
            event.user_id = text(event.user_id)
        if event.anonymous_id is not None:
            event.anonymous_id = text(event.anonymous_id)
        if event.session_id is not None:
            event.session_id = text(event.session_id)
        if event.call is not None:
            event.call = text(event.call)
        if event.id_kind is not None:
            event.id_kind = text(event.id_kind)
        event.who = text(event.who)
        event.event_type = text(event.event_type)
        event.properties = self.properties(event.properties)
        return event

    def properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        """A new map equal to `properties` (JSON values, as the event contract has them), its
        keys and values shared with those seen before. Maps and lists are shared when their
        JSON is equal, keys in the same order (1, 1.0 and true differ there, as they should)."""
        text = self.text
        shared: dict[str, Any] = {}
        for key, value in properties.items():
            if value.__class__ is str:
                shared[text(key)] = text(value)
            elif isinstance(value, dict | list):
                shared[text(key)] = self._nested_value(value)
            else:
                shared[text(key)] = value
        return shared

    def _nested_value(self, value: dict[str, Any] | list[Any]) -> Any:
        json = _encode(value)
        shared = self._nested.get(json)
        if shared is None:
            shared = self._copy(value)
            if len(self._nested) < MAX_SHARED_NESTED:
                self._nested[json] = shared
        return shared

    def _copy(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {self.text(k): self._copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._copy(v) for v in value]
        return self.text(value) if isinstance(value, str) else value


def shared_events(events: Iterable[Event], shared: SharedValues | None = None) -> Iterator[Event]:
    """`events`, each changed in place by `SharedValues.event` (of `shared`, a new
    `SharedValues` when None)."""
    values = shared if shared is not None else SharedValues()
    for event in events:
        yield values.event(event)
