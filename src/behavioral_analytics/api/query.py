"""Query routes (read key): profiles, timelines, events by type, time series, top event types,
active users and dead letters. Every answer carries the read model's `freshness`.

The Store port is the only data access; reads go through the shared TTL cache.

Bounds, `compare=true` and `filter=` are read by `ranges`; a filtered series is answered by
`filtered_queries` (from the aggregates or a bounded raw scan); the breakdown route
(`breakdowns`) is included here. Page cursors are bound to their listing (`cursors`), and a
parameter a route does not declare is refused (`parameters`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from behavioral_analytics.api import breakdowns
from behavioral_analytics.api.cursors import bind, unbind
from behavioral_analytics.api.parameters import check_parameters
from behavioral_analytics.api.ranges import (
    Compare,
    Filters,
    asked_range,
    compared,
    filters_of,
    readable_last,
    resolve_period,
    scanned,
)
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.api.schemas import NOT_FOUND, read_errors
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.breakdown_report import known_dimensions
from behavioral_analytics.events import DEFAULT_LIMITS
from behavioral_analytics.filtered_queries import filtered_series_answer
from behavioral_analytics.raw_queries import Filter
from behavioral_analytics.store import InvalidCursor, Page

__all__ = ["DEFAULT_WINDOWS_S", "active_users_now", "router"]

# The range of /v1/series when `from` is not given.
DEFAULT_WINDOWS_S: dict[str, float] = {"minute": 3600.0, "hour": 48 * 3600.0, "day": 30 * 86400.0}

# The longest event type, as events have it.
_TYPE_CHARS = DEFAULT_LIMITS.max_event_type_chars

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]


def _checked_type(event_type: str | None) -> str | None:
    """`event_type` as asked; an empty or blank one, or one over `_TYPE_CHARS` characters,
    which no event has, is 400 `invalid_event_type`, as `start_event` is on retention."""
    if event_type is not None and (not event_type.strip() or len(event_type) > _TYPE_CHARS):
        raise ApiError(
            400,
            "invalid_event_type",
            f"event type {event_type[:64]!r}: expected an event type of 1 to {_TYPE_CHARS} "
            "characters, not blank",
        )
    return event_type


Cursor = Annotated[
    str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
]
Who = Annotated[str, Path(min_length=1, max_length=300, description="User id (or anonymous:ID)")]


def _page(page: Page[Any], scope: tuple[str, ...]) -> dict[str, Any]:
    """A page's items and its next cursor, bound to the listing `scope` (`cursors`)."""
    return {
        "items": [item.to_dict() for item in page.items],
        "next_cursor": bind(page.next_cursor, scope),
    }


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(
        tags=["query"],
        dependencies=[Depends(state.read_key), Depends(check_parameters)],
        responses=read_errors(),
    )
    store = state.store

    async def answer(key: tuple[Any, ...], load: Any) -> dict[str, Any]:
        try:
            body = await state.read(key, load)
        except InvalidCursor:
            raise ApiError(
                400, "invalid_cursor", "the cursor is not one this API returned"
            ) from None
        return {**body, "freshness": await state.freshness()}

    @routes.get("/v1/profiles/{user_id:path}", summary="A user's profile", responses=NOT_FOUND)
    async def profile(user_id: Who) -> dict[str, Any]:
        found = await state.read(("profile", user_id), lambda: store.profile(user_id))
        if found is None:
            raise ApiError(404, "not_found", f"no events for user {user_id[:100]!r}")
        return {"profile": found.to_dict(), "freshness": await state.freshness()}

    @routes.get("/v1/users/{user_id:path}/timeline", summary="A user's events, newest first")
    async def timeline(user_id: Who, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
        scope = ("timeline", user_id)
        position = unbind(cursor, scope)
        return await answer(
            ("timeline", user_id, limit, position),
            lambda: _page(store.timeline(user_id, limit, position), scope),
        )

    @routes.get("/v1/events", summary="Events of one type, newest first")
    async def events(
        type: Annotated[str, Query(description=f"Event type (1 to {_TYPE_CHARS} characters)")],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        _checked_type(type)
        scope = ("events", type)
        position = unbind(cursor, scope)
        return await answer(
            ("events", type, limit, position),
            lambda: _page(store.events_by_type(type, limit, position), scope),
        )

    @routes.get("/v1/series", summary="Time series of minute, hour or day buckets")
    async def series(
        granularity: Literal["minute", "hour", "day"] = "hour",
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description="Period label or time; default: "
                "1 h (minute), 48 h (hour) or 30 days (day) before `to`",
            ),
        ] = None,
        to: Annotated[
            str | None, Query(max_length=64, description="Period label or time; default: now")
        ] = None,
        type: Annotated[
            str | None,
            Query(description=f"Only this event type (1 to {_TYPE_CHARS} characters)"),
        ] = None,
        compare: Compare = False,
        filter: Filters = None,
    ) -> dict[str, Any]:
        _checked_type(type)
        filters = filters_of(filter, store.rules)
        if filters and type is not None:
            filters = (*filters, Filter("event_type", type))
        now = state.clock()
        periods = state.periods
        retention_s = state.settings.raw_retention_days * 86400.0 if filters else None
        start, end = asked_range(
            from_,
            to,
            granularity,
            periods,
            now,
            DEFAULT_WINDOWS_S[granularity],
            raw_retention_s=retention_s,
        )

        async def load(first: str, last: str) -> dict[str, Any]:
            if filters:
                kept = known_dimensions(store.rules)
                bound = state.settings.raw_scan_max_events
                until = readable_last(first, last, granularity, periods)
                if until is None:
                    return {"points": [], "answered_from": "raw_events", "scanned_events": 0}
                return await state.read(
                    ("series", granularity, first, until, filters),
                    scanned(
                        lambda: filtered_series_answer(
                            store, periods, kept, granularity, filters, first, until, bound
                        )
                    ),
                )
            points = await state.read(
                ("series", granularity, first, last),
                lambda: store.series(granularity, first, last),
            )
            if type is not None:
                points = [p for point in points if (p := point.of_type(type)) is not None]
            return {"points": [point.to_dict() for point in points]}

        body: dict[str, Any] = {"granularity": granularity, "timezone": periods.timezone}
        if filters:
            body["filters"] = [f.to_dict() for f in filters]
        return {
            **body,
            **await compared(start, end, granularity, periods, compare, load),
            "freshness": await state.freshness(),
        }

    @routes.get("/v1/top-event-types", summary="Event types of one period, most frequent first")
    async def top_event_types(
        granularity: Literal["minute", "hour", "day"] = "day",
        period: Annotated[
            str | None, Query(max_length=64, description="Period label or time; default: now")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        periods = state.periods
        label = (
            resolve_period(period, granularity, periods)
            if period
            else periods.label(granularity, state.clock())
        )
        points = await state.read(
            ("series", granularity, label, label), lambda: store.series(granularity, label, label)
        )
        by_type: dict[str, int] = points[0].events_by_type if points else {}
        ranked = sorted(by_type.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return {
            "granularity": granularity,
            "period": label,
            "total_events": points[0].total_events if points else 0,
            "event_types": [{"event_type": name, "count": count} for name, count in ranked],
            "freshness": await state.freshness(),
        }

    @routes.get("/v1/active-users", summary="Users active in the last 5 and 30 minutes")
    async def active_users() -> dict[str, Any]:
        return {**await active_users_now(state), "freshness": await state.freshness()}

    @routes.get("/v1/dead-letters", summary="Rejected and dead-lettered messages, newest first")
    async def dead_letters(
        limit: Annotated[int, Query(ge=1, le=500)] = 100, cursor: Cursor = None
    ) -> dict[str, Any]:
        scope = ("dead_letters",)
        position = unbind(cursor, scope)
        body = await answer(
            ("dead_letters", limit, position),
            lambda: _page(store.dead_letters(limit, position), scope),
        )
        body["total"] = await state.read(("dead_letter_count",), store.count_dead_letters)
        return body

    routes.include_router(breakdowns.router(state))
    return routes


async def active_users_now(state: ApiState) -> dict[str, Any]:
    # Whole seconds, so that viewers within one second share a cache entry.
    now = int(state.clock())
    store = state.store
    five = await state.read(("active", now - 300), lambda: store.active_users(now - 300))
    thirty = await state.read(("active", now - 1800), lambda: store.active_users(now - 1800))
    return {"last_5_minutes": five, "last_30_minutes": thirty, "as_of": now}
