"""`query breakdown DIMENSION`: one dimension's values over a range of hours or days, sorted by
events, `(other)` last, with `--compare` the range of the same length before it. The rows and
the rule for unique users come from `breakdown_report`; the shape is the API's
(`GET /v1/breakdowns/{dimension}`, docs/cli.md)."""

from __future__ import annotations

import time
from typing import Any, Literal

import typer

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdown_report import no_breakdown, summarize
from behavioral_analytics.cli.compare import CompareOption, Window, ranged, windows
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.filters import (
    RawFilterOption,
    ToOption,
    bounds,
    filters_of,
    from_option,
    print_source,
    refusals,
)
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    load_config,
    open_for_periods,
    print_json,
)
from behavioral_analytics.cli.tables import TextTable, period_table
from behavioral_analytics.dimensions import SESSION_DIMENSIONS
from behavioral_analytics.filtered_queries import filtered_breakdown
from behavioral_analytics.raw_queries import horizon_s
from behavioral_analytics.session_breakdowns import session_dimensions
from behavioral_analytics.sessions import SessionRules

__all__ = ["query_breakdown"]

# The range of a filtered breakdown without `--from` (the API's defaults: 48 hours, 7 days
# with today's; `--from`'s help).
_DEFAULT_WINDOWS_S: dict[str, float] = {"hour": 48 * 3600.0, "day": 6 * 86400.0}


def query_breakdown(
    dimension: str = typer.Argument(..., help="page, referrer, utm_source, country, …"),
    granularity: str = typer.Option("day", "--granularity", "-g", help="hour or day."),
    start: str | None = from_option("the last 48 hours (hour) or 7 days (day)"),
    end: str | None = ToOption,
    compare: bool = CompareOption,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Values shown."),
    where: list[str] | None = RawFilterOption,
    as_json: bool = JsonOption,
) -> None:
    """A dimension's values over a range: events, share, and (for one day) unique users. With
    `--filter`, narrowed by other dimensions' values and counted from the raw events: every
    value exact, unique users over the range."""
    if granularity not in ("hour", "day"):
        fail("--granularity must be hour or day", 2)
    g: Literal["hour", "day"] = granularity  # type: ignore[assignment]  # checked above
    config, store, first, last = open_for_periods(load_config(), start, end, g)
    # Entry and exit pages are kept beside the configured dimensions (sessions only).
    known = session_dimensions(store.rules.breakdowns) if store.rules else ()
    if dimension not in known:
        fail(
            no_breakdown(dimension, known),
            2,
        )
    filters = filters_of(where, store)
    ranges = windows(first, last, g, config.timezone, compare)
    bodies: dict[Window, dict[str, Any]] = {}
    periods = Periods(config.timezone)
    for window in ranges:
        if filters:
            span = bounds(window, g, config, _DEFAULT_WINDOWS_S[g])
            bound = config.raw_scan_max_events
            since_s = horizon_s(time.time(), config.raw_retention_days * 86400.0)
            rules = store.rules.sessions if store.rules else SessionRules()
            with user_errors(), refusals():
                found = filtered_breakdown(
                    store, periods, dimension, rules, g, filters, *span, limit, bound, since_s
                )
            bodies[window] = {"from": span[0], "to": span[1], **found}
            continue
        with user_errors():
            points = store.breakdown(dimension, g, window.first, window.last)
        span_first = window.first or (points[0].period if points else "")
        span_last = window.last or (points[-1].period if points else "")
        summary = summarize(points, g, span_first, span_last, limit)
        bodies[window] = {
            "from": window.first,
            "to": window.last,
            **summary.to_dict(),
            "points": [p.to_dict() for p in points],
        }
    if as_json:
        print_json(
            {
                "dimension": dimension,
                "granularity": granularity,
                "timezone": config.timezone,
                **({"filters": [f.to_dict() for f in filters]} if filters else {}),
                **ranged(ranges, lambda window: bodies[window]),
            }
        )
        return
    for window in ranges:
        window.heading()
        body = bodies[window]
        # Sessions per value (their first event's), where the store or the raw scan counts them.
        counts_sessions = body.get("total_sessions") is not None
        if dimension in SESSION_DIMENSIONS:
            console.print(_sessions_table(dimension, granularity, config.timezone, body))
        else:
            sessions = ["sessions"] if counts_sessions else []
            table = period_table(
                f"{dimension} by events ({granularity}s, {config.timezone})",
                dimension,
                ["events", "share", "unique users", *sessions],
                values=True,
            )
            for row in body["values"]:
                users = "-" if row["unique_users"] is None else str(row["unique_users"])
                counted = [str(row["sessions"])] if counts_sessions else []
                share = f"{row['share']:.1%}"
                table.add_row(row["value"], str(row["events"]), share, users, *counted)
            table.add_section()
            totals = [str(body["total_sessions"])] if counts_sessions else []
            table.add_row("total", str(body["total_events"]), "", "", *totals)
            console.print(table)
        if body["values_not_shown"]:
            console.print(f"{body['values_not_shown']} more values (--limit)", highlight=False)
        if body["unique_users_note"]:
            console.print(body["unique_users_note"], highlight=False)
        if filters:
            print_source(filters, body, matched=bool(body["total_events"] or body["values"]))


def _sessions_table(
    dimension: str, granularity: str, timezone: str, body: dict[str, Any]
) -> TextTable:
    """The table of a session-only dimension (`entry_page`, `exit_page`): sessions and their
    share per value; such a dimension counts no events and no unique users, so neither is a
    column."""
    table = period_table(
        f"{dimension} by sessions ({granularity}s, {timezone})",
        dimension,
        ["sessions", "share"],
        values=True,
    )
    for row in body["values"]:
        sessions = "-" if row["sessions"] is None else str(row["sessions"])
        table.add_row(row["value"], sessions, f"{row['share']:.1%}")
    table.add_section()
    total = body.get("total_sessions")
    table.add_row("total", "-" if total is None else str(total), "")
    return table
