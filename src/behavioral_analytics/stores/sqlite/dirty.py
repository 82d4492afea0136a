"""What a batch changed: the per-person time ranges whose sessions and funnel progress must be
recomputed, and the client sessions that gained or lost events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from behavioral_analytics.events import Event
from behavioral_analytics.funnels import Funnel

__all__ = ["Dirty", "Range"]


class Range:
    """The earliest and latest of some timestamps (epoch seconds), grown by `add`."""

    __slots__ = ("high", "low")

    def __init__(self, timestamp: float) -> None:
        self.low = self.high = timestamp

    def add(self, timestamp: float) -> None:
        """Widen the range to cover `timestamp`."""
        if timestamp < self.low:
            self.low = timestamp
        elif timestamp > self.high:
            self.high = timestamp


class Dirty:
    """Where a batch changed a person's events: what sessions and funnels must recompute."""

    def __init__(
        self,
        funnels: Sequence[Funnel],
        *,
        entries: Mapping[str, tuple[str, ...]],
        stored_through: int,
    ) -> None:
        self.loose: dict[str, Range] = {}
        # Client sessions gaining new events merge them (min, max, count); one whose events
        # moved between people is recounted from raw events.
        self.client_new: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.clients: set[tuple[str, str]] = set()
        self.moved: set[str] = set()  # people a (re)link gave or took events
        self.funnels: dict[str, dict[str, Range]] = {f.name: {} for f in funnels}
        # Per funnel, the people with a new event that can move an entry on (`later_types`);
        # the others' new events can only be entries.
        self.extending: dict[str, set[str]] = {f.name: set() for f in funnels}
        # The batch's new human events by key, with their person (after the batch's links),
        # and their values in `BreakdownRules.entry_dimensions` by key: read from here, not
        # decoded again from the store (their properties as parsed: `events.validate_event`
        # keeps them to what JSON carries, so they equal the stored row's). Rows of the store's
        # `events` up to `stored_through` (a rowid) were stored before the batch; those after
        # it are the batch's (`held`, and its bots): reads of raw events take the first from
        # the store, the others from here.
        self.held: dict[str, tuple[str, Event]] = {}
        self.entries = entries
        self.stored_through = stored_through
        self._types = [(f.name, f.types, f.later_types) for f in funnels]

    def add(
        self,
        person: str,
        timestamp: float,
        event_type: str,
        session_id: str | None,
        moved: bool = False,
    ) -> None:
        """Note an event of `person` at `timestamp` gained (or, `moved`, gained or lost by a
        link change)."""
        if session_id is None:
            span = self.loose.get(person)
            if span is None:
                self.loose[person] = Range(timestamp)
            else:
                span.add(timestamp)
        elif moved:
            self.clients.add((person, session_id))
        else:
            self.client_new[person, session_id].append(timestamp)
        if moved:
            self.moved.add(person)
        for name, types, later in self._types:
            if event_type in types:
                spans = self.funnels[name]
                span = spans.get(person)
                if span is None:
                    spans[person] = Range(timestamp)
                else:
                    span.add(timestamp)
                if event_type in later:
                    self.extending[name].add(person)
