"""Reading people on the Firestore store: a person's (or anonymous actor's) document as a
commit needs it, and their stored raw events (by `person`, by time; an anonymous id's
anonymous-only events).

A behavioral commit reads the documents of the people its events count for and writes them
under the update time it read (`Seen.update_time`): the raw events it read of them are then
exactly their committed events in the range it read. The queries run after those reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from google.cloud import firestore

from behavioral_analytics.actors import actor
from behavioral_analytics.events import Event
from behavioral_analytics.stores.firestore.behavior import RawEvent, raw_event
from behavioral_analytics.stores.firestore.documents import (
    Seen,
    as_datetime,
    queried_event,
    read_seen,
)
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.keys import decode_map, doc_id
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BREAKDOWN_MARKER_FIELD,
    EVENTS,
    MANY_HOURS,
    MARKER_FIELD,
    MOVE_FIELDS,
    PERSON_FIELDS,
)
from behavioral_analytics.stores.firestore.session_counts import (
    SESSION_VALUES_FIELD,
    decode_values,
)
from behavioral_analytics.stores.firestore.wire import field_path, from_value

__all__ = ["People"]


class People:
    """Reads of people's documents and raw events through `gateway`."""

    def __init__(self, gateway: Gateway, options: StoreOptions) -> None:
        self.gateway = gateway
        self.options = options
        self.session_queries = 0  # `events_at` queries (sessions per value: `session_counts`)

    def read(self, people: Iterable[str], hours: Iterable[str] | None) -> dict[str, Seen]:
        """The documents of `people` that exist: profiles with the markers of `hours` (and the
        breakdown markers of their days; None: all), the stored derivation, links and
        tombstones.

        Raises `TransientStoreError` on a transient error."""
        hours = sorted(set(hours)) if hours is not None else None
        mask = [MARKER_FIELD["day"], *PERSON_FIELDS]
        if hours is None or len(hours) > MANY_HOURS:
            mask += [MARKER_FIELD["hour"], BREAKDOWN_MARKER_FIELD]
        else:
            mask.extend(field_path(MARKER_FIELD["hour"], hour) for hour in hours)
            days = sorted({hour.rsplit("-", 1)[0] for hour in hours})
            mask.extend(field_path(BREAKDOWN_MARKER_FIELD, day) for day in days)
        mask.append(SESSION_VALUES_FIELD)
        names = {self.gateway.name(AGGREGATES, doc_id("user_", who)): who for who in people}
        seen = {}
        for name, doc in self.gateway.get(list(names), mask).items():
            seen[names[name]] = read = read_seen(doc, True, names[name])
            if read.behavior is not None and SESSION_VALUES_FIELD in doc.fields:
                stored = from_value(doc.fields[SESSION_VALUES_FIELD])
                dimensions = self.options.rules.breakdowns.dimensions
                read.behavior.session_values = decode_values(stored, dimensions)
        return seen

    def events_at(
        self, wanted: Sequence[tuple[str, float]]
    ) -> dict[tuple[str, float], list[Event]]:
        """(person, instant) → the person's stored human events at exactly that instant (epoch
        seconds), for each of `wanted`: one query each, in parallel (index: person, timestamp)."""
        pairs = list(wanted)
        self.session_queries += len(pairs)
        found = self.gateway.in_parallel(
            lambda i: self._at(*pairs[int(i)]), [str(i) for i in range(len(pairs))]
        )
        return dict(zip(pairs, found, strict=True))

    def _at(self, person: str, instant: float) -> list[Event]:
        query = (
            self.gateway.collection(EVENTS)
            .where(filter=firestore.FieldFilter("person", "==", person))
            .where(filter=firestore.FieldFilter("timestamp", ">=", as_datetime(instant - 0.001)))
            .where(filter=firestore.FieldFilter("timestamp", "<=", as_datetime(instant + 0.001)))
            .order_by("timestamp")
            .select(MOVE_FIELDS)
        )
        found = []
        for snap in query.stream(timeout=self.gateway.timeout_s):
            data = snap.to_dict() or {}
            if not data.get("bot") and data.get("ts") == instant:
                found.append(queried_event(snap.id, data, person))
        return found

    def anonymous_events(self, anonymous_id: str) -> list[tuple[Event, str]]:
        """The stored human events of `anonymous_id` without a user id, each with the person
        it counts for now."""
        query = self.gateway.collection(EVENTS).where(
            filter=firestore.FieldFilter("anonymous_id", "==", anonymous_id)
        )
        who = actor(None, anonymous_id)
        found = []
        for snap in query.select(MOVE_FIELDS).stream(timeout=self.gateway.timeout_s):
            data = snap.to_dict() or {}
            if data.get("user_id") is None and not data.get("bot"):
                found.append((queried_event(snap.id, data, who), data.get("person", who)))
        return found

    def with_properties(
        self, listed: dict[str, list[tuple[Event, str]]]
    ) -> dict[str, list[tuple[Event, str]]]:
        """Anonymous actors' listed events (each with whom it counts for) with their stored
        properties, read by key in one batched get (no query). An event not found keeps none.

        Raises `TransientStoreError` on a transient error."""
        names = {
            self.gateway.name(EVENTS, event.key): event.key
            for pairs in listed.values()
            for event, _ in pairs
        }
        found = {
            names[name]: decode_map(from_value(doc.fields["properties"]) or {})
            for name, doc in self.gateway.get(list(names), ["properties"]).items()
            if "properties" in doc.fields
        }
        return {
            who: [(replace(e, properties=found.get(e.key, e.properties)), p) for e, p in pairs]
            for who, pairs in listed.items()
        }

    def all_from(self, person: str, low: float) -> list[Event]:
        """Every stored human event counted for `person` at or after `low` (epoch seconds)."""
        return [
            queried_event(key, data, person)
            for key, data in self._humans_from(person, low, MOVE_FIELDS)
        ]

    def client_times_from(self, person: str, low: float) -> dict[str, list[float]]:
        """Client session id → the times of the person's stored human events with it, at or
        after `low` (epoch seconds)."""
        times: dict[str, list[float]] = {}
        for _, data in self._humans_from(person, low, ["ts", "session_id", "bot"]):
            client_id = data.get("session_id")
            if client_id is not None:
                times.setdefault(client_id, []).append(data["ts"])
        return times

    def relevant_from(self, person: str, low: float) -> list[RawEvent]:
        """A person's stored human events at or after `low` that sessions or funnels need."""
        rules = self.options.rules
        fields = ["ts", "session_id", "event_type", "bot"]
        if any(step.where for f in rules.funnels for step in f.steps):
            fields.append("properties")
        found = []
        for key, data in self._humans_from(person, low, fields):
            event = raw_event(
                key,
                data["ts"],
                data.get("session_id"),
                data.get("event_type", ""),
                decode_map(data.get("properties") or {}),
                rules,
            )
            if event.relevant:
                found.append(event)
        return found

    def _humans_from(
        self, person: str, low: float, fields: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, `fields`) of the stored human events counted for `person` at or after `low`,
        by time (index: person, timestamp)."""
        query = (
            self.gateway.collection(EVENTS)
            .where(filter=firestore.FieldFilter("person", "==", person))
            # The Timestamp keeps microseconds: a millisecond of slack, then the exact `ts`.
            .where(filter=firestore.FieldFilter("timestamp", ">=", as_datetime(low - 0.001)))
            .order_by("timestamp")
            .select([*fields])
        )
        for snap in query.stream(timeout=self.gateway.timeout_s):
            data = snap.to_dict() or {}
            timestamp = data.get("ts")
            if not data.get("bot") and timestamp is not None and timestamp >= low:
                yield snap.id, data

    def last_before(self, person: str, before: float) -> float | None:
        """The time of the person's latest stored human event before `before`."""
        query = (
            self.gateway.collection(EVENTS)
            .where(filter=firestore.FieldFilter("person", "==", person))
            .where(filter=firestore.FieldFilter("timestamp", "<", as_datetime(before)))
            .order_by("timestamp", direction=firestore.Query.DESCENDING)
            .select(["ts", "bot"])
        )
        for snap in query.stream(timeout=self.gateway.timeout_s):
            data = snap.to_dict() or {}
            if not data.get("bot"):
                return data.get("ts")
        return None
