"""`GET /v1/breakdowns/{dimension}` (read key): one dimension's values over a range of hours or
days, sorted by events, `(other)` last (`breakdown_report`), with `compare=true` the range of
the same length before it; with `filter=` narrowed by other dimensions' values and counted from
the raw events (`filtered_queries`). Included by the query router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from behavioral_analytics.api.parameters import check_parameters
from behavioral_analytics.api.ranges import (
    Compare,
    Filters,
    asked_range,
    compared,
    filters_of,
    readable_last,
    scanned,
)
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.api.schemas import read_errors
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.breakdown_report import no_breakdown, summarize
from behavioral_analytics.filtered_queries import filtered_breakdown
from behavioral_analytics.raw_queries import breakdown as raw_breakdown
from behavioral_analytics.raw_queries import horizon_s, session_window
from behavioral_analytics.session_breakdowns import session_dimensions
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.store import NotSupported

__all__ = ["DEFAULT_WINDOWS_S", "router"]

# The range when `from` is not given: 48 hours or 7 days before `to`.
DEFAULT_WINDOWS_S: dict[str, float] = {"hour": 48 * 3600.0, "day": 6 * 86400.0}

Bound = Annotated[str | None, Query(max_length=64, description="Period label or time")]


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(
        tags=["query"],
        dependencies=[Depends(state.read_key), Depends(check_parameters)],
        responses=read_errors(501),
    )
    store = state.store

    @routes.get(
        "/v1/breakdowns/{dimension}",
        summary="One dimension's values over a range: events, share, unique users",
    )
    async def breakdown(
        dimension: Annotated[str, Path(min_length=1, max_length=300)],
        granularity: Literal["hour", "day"] = "day",
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description="Period label or time; default: 48 h (hour) or 7 days (day) to `to`",
            ),
        ] = None,
        to: Bound = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Values shown")] = 20,
        compare: Compare = False,
        filter: Filters = None,
    ) -> dict[str, Any]:
        filters = filters_of(filter, store.rules)
        # Entry and exit pages are kept beside the configured dimensions (sessions only).
        known = session_dimensions(store.rules.breakdowns) if store.rules else ()
        if dimension not in known:
            raise ApiError(
                400,
                "unknown_dimension",
                no_breakdown(dimension, known),
            )
        periods = state.periods
        start, end = asked_range(
            from_,
            to,
            granularity,
            periods,
            state.clock(),
            DEFAULT_WINDOWS_S[granularity],
            raw_retention_s=state.settings.raw_retention_days * 86400.0 if filters else None,
        )

        def supported(first: str, last: str) -> Callable[[], Any]:
            def call() -> Any:
                try:
                    return store.breakdown(dimension, granularity, first, last)
                except NotSupported as exc:
                    raise ApiError(501, "not_supported", str(exc)) from None

            return call

        async def load(first: str, last: str) -> dict[str, Any]:
            if filters:
                settings = state.settings
                bound = settings.raw_scan_max_events
                since_s = horizon_s(state.clock(), settings.raw_retention_days * 86400.0)
                rules = store.rules.sessions if store.rules else SessionRules()
                until = readable_last(first, last, granularity, periods, session_window(rules))
                if until is None:
                    nothing = raw_breakdown(
                        [], filters, dimension, rules, periods, granularity, first, last, limit
                    )
                    return {**nothing.to_dict(), "answered_from": "raw_events", "scanned_events": 0}
                return await state.read(
                    ("breakdown", dimension, granularity, first, until, limit, filters),
                    scanned(
                        lambda: filtered_breakdown(
                            store,
                            periods,
                            dimension,
                            rules,
                            granularity,
                            filters,
                            first,
                            until,
                            limit,
                            bound,
                            since_s,
                        )
                    ),
                )
            points = await state.read(
                ("breakdown", dimension, granularity, first, last), supported(first, last)
            )
            summary = summarize(points, granularity, first, last, limit)
            return {**summary.to_dict(), "points": [point.to_dict() for point in points]}

        return {
            "dimension": dimension,
            "granularity": granularity,
            "timezone": periods.timezone,
            **({"filters": [f.to_dict() for f in filters]} if filters else {}),
            **await compared(start, end, granularity, periods, compare, load),
            "freshness": await state.freshness(),
        }

    return routes
