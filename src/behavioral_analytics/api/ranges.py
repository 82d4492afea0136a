"""The `from`/`to` bounds of the query routes, `compare=true` and `filter=`, shared by the
ranged routes (series, sessions, funnels, breakdowns).

Bounds follow `period_bounds` (a bad one is `400 invalid_period`, a reversed range `400
invalid_range`). Given `compare=true` a ranged route answers its range as `current` and the
range of the same length just before it as `previous` (rules: `period_bounds.previous_range`),
each with its `from` and `to` and the fields an answer without `compare` has at the top level.

`filter=DIMENSION:VALUE` (repeatable) narrows an answer (`filtered_queries`); a bad one is
`400 invalid_filter`, a refused raw scan `400 scan_too_large` or `400 before_horizon`. Without
`from`, a filtered answer's default range is shortened to lie within the raw-event retention
(`raw_window_s`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Query

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdown_report import FilterError, known_dimensions
from behavioral_analytics.period_bounds import (
    PeriodError,
    previous_range,
    resolve_bound,
    resolve_range,
)
from behavioral_analytics.raw_queries import (
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
    "raw_window_s",
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

# The longest `filter` parameter: a dimension's name (`property:` and a property's, however
# long) and a value (values are cut at `dimensions.MAX_VALUE_CHARS` when counted).
MAX_FILTER_CHARS = 1024

Filters = Annotated[
    list[str] | None,
    Query(
        alias="filter",
        description=f"DIMENSION:VALUE, repeatable (at most 10, each at most {MAX_FILTER_CHARS} "
        'characters): only what matches every one (docs/breakdowns.md "Filters")',
    ),
]


def filters_of(texts: list[str] | None, rules: BehaviorRules | None) -> tuple[Filter, ...]:
    """The filters asked for (`texts`: the `filter` parameters), on the fixed dimensions and
    those the store with `rules` keeps. Raises ApiError 400 `invalid_filter`."""
    if not texts:
        return ()
    if len(texts) > 10:
        raise ApiError(400, "invalid_filter", "at most 10 filters")
    longest = max(texts, key=len)
    if len(longest) > MAX_FILTER_CHARS:
        raise ApiError(
            400,
            "invalid_filter",
            f"a filter is at most {MAX_FILTER_CHARS} characters, not {len(longest)} "
            f"({longest[:40]!r}…)",
        )
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
) -> tuple[str, str]:
    """The (first, last) period labels a route answers: `to` else the period of `now`, back to
    `from_` else the period `default_window_s` seconds before `now`. Raises ApiError 400
    `invalid_period` or `invalid_range`."""
    end = (
        resolve_period(to, granularity, periods, end=True)
        if to
        else periods.label(granularity, now)
    )
    start = (
        resolve_period(from_, granularity, periods)
        if from_
        else periods.label(granularity, now - default_window_s)
    )
    check_order(start, end, periods, granularity)
    return start, end


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
    to compare."""
    current = {"from": first, "to": last, **await load(first, last)}
    if not compare:
        return current
    try:
        before, until = previous_range(first, last, granularity, periods)
    except PeriodError as exc:
        raise ApiError(400, exc.code, exc.detail) from None
    return {
        "current": current,
        "previous": {"from": before, "to": until, **await load(before, until)},
    }
