"""Retention computed plainly from the reference's surviving raw events, written from
docs/behavior.md "Retention" alone (it shares nothing with `behavioral_analytics.retention`).

Per person (whom each human event counts for, `Reference.human`): the set of days of the
reporting zone holding one of their events; the first is their cohort, or, given a start event
type, the day of their first event of that type (people with none are in no cohort, and their
days before it are in no period). For cohort day C, period
n is day C + n, or days C + 7n to C + 7n + 6 for weeks; a cohort lists periods 0 to
`max_offset` that have begun by `today`, each with the people of the cohort active in it.

Narrowed by filters (dimension, value): a person stays in their cohort only when one of their
events dated on the cohort day has every filter's value (`breakdowns_model.value_of`, written
from docs/breakdowns.md); their returning periods are unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

from tests.reference.breakdowns_model import value_of
from tests.reference.model import Reference, label

__all__ = ["reference_retention"]


def reference_retention(
    ref: Reference,
    start_day: str,
    end_day: str,
    max_offset: int,
    unit: str,
    today: str,
    start_event: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, int, list[int]]]:
    """(cohort day, size, returning per period) for cohorts `start_day`..`end_day`, oldest
    first, days on which nobody was first seen (or first did `start_event`) left out. The
    reference keeps every raw event, so the first start event is always among them."""
    zone = ZoneInfo(ref.rules.timezone)
    length = 7 if unit == "week" else 1
    days: dict[str, set[date]] = defaultdict(set)
    starts: dict[str, date] = {}
    matching: set[tuple[str, date]] = set()
    for person, event in ref.human():
        day = date.fromisoformat(label(event.timestamp, "day", zone)[0])
        days[person].add(day)
        if all(value_of(event, dimension) == value for dimension, value in filters):
            matching.add((person, day))
        if event.event_type == start_event:
            starts[person] = min(starts.get(person, day), day)
    last_day = date.fromisoformat(today)
    rows: dict[str, list[int]] = {}
    for person, active in days.items():
        if start_event is None:
            first = min(active)
        elif person in starts:
            first = starts[person]
        else:
            continue
        cohort = first.isoformat()
        if not start_day <= cohort <= end_day or (person, first) not in matching:
            continue
        periods = []
        for n in range(max_offset + 1):
            if first.toordinal() + n * length > last_day.toordinal():
                break
            periods.append(n)
        if not periods:
            continue
        counts = rows.setdefault(cohort, [0] * len(periods))
        for n in periods:
            block = range(first.toordinal() + n * length, first.toordinal() + (n + 1) * length)
            if any(day.toordinal() in block for day in active):
                counts[n] += 1
    return [(cohort, counts[0], counts) for cohort, counts in sorted(rows.items())]
