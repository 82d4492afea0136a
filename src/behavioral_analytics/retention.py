"""Retention: people grouped by the day they were first seen, or first did a chosen event
(their cohort), and how many of each cohort came back N days or N weeks later. Pure: no I/O.

The rule (docs/behavior.md, "Retention"):

- a person's **active days** are the days of the reporting zone on which at least one human
  event counts for them once identity links are applied: exactly the days on which they hold
  a unique-user marker, so retention counts the people that unique users per day count;
- a person's **cohort** is their first active day (`first_seen`'s day): a late event dated
  earlier moves them to the earlier cohort, an anonymous visitor whose events an identify
  gives to a user is that user, and a forgotten person is in no cohort;
- for cohort day C, **period n** is day C + n (unit `day`) or days C + 7n … C + 7n + 6 (unit
  `week`), in calendar days of the reporting zone (a 23- or 25-hour day is one day);
- with a **start event** T, a person's cohort is instead the day of their first human event of
  type T (identity links applied, as for active days) and people who never did T are in no
  cohort; returning still means active (any event) in the period;
- with **filters** (`DIMENSION:VALUE`, all holding at once), a person is in cohort C when they
  are in it unfiltered and at least one of their events on day C (human, identity links
  applied) matches every filter: the cohort-defining day narrowed by a property, as analytics
  tools narrow cohorts (came from google.com, on mobile, on their first day); returning is
  unchanged (any event). The events of the cohort days are read raw (`narrowed`,
  `filtered_queries.filtered_retention`);
- `returning[n]` is how many people of the cohort were active in period n, so
  `returning[0]` is the cohort's size; a period that has not begun by `today` is not listed
  (recent cohorts have shorter lists) and the last one listed may still grow.

Horizon: a store answers for cohort days within its raw-event retention (`plan`), where every
figure above is exact and recountable from the raw events by `verify`. Past it, identity
stitching has no raw events left to move, `verify` none to recount, and Firestore drops markers
a little later; older cohorts are refused, not approximated. (Per-person active days kept with
the person past the raw retention would lift this; they are not kept.)

Start events past the horizon: the first start event is found from the raw events dated on or
after the first cohort day (all kept, since that day is within the horizon). Each person also
keeps an all-time count per event type (the profile's counts, never pruned by retention, moved
by identity stitching, removed by `forget`). When the two counts agree, every start event of
theirs is in the scan and its earliest is their first; when the scan holds fewer, an earlier
one exists, kept or already dropped by retention, so their cohort is before the range and they
are left out (`first_start_days`). The scan is bounded (MAX_START_EVENTS, `scan_too_large`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import DEFAULT_LIMITS

__all__ = [
    "DEFAULT_COHORT_DAYS",
    "DEFAULT_MAX_OFFSET",
    "MAX_COHORT_DAYS",
    "MAX_OFFSET",
    "MAX_PERSONS",
    "MAX_START_EVENTS",
    "MAX_START_EVENT_CHARS",
    "UNIT_DAYS",
    "RetentionCohort",
    "RetentionError",
    "RetentionRead",
    "Unit",
    "cohorts",
    "day_after",
    "default_range",
    "first_start_days",
    "narrowed",
    "plan",
    "too_many",
    "too_many_start_events",
]

Unit = Literal["day", "week"]
UNIT_DAYS: dict[str, int] = {"day": 1, "week": 7}
DEFAULT_MAX_OFFSET = 30
# Cohort days when the request names no `from`: two weeks, answered by any raw-event
# retention of 14 days or more (the deployment modules' floor).
DEFAULT_COHORT_DAYS = 14
# The longest table asked for: a year of periods after each cohort day.
MAX_OFFSET: dict[str, int] = {"day": 366, "week": 53}
# The most cohort days in one request (the raw retention bounds it further).
MAX_COHORT_DAYS = 366
# The most people a store reads for one request; past it the request is refused (on
# Firestore each person is one document read).
MAX_PERSONS = 100_000
# The most start events a store reads for one request (one document read each on Firestore).
MAX_START_EVENTS = 200_000
# The longest start event type asked for: the longest event type an event can have (a longer
# one could only give empty cohorts; `query events --type` refuses it too).
MAX_START_EVENT_CHARS = DEFAULT_LIMITS.max_event_type_chars


@dataclass(frozen=True, slots=True)
class RetentionCohort:
    """The people first seen on day `cohort` (a day label of the reporting zone): `size`
    of them, and `returning[n]` of them active in period n after it (`returning[0] == size`).
    `members`: each person of the cohort -> the periods n they were active in (what `narrowed`
    needs; not part of the answer, nor of equality)."""

    cohort: str
    size: int
    returning: list[int]
    members: Mapping[str, frozenset[int]] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """`cohort`, `size`, `returning` and `rates` (returning[n] / size, 4 decimals)."""
        return {
            "cohort": self.cohort,
            "size": self.size,
            "returning": self.returning,
            "rates": [round(n / self.size, 4) if self.size else None for n in self.returning],
        }


class RetentionError(ValueError):
    """A retention request a store will not answer. `code` is `invalid_period`,
    `invalid_range`, `invalid_event_type`, `before_horizon`, `too_many_persons` or
    `scan_too_large` (the API's error codes); `str(error)` is one line for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RetentionRead:
    """What a store reads for a request: people whose first event (of type `start_event`
    when given) is in [`first_seen_from`, `first_seen_until`) (epoch seconds), their active
    days from `start_day` to `last_day` (day labels, inclusive); `today` truncates the
    table."""

    start_day: str
    end_day: str
    max_offset: int
    unit: Unit
    first_seen_from: float
    first_seen_until: float
    last_day: str
    today: str
    start_event: str | None = None


def day_after(day: str, days: int) -> str:
    """The day label `days` calendar days after `day` (YYYY-MM-DD)."""
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def _at_most_last(day: str, days: int) -> str:
    """`day_after(day, days)`, or 9999-12-31 when that is later (no later day has a label)."""
    try:
        return day_after(day, days)
    except OverflowError:
        return date.max.isoformat()


def default_range(start_day: str | None, end_day: str | None, today: str) -> tuple[str, str]:
    """The cohort days of a request: `end_day` or `today`, and `start_day` or the
    DEFAULT_COHORT_DAYS days ending at that end."""
    last = end_day or today
    return start_day or day_after(last, 1 - DEFAULT_COHORT_DAYS), last


def _day(value: str, name: str) -> date:
    try:
        parsed = date.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.isoformat() != value:
        raise RetentionError("invalid_period", f"{name} {value[:64]!r} is not a day (YYYY-MM-DD)")
    return parsed


def plan(
    periods: Periods,
    start_day: str,
    end_day: str,
    max_offset: int,
    unit: Unit,
    *,
    now: float,
    raw_retention_s: float,
    start_event: str | None = None,
) -> RetentionRead:
    """Check a request and say what to read: cohort days `start_day`..`end_day` (inclusive),
    periods 0..`max_offset` of `unit`, at `now` (epoch seconds) on a store keeping raw events
    `raw_retention_s` seconds; cohorts by first-seen day, or by the first `start_event` (an
    event type) when given.

    Raises RetentionError: `invalid_period` (not a day label), `invalid_range` (end before
    start, more than MAX_COHORT_DAYS days, an offset outside 0..MAX_OFFSET, an unknown unit),
    `invalid_event_type` (an empty or blank start event, or one over MAX_START_EVENT_CHARS
    characters; a type nobody sent is not an error: its cohorts are empty),
    `before_horizon` (a cohort day before the raw-retention horizon: the first day all of whose
    raw events are still kept).
    """
    if start_event is not None and (
        not start_event.strip() or len(start_event) > MAX_START_EVENT_CHARS
    ):
        raise RetentionError(
            "invalid_event_type",
            f"start event {start_event[:64]!r}: expected an event type of 1 to "
            f"{MAX_START_EVENT_CHARS} characters",
        )
    first, last = _day(start_day, "from"), _day(end_day, "to")
    if unit not in UNIT_DAYS:
        raise RetentionError("invalid_range", f"unit {unit!r}: expected day or week")
    if last < first:
        raise RetentionError("invalid_range", f"from {start_day} is after to {end_day}")
    if (last - first).days + 1 > MAX_COHORT_DAYS:
        raise RetentionError("invalid_range", f"at most {MAX_COHORT_DAYS} cohort days per request")
    if not 0 <= max_offset <= MAX_OFFSET[unit]:
        raise RetentionError(
            "invalid_range", f"max must be 0..{MAX_OFFSET[unit]} for unit {unit}, not {max_offset}"
        )
    # The oldest instant whose raw events are surely kept; its day may have lost some.
    horizon = day_after(periods.label("day", now - raw_retention_s), 1)
    if start_day < horizon:
        raise RetentionError(
            "before_horizon",
            f"from {start_day} is before {horizon}: retention is answered for cohort days "
            f"within the raw-event retention ({raw_retention_s / 86400:g} days), where it is "
            "exact",
        )
    span = UNIT_DAYS[unit] * (max_offset + 1) - 1
    return RetentionRead(
        start_day,
        end_day,
        max_offset,
        unit,
        periods.start_of("day", start_day),
        periods.end_of("day", end_day),
        _at_most_last(end_day, span),
        periods.label("day", now),
        start_event,
    )


def too_many(persons: int | None = None) -> RetentionError:
    """The refusal of a request whose cohorts hold more than MAX_PERSONS people (`persons`
    of them, when counted)."""
    held = f"{persons:,} people" if persons is not None else f"more than {MAX_PERSONS:,} people"
    return RetentionError(
        "too_many_persons",
        f"the cohorts hold {held}; at most {MAX_PERSONS:,} are read per request: "
        "ask for fewer days",
    )


def too_many_start_events(bound: int) -> RetentionError:
    """The refusal of a start-event request whose scan holds more than `bound` events (the
    store's MAX_START_EVENTS)."""
    return RetentionError(
        "scan_too_large",
        f"the start event occurs more than {bound:,} times from the first cohort day on, the "
        "most read per request: ask for fewer or later cohort days",
    )


def first_start_days(
    scanned: Mapping[str, tuple[int, float]],
    all_time: Mapping[str, int],
    read: RetentionRead,
    periods: Periods,
) -> dict[str, str]:
    """Each person's cohort day (label) for a start-event request `read`, from `scanned`:
    person -> (how many of their human start events are dated at or after
    `read.first_seen_from`, the earliest one's epoch seconds), and `all_time`: person -> their
    all-time count of that event type (the profile's). A person counts when the two agree (no
    earlier start event, kept or dropped by retention) and the earliest is before
    `read.first_seen_until`; the others are left out (module docstring)."""
    return {
        person: periods.label("day", earliest)
        for person, (count, earliest) in scanned.items()
        if earliest < read.first_seen_until and all_time.get(person) == count
    }


def cohorts(
    active_days: Mapping[str, Iterable[str]],
    read: RetentionRead,
    cohort_days: Mapping[str, str] | None = None,
) -> list[RetentionCohort]:
    """The cohorts of `read`'s days, oldest first, from each person's active days (day
    labels; their earliest is their cohort, or `cohort_days[person]` when given: then only
    the people in it count, and their days before their cohort day do not). People whose
    cohort is outside the range are left out; days on which nobody was first seen are not
    listed."""
    length = UNIT_DAYS[read.unit]
    today = date.fromisoformat(read.today)
    found: dict[str, list[int]] = {}
    members: dict[str, dict[str, frozenset[int]]] = {}
    for person in active_days if cohort_days is None else cohort_days:
        seen = sorted(set(active_days.get(person, ())))
        if cohort_days is not None:
            cohort = cohort_days[person]
            seen = [cohort, *(day for day in seen if day > cohort)]
        if not seen or not read.start_day <= seen[0] <= read.end_day:
            continue
        cohort = seen[0]
        start = date.fromisoformat(cohort)
        begun = (today - start).days // length
        if begun < 0:
            continue
        width = min(read.max_offset, begun) + 1
        returning = found.setdefault(cohort, [0] * width)
        periods = {(date.fromisoformat(day) - start).days // length for day in seen}
        active = frozenset(n for n in periods if n < width)
        for n in active:
            returning[n] += 1
        members.setdefault(cohort, {})[person] = active
    return [
        RetentionCohort(day, counts[0], counts, members[day])
        for day, counts in sorted(found.items())
    ]


def narrowed(
    found: Iterable[RetentionCohort], qualified: Collection[tuple[str, str]]
) -> list[RetentionCohort]:
    """`found` (as `cohorts` gives them, with their members) narrowed to the members whose
    (person, cohort day) is in `qualified`: with filters, the people with an event on their
    cohort day that matches every filter (`raw_queries.matching_days`). Returning counts are
    recounted over those members (any activity, as unfiltered); cohorts left empty are not
    listed."""
    kept = []
    for cohort in found:
        members = {
            who: active
            for who, active in cohort.members.items()
            if (who, cohort.cohort) in qualified
        }
        if not members:
            continue
        returning = [0] * len(cohort.returning)
        for active in members.values():
            for n in active:
                returning[n] += 1
        kept.append(RetentionCohort(cohort.cohort, len(members), returning, members))
    return kept
