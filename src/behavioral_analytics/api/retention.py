"""`GET /v1/retention` (read key): people by the day they were first seen (or first did
`start_event`) and how many of each cohort were active again N days or weeks later (rule:
`behavioral_analytics.retention`, docs/behavior.md "Retention"; answer: docs/api.md).

`filter=DIMENSION:VALUE` (repeatable) keeps the people with an event on their cohort day that
matches every filter, counted from the raw events (`filtered_queries.filtered_retention`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from behavioral_analytics.api.parameters import check_parameters
from behavioral_analytics.api.ranges import Filters, filters_of, resolve_period, scanned
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.api.schemas import read_errors
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.filtered_queries import filtered_retention
from behavioral_analytics.retention import (
    DEFAULT_COHORT_DAYS,
    DEFAULT_MAX_OFFSET,
    MAX_OFFSET,
    MAX_START_EVENT_CHARS,
    UNIT_DAYS,
    RetentionCohort,
    RetentionError,
    Unit,
    default_range,
)
from behavioral_analytics.store import NotSupported

__all__ = ["router"]


def router(state: ApiState) -> APIRouter:
    """The retention route on `state`'s store."""
    routes = APIRouter(
        tags=["behavior"],
        dependencies=[Depends(state.read_key), Depends(check_parameters)],
        responses=read_errors(501),
    )
    store = state.store

    @routes.get(
        "/v1/retention",
        summary="Cohorts by first-seen day (or first start event): the people of each active "
        "again N days or weeks on",
    )
    async def retention(
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=64,
                description=f"First cohort day (label or time); default: {DEFAULT_COHORT_DAYS} "
                "days ending at `to`",
            ),
        ] = None,
        to: Annotated[
            str | None,
            Query(max_length=64, description="Last cohort day (label or time); default: today"),
        ] = None,
        unit: Annotated[Unit, Query(description="Periods counted after: day or week")] = "day",
        max_offset: Annotated[
            int,
            Query(
                alias="max",
                # bounds checked by `retention.plan`: 400 invalid_range, as the docs say
                description=f"The last period counted (day or week N): at most "
                f"{MAX_OFFSET['day']} days or {MAX_OFFSET['week']} weeks",
            ),
        ] = DEFAULT_MAX_OFFSET,
        start_event: Annotated[
            str | None,
            Query(
                description="Cohorts by the day each person first did this event type, not "
                f"their first-seen day (1 to {MAX_START_EVENT_CHARS} characters; a type nobody "
                "sent gives no cohorts)",
            ),
        ] = None,
        filter: Filters = None,
    ) -> dict[str, Any]:
        filters = filters_of(filter, store.rules)
        periods = state.periods
        first = resolve_period(from_, "day", periods) if from_ else None
        last = resolve_period(to, "day", periods, end=True) if to else None
        first, last = default_range(first, last, periods.label("day", state.clock()))
        until = _counted_until(first, last, unit, max_offset)

        def load() -> list[RetentionCohort]:
            if until is None:
                return []
            try:
                return store.retention(first, until, max_offset, unit, start_event)
            except NotSupported as exc:
                raise ApiError(501, "not_supported", str(exc)) from None
            except RetentionError as exc:
                raise ApiError(400, exc.code, exc.detail) from None

        def load_filtered() -> dict[str, Any]:
            if until is None:
                return {"cohorts": [], "answered_from": "raw_events", "scanned_events": 0}
            try:
                return filtered_retention(
                    store,
                    periods,
                    filters,
                    first,
                    until,
                    max_offset,
                    unit,
                    start_event,
                    state.settings.raw_scan_max_events,
                )
            except RetentionError as exc:
                raise ApiError(400, exc.code, exc.detail) from None

        key = ("retention", first, last, unit, max_offset, start_event)
        if filters:
            body = await state.read((*key, filters), scanned(load_filtered))
            answer = {"filters": [f.to_dict() for f in filters], **body}
        else:
            answer = {"cohorts": [c.to_dict() for c in await state.read(key, load)]}
        return {
            "from": first,
            "to": last,
            "unit": unit,
            "max": max_offset,
            "start_event": start_event,
            "timezone": periods.timezone,
            **answer,
            "freshness": await state.freshness(),
        }

    return routes


def _counted_until(first: str, last: str, unit: Unit, max_offset: int) -> str | None:
    """The last cohort day read: `last`, or the latest day whose `max_offset` periods end by
    9999-12-31 (later cohort days, in year 9999, hold nobody yet, and their periods cannot be
    named); None when `first` is after it, the answer then holding no cohort. Out-of-bound
    arguments are left to the store to refuse."""
    if not 0 <= max_offset <= MAX_OFFSET.get(unit, -1) or last < first:
        return last
    span = UNIT_DAYS[unit] * (max_offset + 1) - 1
    latest = (date(9999, 12, 31) - timedelta(days=span)).isoformat()
    if last <= latest:
        return last
    return None if first > latest else latest
