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


# Suffix of the hour label of wall-clock times repeated when clocks go back (the first of
# `_PASS_LETTERS`, one per wall-clock hour of the second pass).
REPEATED = "b"
_PASS_LETTERS = "bcdefgh"


class Periods:
    """Names the minute, hour and day an instant falls in, in the reporting time zone.

    Labels sort in time order within a granularity: minute `YYYY-MM-DD-HH-MM`, hour
    `YYYY-MM-DD-HH`, day `YYYY-MM-DD`, as in the recipe's `hourly_…`/`daily_…` documents.
    When clocks go back, the wall-clock times that come round a second time are a different
    period, labelled after the last hour before the change: `2026-11-01-01b` (minutes
    `2026-11-01-01b-30`) in New York, which sorts after the first pass and before the next
    hour; a letter more for each further wall-clock hour of the second pass
    (`_second_pass_hour`). Every other hour keeps its plain label (docs/behavior.md, "Periods
    when clocks change").
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

    def _labels(self, local: datetime) -> tuple[str, str, str]:
        day = local.strftime("%Y-%m-%d")
        hour = self._second_pass_hour(local, day) or f"{day}-{local.hour:02d}"
        return (f"{hour}-{local.minute:02d}", hour, day)

    def _second_pass_hour(self, local: datetime, day: str) -> str | None:
        """The hour label of `local` if its wall-clock hour already came round at a larger UTC
        offset (clocks went back), else None: the last hour label before the clocks went back
        with a letter for each wall-clock hour of the second pass (`b`, then `c`, …), so labels
        sort in time order and each names one stretch of time. New York goes back from 02:00
        to 01:00: `01`, then `01b`, then `02`. Pacific/Chatham goes back from 03:45 to 02:45:
        `03`, then `03b` (02:45-03:00 again) and `03c` (03:00-04:00), then `04`."""
        if self._tz is UTC:
            return None
        if local.fold:
            first_pass = local.replace(fold=0)
        elif local.minute:
            first_pass = local.replace(minute=0)  # the first time the wall clock read HH:00
        else:
            return None
        before, now = first_pass.utcoffset(), local.utcoffset()
        if before is None or now is None or before <= now:
            return None
        # The minute the clocks went back: the offset changed between the first pass and now.
        low, high = int(first_pass.timestamp() // 60), int(local.timestamp() // 60)
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle * 60, self._tz).utcoffset() == now:
                high = middle
            else:
                low = middle
        last_hour = self.label("hour", low * 60)
        went_back_to = datetime.fromtimestamp(high * 60, self._tz).replace(tzinfo=None)
        hours = local.replace(tzinfo=None, fold=0, minute=0) - went_back_to.replace(minute=0)
        nth = round(hours / timedelta(hours=1))
        if not last_hour.startswith(day) or not 0 <= nth < len(_PASS_LETTERS):
            # Back into the day before, a day's label would name two stretches anyway.
            return f"{day}-{local.hour:02d}{REPEATED}"
        return f"{last_hour}{_PASS_LETTERS[nth]}"

    def label(self, granularity: Granularity, timestamp: float) -> str:
        return self.of(timestamp)[GRANULARITIES.index(granularity)]

    def start_of(self, granularity: Granularity, label: str) -> float:
        """The first instant (epoch seconds) of a period label. Raises ValueError for text
        that is no label, or an hour the zone's clocks skipped (OverflowError, OSError where
        the platform cannot convert its time)."""
        if granularity == "hour":
            return self._hour_start(label)
        parts = label.split("-")
        if granularity == "minute" and len(parts) == 5 and _second_pass(parts[3]):
            return self._second_pass_minute(label)
        return self._wall_clock(label).timestamp()

    def _second_pass_minute(self, label: str) -> float:
        """The instant a minute of a second-pass hour (`…-03b-45`) starts: its wall-clock
        minute within that hour, whose hour digits are the last hour before the clocks went
        back."""
        at = self._hour_start(label[:-3])
        for _ in range(120):
            found = self.of(at)[0]
            if found == label:
                return at
            if not found.startswith(label[:-3]):
                break
            at += 60.0
        raise ValueError(f"{label!r} names no minute in {self.timezone}")

    def _hour_start(self, label: str) -> float:
        """The first instant labelled `label`: where its wall-clock start lands, unless the
        clocks shift within the hour, which is not on the hour everywhere: the repeated part of
        Australia/Lord_Howe's hour starts at its half (a 30-minute shift), and Pacific/Chatham
        skips from 02:45 to 03:45, so its hour 03 starts at the shift."""
        wall = self._wall_clock(label)
        landings = sorted({wall.replace(fold=0).timestamp(), wall.replace(fold=1).timestamp()})
        if self._hour_at(landings[0]) is None:
            return wall.timestamp()  # past the last instant a label names (year 9999 ends)
        for at in landings:
            if self._hour_at(at) == label and self._hour_at(at - 60.0) != label:
                return at
        # The largest shift of any zone's clocks is within a few hours (Antarctica/Troll: 2).
        at, until = landings[0] - 4 * 3600.0, landings[-1] + 4 * 3600.0
        while at <= until:
            if self._hour_at(at) == label:
                return at
            at += 60.0
        raise ValueError(f"{label!r}: the clocks of {self.timezone} skipped that hour")

    def _hour_at(self, timestamp: float) -> str | None:
        """The hour label of an instant, or None where no label names it (past year 9999)."""
        try:
            return self.label("hour", timestamp)
        except (ValueError, OverflowError, OSError):
            return None

    def _wall_clock(self, label: str) -> datetime:
        """The local wall-clock start of a period label (YYYY-MM-DD[-HH[b][-MM]]), with fold 1
        for a second-pass hour's label (`b`, `c`, …: its hour digits are the hour before the
        clocks went back, so this is where a search for it starts)."""
        parts = label.split("-")
        fold = 0
        if len(parts) > 3 and _second_pass(parts[3]):
            parts[3], fold = parts[3][:2], 1
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
            return self.start_of("minute", label) + 60.0
        # An hour ends an hour after it starts, or earlier where the clocks shift inside it:
        # at its first minute that has another label (none past year 9999).
        begins = self._hour_start(label)
        if self._hour_at(begins) is None or self._hour_at(begins + 3540.0) == label:
            return begins + 3600.0
        at = begins + 60.0
        while self._hour_at(at) == label:
            at += 60.0
        return at


def _second_pass(hour: str) -> bool:
    """Whether the `HH…` part of an hour label names a second pass (`01b`, `03c`)."""
    return len(hour) == 3 and hour[2] in _PASS_LETTERS


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
