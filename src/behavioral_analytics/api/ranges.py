"""The `from`/`to` bounds of the query routes, `compare=true` and `filter=`, shared by the
ranged routes (series, sessions, funnels, breakdowns).

Bounds follow `period_bounds` (a bad one is `400 invalid_period`, a reversed range `400
invalid_range`). Given `compare=true` a ranged route answers its range as `current` and the
range of the same length just before it as `previous` (rules: `period_bounds.previous_range`),
each with its `from` and `to` and the fields an answer without `compare` has at the top level.

Without `from` a route answers a default number of periods ending at `to` (else the period of
now), counted back from `to` (`asked_range`). A filtered route's default range also starts
no earlier than the first period within the raw-event retention (`raw_queries.raw_window_s`)
unless `to` itself is before it: then the default range stands, and a raw scan over it is
refused `before_horizon` as for an explicit `from`.

`filter=DIMENSION:VALUE` (repeatable) narrows an answer (`filtered_queries`); a bad one is
`400 invalid_filter`, a refused raw scan `400 scan_too_large` or `400 before_horizon`. A raw
scan reaches past its range by the sessions' or funnel's window and needs a label for its end:
near the end of year 9999 it reads only the periods whose scan ends by the last instant that
can be named (`readable_last`); no event can be later.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import Query

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdown_report import FilterError, known_dimensions
from behavioral_analytics.period_bounds import (
    LAST_INSTANT,
    PeriodError,
    previous_range,
    resolve_bound,
    resolve_range,
)
from behavioral_analytics.raw_queries import (
    MAX_FILTER_CHARS,
    MAX_FILTERS,
    Filter,
    ScanError,
    filter_dimensions,
    parse_filters,
    raw_window_s,
)
from behavioral_analytics.store import NotSupported

__all__ = [
    "Compare",
    "Filters",
    "asked_range",
    "check_order",
    "compared",
    "filters_of",
    "readable_last",
    "resolve_period",
    "scanned",
]

Compare = Annotated[
    bool,
    Query(
        description="Also answer the range of the same length just before (`previous`), "
        "the asked one then under `current`"
    ),
]

Filters = Annotated[
    list[str] | None,
    Query(
        alias="filter",
        description=f"DIMENSION:VALUE, repeatable (at most {MAX_FILTERS}, each at most "
        f"{MAX_FILTER_CHARS} characters): only what matches every one "
        '(docs/breakdowns.md "Filters")',
    ),
]


def filters_of(texts: list[str] | None, rules: BehaviorRules | None) -> tuple[Filter, ...]:
    """The filters asked for (`texts`: the `filter` parameters), on the fixed dimensions and
    those the store with `rules` keeps. Raises ApiError 400 `invalid_filter`."""
    if not texts:
        return ()
    try:
        return parse_filters(texts, filter_dimensions(known_dimensions(rules)))
    except FilterError as exc:
        raise ApiError(400, "invalid_filter", str(exc)) from None


def scanned(load: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """`load` with a refused raw scan as ApiError 400 (`scan_too_large`, `before_horizon`)
    and what the store does not keep as 501 `not_supported`."""

    def call() -> dict[str, Any]:
        try:
            return load()
        except ScanError as exc:
            raise ApiError(400, exc.code, exc.detail) from None
        except NotSupported as exc:
            raise ApiError(501, "not_supported", str(exc)) from None

    return call


def resolve_period(
    value: str, granularity: Granularity, periods: Periods, *, end: bool = False
) -> str:
    """A `from`/`to` bound → the label it stands for (rules: `period_bounds`); `end` for `to`.
    Raises ApiError 400 `invalid_period`."""
    try:
        return resolve_bound(value, granularity, periods, end=end)
    except PeriodError as exc:
        raise ApiError(400, exc.code, exc.detail) from None


def check_order(first: str, last: str, periods: Periods, granularity: Granularity) -> None:
    """Raises ApiError 400 `invalid_range` when `first` comes after `last`."""
    try:
        resolve_range(first, last, granularity, periods)
    except PeriodError as exc:
        raise ApiError(400, exc.code, exc.detail) from None


def asked_range(
    from_: str | None,
    to: str | None,
    granularity: Granularity,
    periods: Periods,
    now: float,
    default_window_s: float,
    *,
    raw_retention_s: float | None = None,
) -> tuple[str, str]:
    """The (first, last) period labels a route answers: `to` else the period of `now` (epoch
    seconds), back to `from_` else the period `default_window_s` seconds before the last one
    (whole calendar days by day: 30 days before 2026-12-01 is 2026-11-01).

    With `raw_retention_s` (a filtered answer's raw-event retention, seconds) a default first
    period is moved forward to the first one within the retention at `now` when that is later,
    unless it would then come after the last (module docstring). Raises ApiError 400
    `invalid_period` or `invalid_range`."""
    end = (
        resolve_period(to, granularity, periods, end=True)
        if to
        else periods.label(granularity, now)
    )
    if from_:
        start = resolve_period(from_, granularity, periods)
    else:
        start = _before(end, granularity, periods, default_window_s)
        if raw_retention_s is not None:
            within_s = raw_window_s(math.inf, granularity, raw_retention_s)
            earliest = periods.label(granularity, now - within_s)
            begins = _starts(earliest, granularity, periods)
            if _starts(start, granularity, periods) < begins <= _starts(end, granularity, periods):
                start = earliest
    check_order(start, end, periods, granularity)
    return start, end


def _starts(label: str, granularity: Granularity, periods: Periods) -> float:
    return periods.start_of(granularity, label)


def _before(last: str, granularity: Granularity, periods: Periods, window_s: float) -> str:
    """The period `window_s` seconds before `last` (calendar days by day). Raises ApiError 400
    `invalid_range` when it would be before year 1000 (no bound names one)."""
    try:
        if granularity == "day":
            days = round(window_s / 86400.0)
            label = (date.fromisoformat(last) - timedelta(days=days)).isoformat()
        else:
            label = periods.label(granularity, periods.start_of(granularity, last) - window_s)
    except (ValueError, OverflowError, OSError):
        label = ""
    if not (label[:4].isdigit() and label[4:5] == "-" and label >= "1000"):
        raise ApiError(
            400,
            "invalid_range",
            f"the default range before {last} would start before year 1000: give `from`",
        )
    return label


def readable_last(
    first: str, last: str, granularity: Granularity, periods: Periods, margin_s: float = 0.0
) -> str | None:
    """`last`, or the latest period of `first`..`last` whose end plus `margin_s` (seconds a
    raw scan reaches past its range) is no later than the last instant a label names in
    `periods`' zone (module docstring); None when no period of the range is."""
    limit = min(LAST_INSTANT, periods.end_of("day", "9999-12-31") - 1.0) - margin_s
    if periods.end_of(granularity, last) <= limit:
        return last
    try:
        holding = periods.label(granularity, limit)
        before = periods.label(granularity, periods.start_of(granularity, holding) - 1.0)
    except (ValueError, OverflowError, OSError):
        return None
    if _starts(before, granularity, periods) < _starts(first, granularity, periods):
        return None
    return before


async def compared(
    first: str,
    last: str,
    granularity: Granularity,
    periods: Periods,
    compare: bool,
    load: Callable[[str, str], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """`{"from", "to", **load(first, last)}`, or with `compare` that as `current` beside the
    previous range's as `previous`. Raises ApiError 400 `invalid_range` for a range too long
    to compare, `before_horizon` naming the previous range when only its raw scan is refused."""
    current = {"from": first, "to": last, **await load(first, last)}
    if not compare:
        return current
    try:
        before, until = previous_range(first, last, granularity, periods)
    except PeriodError as exc:
        raise ApiError(400, exc.code, exc.detail) from None
    try:
        previous = await load(before, until)
    except ApiError as exc:
        if exc.error != "before_horizon":
            raise
        raise ApiError(
            400,
            "before_horizon",
            f"compare: the previous range, {before} to {until}, lies before the raw-event "
            f"retention ({exc.detail}); compare a shorter or a later range",
        ) from None
    return {"current": current, "previous": {"from": before, "to": until, **previous}}
