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
    "REPEATED",
    "UNIQUE_GRANULARITIES",
    "BucketDelta",
    "Deltas",
    "Granularity",
    "Periods",
    "ProfileDelta",
    "fold",
]


# Suffix of the hour label of wall-clock times repeated when clocks go back.
REPEATED = "b"


class Periods:
    """Names the minute, hour and day an instant falls in, in the reporting time zone.

    Labels sort in time order within a granularity: minute `YYYY-MM-DD-HH-MM`, hour
    `YYYY-MM-DD-HH`, day `YYYY-MM-DD`, as in the recipe's `hourly_…`/`daily_…` documents.
    When clocks go back, the wall-clock times that come round a second time are a different
    period: their hour gets the suffix `b` (`2026-11-01-01b`, minutes `2026-11-01-01b-30`),
    which sorts after the first pass of that hour and before the next one. Every other hour
    keeps its plain label.
    """

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._tz = UTC if timezone == "UTC" else ZoneInfo(timezone)
        self._cache: dict[int, tuple[str, str, str]] = {}

    def of(self, timestamp: float) -> tuple[str, str, str]:
        """(minute, hour, day) labels of an instant (epoch seconds)."""
        # Every UTC offset in use today is a whole number of minutes, so one lookup per minute.
        minute = int(timestamp // 60)
        labels = self._cache.get(minute)
        if labels is None:
            local = datetime.fromtimestamp(minute * 60, self._tz)
            if local.second:  # a local mean time before standard time (-7:52:58 in Los Angeles)
                return self._labels(datetime.fromtimestamp(timestamp, self._tz))
            if len(self._cache) > 100_000:
                self._cache.clear()
            labels = self._cache[minute] = self._labels(local)
        return labels

    @staticmethod
    def _labels(local: datetime) -> tuple[str, str, str]:
        day = local.strftime("%Y-%m-%d")
        # fold 1: the second pass of a wall-clock time repeated when clocks go back.
        hour = f"{day}-{local.hour:02d}{REPEATED if local.fold else ''}"
        return (f"{hour}-{local.minute:02d}", hour, day)

    def label(self, granularity: Granularity, timestamp: float) -> str:
        return self.of(timestamp)[GRANULARITIES.index(granularity)]

    def start_of(self, granularity: Granularity, label: str) -> float:
        """The first instant (epoch seconds) of a period label."""
        start = self._wall_clock(label)
        if granularity == "hour" and start.fold:
            # The repeated part of an hour starts when the clocks go back, which is not on
            # the hour where the shift is less than one (Australia/Lord_Howe: 30 minutes).
            for minute in range(60):
                at = start.replace(minute=minute).timestamp()
                if self.label("hour", at) == label:
                    return at
        return start.timestamp()

    def _wall_clock(self, label: str) -> datetime:
        """The local wall-clock start of a period label (YYYY-MM-DD[-HH[b][-MM]]), with fold 1
        for a repeated hour's label."""
        parts = label.split("-")
        fold = 0
        if len(parts) > 3 and parts[3].endswith(REPEATED):
            parts[3], fold = parts[3][: -len(REPEATED)], 1
        year, month, day, *time_of_day = (int(part) for part in parts)
        hour, minute = (*time_of_day, 0, 0)[:2]
        return datetime(year, month, day, hour, minute, tzinfo=self._tz, fold=fold)

    def end_of(self, granularity: Granularity, label: str) -> float:
        """The instant (epoch seconds) a period ends: the start of the next one.

        Also for the last periods of 9999-12-31, whose next wall-clock period (year 10000) no
        `datetime` can hold: it starts one second after that day's last second, 23:59:59, in
        this zone. Raises ValueError for text that is no label (OverflowError, OSError where the
        platform cannot convert its time).
        """

        def next_wall_start(wall: datetime, step: timedelta) -> float:
            # `wall` is the start of an hour or day, so past the last representable wall-clock
            # time `wall + step` is exactly 10000-01-01 00:00.
            try:
                return (wall.replace(tzinfo=None) + step).replace(tzinfo=self._tz).timestamp()
            except OverflowError:
                last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=self._tz)
                return last.timestamp() + 1.0

        if granularity == "day":
            return next_wall_start(self._wall_clock(label), timedelta(days=1))
        if granularity == "minute":
            return self._wall_clock(label).timestamp() + 60.0
        # An hour ends an hour after it starts, or earlier at the next wall-clock hour when the
        # clocks shift inside it.
        wall = self._wall_clock(label)
        next_start = next_wall_start(wall.replace(minute=0, fold=0), timedelta(hours=1))
        begins = self.start_of("hour", label)
        return min(begins + 3600.0, next_start) if next_start > begins else begins + 3600.0


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
