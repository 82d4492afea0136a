"""Filtered answers, as the API and the CLI give them: from the live aggregates where they
hold the number, else from a bounded scan of raw events (rules: `raw_queries`,
docs/breakdowns.md "Filters").

From the aggregates (`"answered_from": "aggregates"`): a series (hour or day) or a count of
sessions narrowed by **one** filter on a kept dimension, read from that dimension's breakdown
points, when every point holds the value exactly (it was admitted, or nothing counted under
`(other)`) and, for sessions, the store keeps sessions per value. Anything else (two filters,
minutes, a filter with an event type, a funnel, a breakdown narrowed by a filter, session
durations and bounces) is counted from the raw events (`"answered_from": "raw_events"`, with
`"scanned_events"`): the range's events (sessions: widened by the session cap and gap on both
sides, clipped at the raw-retention horizon; funnels: by the funnel's window after) are read
through `Store.scan_events`, at most `bound` of them. A range holding more is refused
(`scan_too_large`): before any event is read when the hour buckets wholly within it hold more,
else once `bound` + 1 events are read (a range's first and last hours may be partly outside
it); one starting before the horizon is refused by the store (`before_horizon`).

Retention narrowed by filters (`filtered_retention`; rule: `retention`, docs/behavior.md
"Retention") takes the store's unfiltered cohorts with their members (`Store.retention`,
identity links applied, from the profiles and day markers), then the raw events of the days
from the first to the last cohort listed (within the raw-event horizon, as every cohort day
is), and keeps each member with an event on their cohort day matching every filter. Cost on
Firestore: the unfiltered read (one document per person of the cohorts, plus one count) plus
one read per raw event of those days (at most `bound`) and the hour buckets counted first;
SQLite reads the same rows from one file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.breakdown_report import filtered_series
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import Funnel
from behavioral_analytics.period_bounds import LAST_INSTANT
from behavioral_analytics.raw_queries import (
    Filter,
    breakdown,
    funnel_days,
    funnel_window,
    matching_days,
    series,
    session_series,
    session_window,
    too_large,
)
from behavioral_analytics.records import FunnelDay
from behavioral_analytics.retention import Unit, narrowed
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.store import BreakdownPoint, NotSupported, ReadModel

__all__ = [
    "filtered_breakdown",
    "filtered_funnel",
    "filtered_retention",
    "filtered_series_answer",
    "filtered_sessions",
    "scan",
]


def scan(
    store: ReadModel, periods: Periods, start_s: float, end_s: float, bound: int
) -> list[Event]:
    """The human events of [`start_s`, `end_s`) (`Store.scan_events`), at most `bound`.
    Raises ScanError (`before_horizon`; `scan_too_large`, before reading any event when the
    hours wholly within the range hold more, else once `bound` + 1 are read), StoreError."""
    store.scan_events(start_s, start_s, 1)  # an empty range: the horizon's check alone
    if end_s > start_s:
        within, overlapped = _held(store, periods, start_s, end_s)
        if within > bound:
            raise too_large(bound, within, exact=within == overlapped)
    events = store.scan_events(start_s, end_s, bound + 1)
    if len(events) > bound:
        raise too_large(bound, len(events), exact=False)
    return events


def _held(store: ReadModel, periods: Periods, start_s: float, end_s: float) -> tuple[int, int]:
    """The human events of the hour buckets wholly within [`start_s`, `end_s`), and of every
    hour bucket it overlaps: the range holds at least the first and at most the second (the
    hour of `end_s` itself is not overlapped: it starts where the range ends)."""
    last_s = min(math.nextafter(end_s, -math.inf), LAST_INSTANT)
    hours = store.series("hour", periods.label("hour", start_s), periods.label("hour", last_s))
    within = overlapped = 0
    for point in hours:
        overlapped += point.total_events
        first_s = periods.start_of("hour", point.period)
        if first_s >= start_s and periods.end_of("hour", point.period) <= end_s:
            within += point.total_events
    return within, overlapped


def _raw(body: dict[str, Any], events: Sequence[Event]) -> dict[str, Any]:
    return {**body, "answered_from": "raw_events", "scanned_events": len(events)}


def _kept(
    store: ReadModel, only: Filter, granularity: Granularity, first: str, last: str
) -> list[BreakdownPoint] | None:
    """The breakdown points of `only`'s dimension; None where the store keeps none."""
    try:
        return store.breakdown(only.dimension, granularity, first, last)
    except NotSupported:
        return None


def _one_kept(filters: Sequence[Filter], kept: Sequence[str]) -> Filter | None:
    return filters[0] if len(filters) == 1 and filters[0].dimension in kept else None


def filtered_series_answer(
    store: ReadModel,
    periods: Periods,
    kept: Sequence[str],
    granularity: Granularity,
    filters: Sequence[Filter],
    first: str,
    last: str,
    bound: int,
) -> dict[str, Any]:
    """`{"points", "answered_from"[, "scanned_events"]}` of a series narrowed by `filters`
    over periods `first`..`last`, the periods with matching events only (the breakdowns give
    a period of other values' events a 0); `kept`: the dimensions the store breaks down."""
    only = _one_kept(filters, kept)
    if only is not None and granularity != "minute":
        found = _kept(store, only, granularity, first, last)
        points = None if found is None else filtered_series(found, only.value)
        if points is not None and all(point.exact for point in points):
            shown = [p.to_dict() for p in points if p.total_events]
            return {"points": shown, "answered_from": "aggregates"}
    start_s, end_s = periods.start_of(granularity, first), periods.end_of(granularity, last)
    events = scan(store, periods, start_s, end_s, bound)
    raw = series(events, filters, periods, granularity, first, last)
    return _raw({"points": [p.to_dict() for p in raw]}, events)


def filtered_sessions(
    store: ReadModel,
    periods: Periods,
    kept: Sequence[str],
    rules: SessionRules,
    granularity: Granularity,
    filters: Sequence[Filter],
    first: str,
    last: str,
    bound: int,
    horizon_s: float,
) -> dict[str, Any]:
    """`{"points", "answered_from"[, "scanned_events"]}` of sessions started in `first`..
    `last` whose first event matches every filter; `horizon_s`: the oldest instant whose raw
    events are surely kept (epoch seconds). From the aggregates a point has `sessions` only
    (durations and bounces are not kept per value: `null`)."""
    only = _one_kept(filters, kept)
    if only is not None:
        found = _kept(store, only, granularity, first, last)
        if (
            found is not None
            and all(p.sessions is not None for p in found)
            and all(only.value in p.events or not p.other_events for p in found)
        ):
            points = [
                {
                    "granularity": granularity,
                    "period": p.period,
                    "sessions": (p.sessions or {}).get(only.value, 0),
                    "avg_duration_s": None,
                    "bounce_rate": None,
                    "events_per_session": None,
                }
                for p in found
                if (p.sessions or {}).get(only.value)
            ]
            return {"points": points, "answered_from": "aggregates"}
    start_s, end_s = periods.start_of(granularity, first), periods.end_of(granularity, last)
    margin_s = session_window(rules)
    low_s = max(start_s - margin_s, min(start_s, horizon_s))
    events = scan(store, periods, low_s, end_s + margin_s, bound)
    raw = session_series(events, filters, rules, periods, granularity, first, last)
    return _raw({"points": [p.to_dict() for p in raw]}, events)


def filtered_funnel(
    store: ReadModel,
    periods: Periods,
    funnel: Funnel,
    filters: Sequence[Filter],
    first_day: str,
    last_day: str,
    bound: int,
) -> dict[str, Any]:
    """`{"days", "answered_from", "scanned_events"}`: the funnel over the events matching
    every filter, per entry day `first_day`..`last_day` (shape of `FunnelDay.to_dict`)."""
    start_s = periods.start_of("day", first_day)
    end_s = periods.end_of("day", last_day) + funnel_window(funnel)
    events = scan(store, periods, start_s, end_s, bound)
    days = funnel_days(events, filters, funnel, periods, first_day, last_day)
    return _raw({"days": [FunnelDay(d.day, d.users_by_step).to_dict() for d in days]}, events)


def filtered_breakdown(
    store: ReadModel,
    periods: Periods,
    dimension: str,
    rules: SessionRules,
    granularity: Granularity,
    filters: Sequence[Filter],
    first: str,
    last: str,
    limit: int,
    bound: int,
    horizon_s: float,
) -> dict[str, Any]:
    """A breakdown of `dimension` narrowed by `filters`, from the raw events (widened as for
    sessions: their counts per value come with it): `RawBreakdown.to_dict`'s fields, no
    `points`."""
    start_s, end_s = periods.start_of(granularity, first), periods.end_of(granularity, last)
    margin_s = session_window(rules)
    low_s = max(start_s - margin_s, min(start_s, horizon_s))
    events = scan(store, periods, low_s, end_s + margin_s, bound)
    found = breakdown(events, filters, dimension, rules, periods, granularity, first, last, limit)
    return _raw(found.to_dict(), events)


def filtered_retention(
    store: ReadModel,
    periods: Periods,
    filters: Sequence[Filter],
    first_day: str,
    last_day: str,
    max_offset: int,
    unit: Unit,
    start_event: str | None,
    bound: int,
) -> dict[str, Any]:
    """`{"cohorts", "answered_from", "scanned_events"}`: `Store.retention`'s cohorts of days
    `first_day`..`last_day` (by first-seen day, or by the first `start_event`) keeping the
    people with an event on their cohort day that matches every filter (module docstring;
    shape of `RetentionCohort.to_dict`). Raises RetentionError (the request, as unfiltered),
    ScanError (`scan_too_large` past `bound` events), NotSupported, StoreError."""
    found = store.retention(first_day, last_day, max_offset, unit, start_event)
    events: list[Event] = []
    if found:
        start_s = periods.start_of("day", found[0].cohort)
        events = scan(store, periods, start_s, periods.end_of("day", found[-1].cohort), bound)
    kept = narrowed(found, matching_days(events, filters, periods))
    return _raw({"cohorts": [c.to_dict() for c in kept]}, events)
