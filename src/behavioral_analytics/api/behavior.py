"""Behavioral routes (read key): sessions per hour/day, funnels, identity links, groups.

Sessions and funnels take `filter=` (repeatable, `ranges.filters_of`), answered by
`filtered_queries`: a session matches when its first event matches.

Forgetting a user is an operator's action (`behavioral-analytics forget USER`), not an HTTP
route: write keys ship inside apps and read keys inside dashboards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query

from behavioral_analytics.api.parameters import check_parameters
from behavioral_analytics.api.query import Who
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
from behavioral_analytics.api.schemas import NOT_FOUND, read_errors
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.breakdown_report import known_dimensions
from behavioral_analytics.filtered_queries import filtered_funnel, filtered_sessions
from behavioral_analytics.raw_queries import funnel_window, horizon_s, session_window
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.store import NotSupported, StoreError

__all__ = ["router"]

T = TypeVar("T")

Bound = Annotated[str | None, Query(max_length=64, description="Period label or time")]
DayFrom = Annotated[
    str | None,
    Query(
        alias="from", max_length=64, description="Day label or time; default: 30 days before `to`"
    ),
]
DEFAULT_DAYS = 30


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(
        tags=["behavior"],
        dependencies=[Depends(state.read_key), Depends(check_parameters)],
        responses=read_errors(501),
    )
    store = state.store

    def supported(load: Callable[[], T]) -> Callable[[], T]:
        def call() -> T:
            try:
                return load()
            except NotSupported as exc:
                raise ApiError(501, "not_supported", str(exc)) from None

        return call

    def bounds(
        granularity: Literal["hour", "day"],
        start: str | None,
        end: str | None,
        filtered: bool = False,
    ) -> tuple[str, str]:
        return asked_range(
            start,
            end,
            granularity,
            state.periods,
            state.clock(),
            DEFAULT_DAYS * 86400.0,
            raw_retention_s=state.settings.raw_retention_days * 86400.0 if filtered else None,
        )

    def horizon() -> float:
        return horizon_s(state.clock(), state.settings.raw_retention_days * 86400.0)

    @routes.get("/v1/sessions", summary="Sessions started per hour or day")
    async def sessions(
        granularity: Literal["hour", "day"] = "day",
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description="Period label or time; default: 30 days before `to`",
            ),
        ] = None,
        to: Bound = None,
        compare: Compare = False,
        filter: Filters = None,
    ) -> dict[str, Any]:
        filters = filters_of(filter, store.rules)
        first, last = bounds(granularity, from_, to, bool(filters))

        async def load(start: str, end: str) -> dict[str, Any]:
            if filters:
                kept = known_dimensions(store.rules)
                rules = store.rules.sessions if store.rules else SessionRules()
                bound = state.settings.raw_scan_max_events
                horizon_s = horizon()
                until = readable_last(start, end, granularity, state.periods, session_window(rules))
                if until is None:
                    return {"points": [], "answered_from": "raw_events", "scanned_events": 0}
                return await state.read(
                    ("sessions", granularity, start, until, filters),
                    scanned(
                        supported(
                            lambda: filtered_sessions(
                                store,
                                state.periods,
                                kept,
                                rules,
                                granularity,
                                filters,
                                start,
                                until,
                                bound,
                                horizon_s,
                            )
                        )
                    ),
                )
            points = await state.read(
                ("sessions", granularity, start, end),
                supported(lambda: store.session_series(granularity, start, end)),
            )
            return {"points": [p.to_dict() for p in points]}

        return {
            "granularity": granularity,
            "timezone": state.periods.timezone,
            **({"filters": [f.to_dict() for f in filters]} if filters else {}),
            **await compared(first, last, granularity, state.periods, compare, load),
            "freshness": await state.freshness(),
        }

    @routes.get("/v1/funnels", summary="The configured funnels")
    async def funnels() -> dict[str, Any]:
        rules = store.rules
        return {"funnels": [f.to_dict() for f in rules.funnels] if rules else []}

    @routes.get(
        "/v1/funnels/{name}",
        summary="A funnel per entry day: users per step, conversion",
        responses=NOT_FOUND,
    )
    async def funnel(
        name: Annotated[str, Path(min_length=1, max_length=100)],
        from_: DayFrom = None,
        to: Bound = None,
        compare: Compare = False,
        filter: Filters = None,
    ) -> dict[str, Any]:
        definition = store.rules.funnel(name) if store.rules else None
        if definition is None:
            raise ApiError(404, "not_found", f"no funnel named {name[:100]!r}")
        filters = filters_of(filter, store.rules)
        first, last = bounds("day", from_, to, bool(filters))

        async def load(start: str, end: str) -> dict[str, Any]:
            if filters:
                found = definition
                bound = state.settings.raw_scan_max_events
                margin_s = funnel_window(found)
                until = readable_last(start, end, "day", state.periods, margin_s)
                if until is None:
                    return {"days": [], "answered_from": "raw_events", "scanned_events": 0}
                return await state.read(
                    ("funnel", name, start, until, filters),
                    scanned(
                        lambda: filtered_funnel(
                            store, state.periods, found, filters, start, until, bound
                        )
                    ),
                )
            try:
                days = await state.read(
                    ("funnel", name, start, end),
                    supported(lambda: store.funnel(name, start, end)),
                )
            except StoreError as exc:
                raise ApiError(400, "invalid_funnel", str(exc)) from None
            return {"days": [d.to_dict() for d in days]}

        return {
            "funnel": definition.to_dict(),
            "timezone": state.periods.timezone,
            **({"filters": [f.to_dict() for f in filters]} if filters else {}),
            **await compared(first, last, "day", state.periods, compare, load),
            "freshness": await state.freshness(),
        }

    @routes.get("/v1/users/{user_id:path}/links", summary="A user's identity links (audit)")
    async def links(user_id: Who) -> dict[str, Any]:
        found = await state.read(("links", user_id), supported(lambda: store.links(user_id)))
        return {"links": [link.to_dict() for link in found]}

    @routes.get(
        "/v1/groups/{group_id:path}",
        summary="A group: members, latest traits, members' events and unique users per day",
        responses=NOT_FOUND,
    )
    async def group(
        group_id: Annotated[str, Path(min_length=1, max_length=256)],
        from_: DayFrom = None,
        to: Bound = None,
    ) -> dict[str, Any]:
        first, last = bounds("day", from_, to)
        found = await state.read(("group", group_id), supported(lambda: store.group(group_id)))
        if found is None:
            raise ApiError(404, "not_found", f"no group {group_id[:256]!r}")
        return {
            **found.to_dict(),
            "from": first,
            "to": last,
            "timezone": state.periods.timezone,
            "days": [d.to_dict() for d in found.days if first <= d.day <= last],
            "freshness": await state.freshness(),
        }

    return routes
