"""`query retention`: people by the day they were first seen (or first did `--start-event`),
and the share of each cohort
active again N days or weeks later (rule: `behavioral_analytics.retention`, docs/behavior.md
"Retention"). Registered under `query` by `root`."""

from __future__ import annotations

import time

import typer

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    fits,
    load_config,
    open_for_periods,
    period_table,
    print_json,
)
from behavioral_analytics.retention import (
    DEFAULT_COHORT_DAYS,
    DEFAULT_MAX_OFFSET,
    RetentionCohort,
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
        "their first-seen day; a type nobody sent gives no cohorts.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Retention: the people first seen (or who first did --start-event) on each day, and
    how many were active again on each of the N days (or weeks) after. Cohort days must lie
    within the raw-event retention."""
    if unit not in ("day", "week"):
        fail("--unit must be day or week", 2)
    chosen: Unit = "week" if unit == "week" else "day"
    config, store, first, last = open_for_periods(load_config(), start, end, "day")
    today = Periods(config.timezone).label("day", time.time())
    first, last = default_range(first, last, today)
    with user_errors(RetentionError):
        found = store.retention(first, last, max_offset, chosen, start_event)
    if as_json:
        print_json(
            {
                "from": first,
                "to": last,
                "unit": chosen,
                "max": max_offset,
                "start_event": start_event,
                "timezone": config.timezone,
                "cohorts": [c.to_dict() for c in found],
            }
        )
        return
    _print_table(found, chosen, max_offset, first, last, start_event)


def _print_table(
    found: list[RetentionCohort],
    unit: Unit,
    max_offset: int,
    first: str,
    last: str,
    start_event: str | None,
) -> None:
    columns = [f"{unit} {n}" for n in range(1, max_offset + 1)]
    counts = fits(["2026-11-28", "people", *(["9999 (100%)"] * max_offset)])
    by = f" (cohorts by first {start_event})" if start_event is not None else ""
    table = period_table(
        f"retention {first} .. {last}{by}: share of each cohort active again, per {unit}",
        "cohort",
        ["people", *columns],
    )
    for cohort in found:
        cells = []
        for n in range(1, max_offset + 1):
            if n >= len(cohort.returning):
                cells.append("")  # not begun yet
                continue
            back = cohort.returning[n]
            rate = f"{back / cohort.size:.0%}"
            cells.append(f"{back} ({rate})" if counts else rate)
        table.add_row(cohort.cohort, str(cohort.size), *cells)
    console.print(table)
    if not found:
        did = (
            f"did {start_event} for the first time" if start_event is not None else "was first seen"
        )
        console.print(f"nobody {did} on those days")
