"""`query breakdown DIMENSION`: one dimension's values over a range of hours or days, sorted by
events, `(other)` last, with `--compare` the range of the same length before it. The rows and
the rule for unique users come from `breakdown_report`; the shape is the API's
(`GET /v1/breakdowns/{dimension}`, docs/cli.md)."""

from __future__ import annotations

from typing import Any, Literal

import typer

from behavioral_analytics.breakdown_report import known_dimensions, summarize
from behavioral_analytics.cli.compare import CompareOption, Window, ranged, windows
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    load_config,
    open_for_periods,
    period_table,
    print_json,
)

__all__ = ["query_breakdown"]


def query_breakdown(
    dimension: str = typer.Argument(..., help="page, referrer, utm_source, country, …"),
    granularity: str = typer.Option("day", "--granularity", "-g", help="hour or day."),
    start: str | None = typer.Option(
        None, "--from", metavar="PERIOD", help="First period: a label or a time."
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="PERIOD", help="Last period: a label or a time."
    ),
    compare: bool = CompareOption,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Values shown."),
    as_json: bool = JsonOption,
) -> None:
    """A dimension's values over a range: events, share, and (for one day) unique users."""
    if granularity not in ("hour", "day"):
        fail("--granularity must be hour or day", 2)
    g: Literal["hour", "day"] = granularity  # type: ignore[assignment]  # checked above
    config, store, first, last = open_for_periods(load_config(), start, end, g)
    known = known_dimensions(store.rules)
    if dimension not in known:
        fail(
            f"no breakdown of {dimension!r}: the configured dimensions are "
            f"{', '.join(known) or 'none'}",
            2,
        )
    ranges = windows(first, last, g, config.timezone, compare)
    bodies: dict[Window, dict[str, Any]] = {}
    for window in ranges:
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
                **ranged(ranges, lambda window: bodies[window]),
            }
        )
        return
    for window in ranges:
        window.heading()
        body = bodies[window]
        table = period_table(
            f"{dimension} by events ({granularity}s, {config.timezone})",
            dimension,
            ["events", "share", "unique users"],
        )
        for row in body["values"]:
            users = "-" if row["unique_users"] is None else str(row["unique_users"])
            table.add_row(row["value"], str(row["events"]), f"{row['share']:.1%}", users)
        table.add_section()
        table.add_row("total", str(body["total_events"]), "", "")
        console.print(table)
        if body["values_not_shown"]:
            console.print(f"{body['values_not_shown']} more values (--limit)", highlight=False)
        if body["unique_users_note"]:
            console.print(body["unique_users_note"], highlight=False)
