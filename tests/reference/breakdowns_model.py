"""An independent reference for breakdowns, written from docs/breakdowns.md ("Where each value
comes from" for the dimensions it reads, "How breakdowns are counted" for the rest), not from
the live fold: it shares nothing with `behavioral_analytics` but the `Event` it reads.

It keeps what the docs say a store keeps beyond the raw events: the admitted values of each
(granularity, period, dimension), which only commits change. Every figure is recomputed from
the surviving raw events (`model.Reference`, which keeps them, attributes them to persons and
forgets) with loops and dictionaries.

Dimensions read here: `event_type`, `page` (the sources the generated streams use: Segment's
`properties.path` and `properties.url`, the recipe's `page_url`) and `property:<name>`.

Sessions per value ("Sessions per value, entry and exit pages"): the sessions are the
reference's own (`Reference.sessions`, docs/behavior.md); a session counts in the hour and day
of its first event, under the value its first event counts under in that dimension's set; the
`entry_page` and `exit_page` sets are filled by sessions (the page of the first and of the last
event), in the order of the sessions' starts, by each commit.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from behavioral_analytics.events import Event
from tests.reference.model import Reference, event_identity, is_bot, label

NONE = "(none)"
OTHER = "(other)"
MAX_CHARS = 256


def value_of(event: Event, dimension: str) -> str:
    """docs/breakdowns.md "Where each value comes from", for the dimensions read here."""
    props = event.properties
    value: str | None = None
    if dimension == "event_type":
        value = event.event_type
    elif dimension.startswith("property:"):
        found = props.get(dimension[len("property:") :])
        if isinstance(found, str):
            value = found
        elif isinstance(found, bool):
            value = "true" if found else "false"
        elif isinstance(found, int | float):
            value = json.dumps(found)
    elif dimension == "page":
        path = props.get("path")
        if isinstance(path, str) and path:
            value = urlsplit(path).path
        else:
            for key in ("url", "page_url"):
                url = props.get(key)
                if isinstance(url, str) and url:
                    parts = urlsplit(url)
                    value = parts.path or ("/" if parts.netloc else "")
                    break
    else:
        raise ValueError(f"the reference does not read {dimension!r}")
    if not value:
        return NONE
    value = value[:MAX_CHARS]
    # A label sent by a client, bare or in double quotes, gains one more pair of quotes.
    if value.strip('"') in ("(none)", "(direct)", OTHER):
        depth = len(value) - len(value.lstrip('"'))
        if value == '"' * depth + value.strip('"') + '"' * depth:
            value = f'"{value}"'
    return value


@dataclass
class BreakdownReference:
    """Breakdowns by `dimensions`, `max_values` admitted per (granularity, period, dimension),
    periods in `timezone`, over the raw events `reference` keeps."""

    reference: Reference
    dimensions: tuple[str, ...]
    max_values: int
    timezone: str
    admitted: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def commit(self, batch: Sequence[Event]) -> tuple[int, int, int]:
        """Commit `batch` to the raw events; admit, in batch order, the values of the human
        events it stored while each set has room (the value `(other)` never)."""
        before = set(self.reference.events)
        result = self.reference.commit(batch)
        zone = ZoneInfo(self.timezone)
        seen: set[tuple[Any, ...]] = set()
        for event in batch:
            identity = event_identity(event)
            if identity in before or identity in seen or identity not in self.reference.events:
                continue
            seen.add(identity)
            stored = self.reference.events[identity]
            if is_bot(stored):
                continue
            for granularity in ("hour", "day"):
                period = label(stored.timestamp, granularity, zone)[0]
                for dimension in self.dimensions:
                    self._admit(granularity, period, dimension, value_of(stored, dimension))
        # Sessions a commit adds or changes admit their entry and exit pages, earliest first;
        # the others' pages met their sets when they last changed, so going over every session
        # admits the same values.
        for first, last in sorted(self.sessions(), key=lambda s: (s[0].timestamp, s[0].key)):
            for granularity in ("hour", "day"):
                period = label(first.timestamp, granularity, zone)[0]
                self._admit(granularity, period, "entry_page", value_of(first, "page"))
                self._admit(granularity, period, "exit_page", value_of(last, "page"))
        return result

    def _admit(self, granularity: str, period: str, dimension: str, value: str) -> None:
        chosen = self.admitted.setdefault((granularity, period, dimension), [])
        if value not in chosen and value != OTHER and len(chosen) < self.max_values:
            chosen.append(value)

    def sessions(self) -> list[tuple[Event, Event]]:
        """(first event, last event) of every session: the earliest and the latest, ties by
        key (the reference's sessions list their events in that order)."""
        return [(events[0], events[-1]) for _, events in self.reference.sessions()]

    def session_points(self, dimension: str, granularity: str) -> dict[str, dict[str, int]]:
        """period → sessions started in it per counted value (`(other)` included): the value
        of the first event in a configured dimension, its page for `entry_page`, the last
        event's page for `exit_page`."""
        zone = ZoneInfo(self.timezone)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for first, last in self.sessions():
            period = label(first.timestamp, granularity, zone)[0]
            if dimension == "entry_page":
                value = value_of(first, "page")
            elif dimension == "exit_page":
                value = value_of(last, "page")
            else:
                value = value_of(first, dimension)
            counts[period][self.counted_as(granularity, period, dimension, value)] += 1
        return {period: dict(values) for period, values in counts.items()}

    def counted_as(self, granularity: str, period: str, dimension: str, value: str) -> str:
        return value if value in self.admitted.get((granularity, period, dimension), []) else OTHER

    def points(
        self, dimension: str, granularity: str
    ) -> dict[str, tuple[dict[str, int], int, dict[str, int] | None]]:
        """period → (events per admitted value, events under `(other)`, unique users per
        counted value for a day, None for an hour), periods with events only."""
        zone = ZoneInfo(self.timezone)
        events: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        users: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for person, event in self.reference.human():
            period = label(event.timestamp, granularity, zone)[0]
            value = self.counted_as(granularity, period, dimension, value_of(event, dimension))
            events[period][value] += 1
            users[period][value].add(person)
        out = {}
        for period, counts in events.items():
            other = counts.pop(OTHER, 0)
            uniques = (
                {value: len(people) for value, people in users[period].items()}
                if granularity == "day"
                else None
            )
            out[period] = (dict(counts), other, uniques)
        return out
