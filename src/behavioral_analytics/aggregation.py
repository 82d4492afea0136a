"""The aggregation fold: canonical events → the deltas they add to the read model.

Pure: no I/O. The same fold serves the worker (deltas of newly created events) and
`verify` (a recount of every retained raw event), so both follow one set of rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from behavioral_analytics.events import Event

Granularity = Literal["minute", "hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("minute", "hour", "day")
# Exact unique users are kept for these (minute buckets would cost a marker per user per minute).
UNIQUE_GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")

__all__ = [
    "GRANULARITIES",
    "UNIQUE_GRANULARITIES",
    "BucketDelta",
    "Deltas",
    "Granularity",
    "Periods",
    "ProfileDelta",
    "fold",
]


class Periods:
    """Names the minute, hour and day an instant falls in, in the reporting time zone.

    Labels sort in time order within a granularity: minute `YYYY-MM-DD-HH-MM`, hour
    `YYYY-MM-DD-HH`, day `YYYY-MM-DD`, as in the recipe's `hourly_…`/`daily_…` documents.
    """

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._tz = UTC if timezone == "UTC" else ZoneInfo(timezone)
        self._cache: dict[int, tuple[str, str, str]] = {}

    def of(self, timestamp: float) -> tuple[str, str, str]:
        # Every UTC offset in use is a whole number of minutes, so one lookup per minute.
        minute = int(timestamp // 60)
        labels = self._cache.get(minute)
        if labels is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            local = datetime.fromtimestamp(minute * 60, self._tz)
            day = local.strftime("%Y-%m-%d")
            hour = f"{day}-{local.hour:02d}"
            labels = (f"{hour}-{local.minute:02d}", hour, day)
            self._cache[minute] = labels
        return labels

    def label(self, granularity: Granularity, timestamp: float) -> str:
        return self.of(timestamp)[GRANULARITIES.index(granularity)]

    def start_of(self, granularity: Granularity, label: str) -> float:
        return self._wall_clock(label).timestamp()

    def _wall_clock(self, label: str) -> datetime:
        """The local wall-clock start of a period label (YYYY-MM-DD[-HH[-MM]])."""
        year, month, day, *time_of_day = (int(part) for part in label.split("-"))
        hour, minute = (*time_of_day, 0, 0)[:2]
        return datetime(year, month, day, hour, minute, tzinfo=self._tz)

    def end_of(self, granularity: Granularity, label: str) -> float:
        """The instant (epoch seconds) a period ends: the start of the next one."""
        if granularity == "day":
            start = self._wall_clock(label)
            following = (start + timedelta(days=1)).replace(tzinfo=self._tz)
            return following.timestamp()
        return self._wall_clock(label).timestamp() + (3600.0 if granularity == "hour" else 60.0)


@dataclass(slots=True)
class BucketDelta:
    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class ProfileDelta:
    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    first_seen: float = float("inf")
    last_activity: float = float("-inf")


@dataclass(slots=True)
class Deltas:
    """What a set of events adds. `markers` are (granularity, period, who) facts; a store
    counts a unique user only for a marker it newly creates."""

    buckets: dict[tuple[Granularity, str], BucketDelta] = field(default_factory=dict)
    profiles: dict[str, ProfileDelta] = field(default_factory=dict)
    markers: set[tuple[Granularity, str, str]] = field(default_factory=set)

    def unique_users(self) -> Counter[tuple[Granularity, str]]:
        """Distinct users per bucket, counting every marker as new (a recount from scratch)."""
        return Counter((granularity, period) for granularity, period, _ in self.markers)


def fold(events: Iterable[Event], periods: Periods) -> Deltas:
    # Count per (minute, type) and per (who, type) first, then expand: one pass of cheap
    # tuple counting per event instead of three bucket updates.
    per_minute: Counter[tuple[int, str]] = Counter()
    per_profile: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[int, str]] = set()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in events:
        timestamp = event.timestamp
        minute = int(timestamp // 60)
        who = event.who
        per_minute[minute, event.event_type] += 1
        per_profile[who, event.event_type] += 1
        seen.add((minute, who))
        earliest = first.get(who)
        if earliest is None:
            first[who] = last[who] = timestamp
        elif timestamp < earliest:
            first[who] = timestamp
        elif timestamp > last[who]:
            last[who] = timestamp

    deltas = Deltas()
    buckets = deltas.buckets
    for (minute, event_type), count in per_minute.items():
        labels = periods.of(minute * 60)
        for granularity, period in zip(GRANULARITIES, labels, strict=True):
            bucket = buckets.get((granularity, period))
            if bucket is None:
                bucket = buckets[granularity, period] = BucketDelta()
            bucket.total += count
            bucket.by_type[event_type] += count
    markers = deltas.markers
    for minute, who in seen:
        _, hour, day = periods.of(minute * 60)
        markers.add(("hour", hour, who))
        markers.add(("day", day, who))
    profiles = deltas.profiles
    for (who, event_type), count in per_profile.items():
        profile = profiles.get(who)
        if profile is None:
            profile = profiles[who] = ProfileDelta(first_seen=first[who], last_activity=last[who])
        profile.total += count
        profile.by_type[event_type] += count
    return deltas
