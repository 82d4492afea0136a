"""`GET /v1/breakdowns/{dimension}` (read key): one dimension's values over a range of hours or
days, sorted by events, `(other)` last (`breakdown_report`), with `compare=true` the range of
the same length before it. Included by the query router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from behavioral_analytics.api.ranges import Compare, asked_range, compared
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.breakdown_report import known_dimensions, summarize
from behavioral_analytics.store import NotSupported

__all__ = ["DEFAULT_WINDOWS_S", "router"]

# The range when `from` is not given: 48 hours or 7 days before `to`.
DEFAULT_WINDOWS_S: dict[str, float] = {"hour": 48 * 3600.0, "day": 6 * 86400.0}

Bound = Annotated[str | None, Query(max_length=64, description="Period label or time")]


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(tags=["query"])
    store = state.store

    @routes.get(
        "/v1/breakdowns/{dimension}",
        summary="One dimension's values over a range: events, share, unique users",
    )
    async def breakdown(
        request: Request,
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
    ) -> dict[str, Any]:
        state.policy.require_read(request)
        known = known_dimensions(store.rules)
        if dimension not in known:
            raise ApiError(
                400,
                "unknown_dimension",
                f"no breakdown of {dimension[:100]!r}: the configured dimensions are "
                f"{', '.join(known) or 'none'}",
            )
        periods = state.periods
        now = state.clock()
        start, end = asked_range(
            from_, to, granularity, periods, now, DEFAULT_WINDOWS_S[granularity]
        )

        def supported(first: str, last: str) -> Callable[[], Any]:
            def call() -> Any:
                try:
                    return store.breakdown(dimension, granularity, first, last)
                except NotSupported as exc:
                    raise ApiError(501, "not_supported", str(exc)) from None

            return call

        async def load(first: str, last: str) -> dict[str, Any]:
            points = await state.read(
                ("breakdown", dimension, granularity, first, last), supported(first, last)
            )
            summary = summarize(points, granularity, first, last, limit)
            return {**summary.to_dict(), "points": [point.to_dict() for point in points]}

        return {
            "dimension": dimension,
            "granularity": granularity,
            "timezone": periods.timezone,
            **await compared(start, end, granularity, periods, compare, load),
            "freshness": await state.freshness(),
        }

    return routes
