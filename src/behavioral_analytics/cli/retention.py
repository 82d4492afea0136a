"""`query retention`: people by the day they were first seen (or first did `--start-event`),
and the share of each cohort
active again N days or weeks later (rule: `behavioral_analytics.retention`, docs/behavior.md
"Retention"). Registered under `query` by `root`. `--filter` keeps the people with an event on
their cohort day that matches every filter (`filtered_queries.filtered_retention`)."""

from __future__ import annotations

import time
from typing import Any

import typer

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.filters import RawFilterOption, filters_of, print_source, refusals
from behavioral_analytics.cli.shared import (
    JsonOption,
    check_event_type,
    console,
    load_config,
    open_for_periods,
    plural,
    print_json,
)
from behavioral_analytics.cli.tables import fits, period_table
from behavioral_analytics.filtered_queries import filtered_retention
from behavioral_analytics.retention import (
    DEFAULT_COHORT_DAYS,
    DEFAULT_MAX_OFFSET,
    MAX_START_EVENT_CHARS,
    RetentionError,
    Unit,
    default_range,
)

__all__ = ["query_retention"]


def query_retention(
    start: str | None = typer.Option(
        None,
        "--from",
        metavar="DAY",
        help=f"First cohort day: a label (2026-11-28) or a time; default: {DEFAULT_COHORT_DAYS} "
        "days ending at --to.",
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="DAY", help="Last cohort day: a label or a time; default: today."
    ),
    unit: str = typer.Option("day", "--unit", help="day or week: the periods counted after."),
    max_offset: int = typer.Option(
        DEFAULT_MAX_OFFSET, "--max", metavar="N", help="The last period counted (day or week N)."
    ),
    start_event: str | None = typer.Option(
        None,
        "--start-event",
        metavar="TYPE",
        help="Cohorts by the day each person first did this event type (signup, say), not "
        f"their first-seen day (1 to {MAX_START_EVENT_CHARS} characters); a type nobody sent "
        "gives no cohorts.",
    ),
    where: list[str] | None = RawFilterOption,
    as_json: bool = JsonOption,
) -> None:
    """Retention: the people first seen (or who first did --start-event) on each day, and
    how many were active again on each of the N days (or weeks) after. Cohort days must lie
    within the raw-event retention. With `--filter`, only the people with an event on their
    cohort day that matches every filter (read from the raw events)."""
    if unit not in ("day", "week"):
        fail("--unit must be day or week", 2)
    if start_event is not None:
        check_event_type(start_event)
    chosen: Unit = "week" if unit == "week" else "day"
    config, store, first, last = open_for_periods(load_config(), start, end, "day")
    filters = filters_of(where, store)
    periods = Periods(config.timezone)
    first, last = default_range(first, last, periods.label("day", time.time()))
    head: dict[str, Any] = {}
    with user_errors(RetentionError), refusals():
        if filters:
            bound = config.raw_scan_max_events
            body = filtered_retention(
                store, periods, filters, first, last, max_offset, chosen, start_event, bound
            )
            head = {k: v for k, v in body.items() if k != "cohorts"}
            shown = body["cohorts"]
        else:
            shown = [
                c.to_dict() for c in store.retention(first, last, max_offset, chosen, start_event)
            ]
    if as_json:
        print_json(
            {
                "from": first,
                "to": last,
                "unit": chosen,
                "max": max_offset,
                "start_event": start_event,
                "timezone": config.timezone,
                **({"filters": [f.to_dict() for f in filters]} if filters else {}),
                **head,
                "cohorts": shown,
            }
        )
        return
    # Events were read, none matched: the filters left nobody (else the range had nobody).
    filtered = bool(filters) and head.get("scanned_events", 0) > 0
    _print_table(
        shown,
        chosen,
        max_offset,
        f"{first} .. {last} ({config.timezone})",
        start_event,
        filtered=filtered,
    )
    if filters:
        print_source(filters, head, matched=bool(shown))


def _print_table(
    found: list[dict[str, Any]],
    unit: Unit,
    max_offset: int,
    days: str,
    start_event: str | None,
    *,
    filtered: bool = False,
) -> None:
    # Only periods that have begun for some cohort, and as many as the console shows unwrapped.
    begun = min(max_offset, max((len(c["returning"]) - 1 for c in found), default=0))
    wide = begun
    while wide > 1 and not fits(["2026-11-28", "people", *([f"{unit} {wide}"] * wide)]):
        wide -= 1
    clipped, max_offset = begun - wide, wide
    columns = [f"{unit} {n}" for n in range(1, max_offset + 1)]
    counts = fits(["2026-11-28", "people", *(["9999 (100%)"] * max_offset)])
    by = f" (cohorts by first {start_event})" if start_event is not None else ""
    table = period_table(
        f"retention {days}{by}: share active again, per {unit}",
        "cohort",
        ["people", *columns],
    )
    for cohort in found:
        cells = []
        returning, size = cohort["returning"], cohort["size"]
        for n in range(1, max_offset + 1):
            if n >= len(returning):
                cells.append("")  # not begun yet
                continue
            rate = f"{returning[n] / size:.0%}"
            cells.append(f"{returning[n]} ({rate})" if counts else rate)
        table.add_row(cohort["cohort"], str(size), *cells)
    console.print(table)
    if clipped:
        console.print(
            f"{plural(clipped, unit)} more not shown at this width ({unit} {max_offset + 1} "
            f"on): a wider terminal, --max {max_offset} or --json",
            highlight=False,
        )
    if not found:
        did = (
            f"did {start_event} for the first time" if start_event is not None else "was first seen"
        )
        # With filters, the cohorts are only the people with a matching event on their day.
        matching = " with an event there matching every filter" if filtered else ""
        console.print(f"nobody {did} on those days{matching}")
