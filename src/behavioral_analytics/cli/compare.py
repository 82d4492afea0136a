"""`--compare` for the ranged queries (series, sessions, funnel, breakdown): the asked range and
the range of the same length just before it (rules: `period_bounds.previous_range`).

With `--compare` the range needs a start (`--from`); `--to` defaults to the current period. The
JSON answer then holds `current` and `previous`, each `{"from", "to", …}` with the fields an
answer without `--compare` has; tables are printed once per range, under a line naming it and
its bounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.cli.errors import fail
from behavioral_analytics.cli.shared import console
from behavioral_analytics.period_bounds import PeriodError, previous_range

__all__ = ["CompareOption", "Window", "ranged", "windows"]

CompareOption = typer.Option(
    False,
    "--compare",
    help="Also show the range of the same length just before (needs --from; JSON: `current` "
    "and `previous`).",
)


@dataclass(frozen=True, slots=True)
class Window:
    """One range of a query: `name` is `current`, `previous`, or None without `--compare`;
    bounds are period labels (None: unbounded)."""

    name: str | None
    first: str | None
    last: str | None

    def heading(self) -> None:
        """Print `current: A to B` on its own line before this range's table (nothing without
        `--compare`): a table's title wraps to the table's width."""
        if self.name is not None:
            console.print(f"{self.name}: {self.first} to {self.last}", highlight=False)


def windows(
    first: str | None,
    last: str | None,
    granularity: Granularity,
    timezone: str,
    compare: bool,
    *,
    now: Callable[[], float] = time.time,
) -> list[Window]:
    """The ranges to read: the asked one, and with `compare` the previous one. Exits 2 with one
    line when `compare` has no `--from`, or the range is too long to compare."""
    if not compare:
        return [Window(None, first, last)]
    if first is None:
        fail("--compare needs --from (and --to, default: the current period)", 2)
    periods = Periods(timezone)
    end = last if last is not None else periods.label(granularity, now())
    if periods.start_of(granularity, first) > periods.start_of(granularity, end):
        fail(f"--from/--to: from ({first}) is after to ({end})", 2)
    try:
        before, until = previous_range(first, end, granularity, periods)
    except PeriodError as exc:
        fail(f"--compare: {exc}", 2)
    return [Window("current", first, end), Window("previous", before, until)]


def ranged(ranges: list[Window], load: Callable[[Window], dict[str, Any]]) -> dict[str, Any]:
    """The JSON fields of the ranges: `{"from", "to", …}` without `--compare`, else
    `{"current": {"from", "to", …}, "previous": {…}}`; `from` and `to` are the range's labels
    (`null` where it is open), unless `load` gives them (a filtered answer's resolved range)."""
    fields = [{"from": window.first, "to": window.last, **load(window)} for window in ranges]
    if len(ranges) == 1 and ranges[0].name is None:
        return fields[0]
    return {window.name or "current": body for window, body in zip(ranges, fields, strict=True)}
