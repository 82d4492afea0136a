"""The live dashboard: the page at `/` (served openly) and the one JSON document it polls,
`/v1/dashboard` (read key), assembled from a handful of store reads.

"Recent events" come from `events_by_type(T, n)` for the busiest event types of the last 60
minutes (then of today), merged newest first: the composite `(event_type, timestamp desc)` index
serves them on Firestore, where `user_events` has no single-field `timestamp` index. Types taken
from today's bucket alone left the stream empty after midnight until the new day's events came.
The whole document is cached for the TTL with a single flight, so any number of open dashboards
cost the same store reads as one.

The breakdown panels (pages, sources, campaigns, devices, browsers, systems, countries) poll a
second document, `/v1/dashboard/breakdowns`, for the range the page's picker names (`from`,
`to`, `compare`: days in the reporting zone, default the last 7): one breakdown read per
configured panel dimension and range, cached the same way; no panels on a store that keeps no
breakdowns. Everything else the page shows over that range asks the query routes itself
(static/*.js): entry and exit pages (`/v1/breakdowns/entry_page`, `exit_page`), the retention
grid (`/v1/retention`), and, once the page is filtered (`filter=DIMENSION:VALUE`, repeatable,
kept in the address's fragment), every panel and the series, sessions and funnel tiles, each
showing its own answer: a raw scan's note or a refusal's message.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from behavioral_analytics.api.parameters import check_parameters
from behavioral_analytics.api.query import active_users_now
from behavioral_analytics.api.ranges import Compare, check_order, compared, resolve_period
from behavioral_analytics.api.schemas import read_errors
from behavioral_analytics.api.state import ApiState, freshness_body
from behavioral_analytics.breakdown_report import known_dimensions, summarize
from behavioral_analytics.dimensions import DIMENSIONS
from behavioral_analytics.store import (
    BreakdownPoint,
    FunnelDay,
    NotSupported,
    SeriesPoint,
    Store,
    StoredEvent,
)

__all__ = ["STATIC_DIR", "build_dashboard", "router"]

STATIC_DIR = Path(__file__).parent / "static"
CHART_MINUTES = 60
RECENT_TYPES = 6
RECENT_EVENTS = 20
_MAX_PROPERTIES = 6
_MAX_TEXT = 80
# The breakdown panels, in page order (those the store keeps are shown).
PANEL_DIMENSIONS = tuple(name for name in DIMENSIONS if name != "event_type")
PANEL_VALUES = 10
PANEL_DAYS = 7
DayBound = Annotated[str | None, Query(max_length=64, description="Day label or time")]

# No inline script or style, nothing from another origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(tags=["dashboard"])

    @routes.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    # The data routes; the page itself holds none.
    key_first = [Depends(state.read_key), Depends(check_parameters)]

    @routes.get(
        "/v1/dashboard",
        summary="Everything the dashboard shows, in one document",
        dependencies=key_first,
        responses=read_errors(),
    )
    async def dashboard() -> dict[str, Any]:
        body = await state.read(("dashboard",), lambda: build_dashboard(state))
        return {**body, "active_users": await active_users_now(state)}

    @routes.get(
        "/v1/dashboard/breakdowns",
        summary="The dashboard's breakdown panels over a range of days",
        dependencies=key_first,
        responses=read_errors(),
    )
    async def panels(
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description="Day label or time; default: 7 days to `to`",
            ),
        ] = None,
        to: DayBound = None,
        compare: Compare = False,
    ) -> dict[str, Any]:
        periods = state.periods
        now = state.clock()
        last = resolve_period(to, "day", periods, end=True) if to else periods.label("day", now)
        first = (
            resolve_period(from_, "day", periods)
            if from_
            else (date.fromisoformat(last) - timedelta(days=PANEL_DAYS - 1)).isoformat()
        )
        check_order(first, last, periods, "day")
        dimensions = [d for d in PANEL_DIMENSIONS if d in known_dimensions(state.store.rules)]

        def read(start: str, end: str) -> dict[str, list[BreakdownPoint]]:
            try:
                return {d: state.store.breakdown(d, "day", start, end) for d in dimensions}
            except NotSupported:
                return {}

        async def load(start: str, end: str) -> dict[str, Any]:
            found = await state.read(("dashboard-breakdowns", start, end), lambda: read(start, end))
            return {
                "panels": {
                    dimension: summarize(points, "day", start, end, PANEL_VALUES).to_dict()
                    for dimension, points in found.items()
                }
            }

        return {
            "timezone": periods.timezone,
            "dimensions": dimensions,
            **await compared(first, last, "day", periods, compare, load),
            "freshness": await state.freshness(),
        }

    return routes


def _recent_types(minutes: Iterable[SeriesPoint], today: list[tuple[str, int]]) -> list[str]:
    """The event types the recent events are read for: up to `RECENT_TYPES`, the busiest of
    `minutes` (the last 60 minutes' buckets) first, then of `today` (type, count; busiest
    first) not among them."""
    last_hour: Counter[str] = Counter()
    for point in minutes:
        last_hour.update(point.events_by_type)
    ranked = [name for name, _ in sorted(last_hour.items(), key=lambda item: (-item[1], item[0]))]
    ranked += [name for name, _ in today if name not in last_hour]
    return ranked[:RECENT_TYPES]


def build_dashboard(state: ApiState) -> dict[str, Any]:
    """One snapshot of the read model for the page (blocking store reads; cached by the caller)."""
    store = state.store
    periods = state.periods
    now = state.clock()
    first_minute = now - (CHART_MINUTES - 1) * 60
    minute_labels = [periods.label("minute", first_minute + 60 * i) for i in range(CHART_MINUTES)]
    _, hour, day = periods.of(now)

    by_minute = {
        point.period: point for point in store.series("minute", minute_labels[0], minute_labels[-1])
    }
    hour_point = next(iter(store.series("hour", hour, hour)), None)
    day_point = next(iter(store.series("day", day, day)), None)
    minutes = [
        {
            "period": label,
            "t": int(first_minute // 60 + i) * 60,
            "total": by_minute[label].total_events if label in by_minute else 0,
            "by_type": by_minute[label].events_by_type if label in by_minute else {},
        }
        for i, label in enumerate(minute_labels)
    ]
    day_types = day_point.events_by_type if day_point else {}
    top = sorted(day_types.items(), key=lambda item: (-item[1], item[0]))
    recent_pages = [
        store.events_by_type(name, RECENT_EVENTS).items
        for name in _recent_types(by_minute.values(), top)
    ]
    recent = heapq.merge(*recent_pages, key=lambda stored: -stored.event.timestamp)
    return {
        "as_of": now,
        "timezone": periods.timezone,
        "periods": {"hour": hour, "day": day},
        "minutes": minutes,
        "totals": {
            "today": day_point.total_events if day_point else 0,
            "this_hour": hour_point.total_events if hour_point else 0,
            "last_60_minutes": sum(minute["total"] for minute in minutes),
        },
        "unique_users": {
            "today": day_point.unique_users if day_point else 0,
            "this_hour": hour_point.unique_users if hour_point else 0,
        },
        "top_event_types": [{"event_type": name, "count": count} for name, count in top[:10]],
        "recent_events": [_brief(stored) for stored in list(recent)[:RECENT_EVENTS]],
        "dead_letters": store.count_dead_letters(),
        "freshness": freshness_body(store.freshness(), now),
        "backlog": _backlog(state),
        "bots": {"last_60_minutes": sum(p.bot_events or 0 for p in by_minute.values())},
        **_behavior(store, day),
    }


def _backlog(state: ApiState) -> int | None:
    """The messages waiting for a worker (`Broker.backlog`), None where the broker cannot tell
    cheaply or does not answer: beside the last commit's age, the page tells a stopped worker
    from a quiet one."""
    try:
        return state.broker.backlog()
    except Exception:
        return None


def _behavior(store: Store, day: str) -> dict[str, Any]:
    """Today's sessions and first funnel, where the store keeps them."""
    if not store.behavioral or store.rules is None:
        return {"sessions": None, "funnel": None}
    sessions = next(iter(store.session_series("day", day, day)), None)
    funnel = None
    if store.rules.funnels:
        definition = store.rules.funnels[0]
        today = next(iter(store.funnel(definition.name, day, day)), None)
        users = today.users_by_step if today else [0] * len(definition.steps)
        funnel = {
            "name": definition.name,
            "steps": [step.event_type for step in definition.steps],
            **FunnelDay(day, users).to_dict(),
        }
    return {"sessions": sessions.to_dict() if sessions else None, "funnel": funnel}


def _brief(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    properties: dict[str, Any] = {}
    for key, value in list(event.properties.items())[:_MAX_PROPERTIES]:
        if isinstance(value, str):
            properties[key] = value[:_MAX_TEXT]
        elif isinstance(value, int | float | bool) or value is None:
            properties[key] = value
    return {
        "key": event.key,
        "event_id": event.event_id,
        "who": event.who,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "processed_at": stored.processed_at,
        "properties": properties,
    }
