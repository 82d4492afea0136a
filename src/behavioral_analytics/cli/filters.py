"""`--filter DIMENSION:VALUE` (repeatable) for the `query` commands: parsing, the range a
filtered answer covers when `--from`/`--to` are not given, and a refused raw scan as one line
(exit 2). The answers themselves come from `filtered_queries`, as the API's do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.breakdown_report import FilterError, known_dimensions
from behavioral_analytics.cli.compare import Window
from behavioral_analytics.cli.errors import fail
from behavioral_analytics.cli.shared import console
from behavioral_analytics.raw_queries import (
    Filter,
    ScanError,
    filter_dimensions,
    parse_filters,
    raw_window_s,
)
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store

__all__ = [
    "FilterOption",
    "RawFilterOption",
    "ToOption",
    "bounds",
    "filters_of",
    "from_option",
    "print_source",
    "refusals",
    "source",
]

_FILTER_HELP = "Only what has this breakdown value; repeatable (all must hold)."
FilterOption = typer.Option(
    None,
    "--filter",
    metavar="DIMENSION:VALUE",
    help=f"{_FILTER_HELP} One on a kept dimension is read from the aggregates, anything else "
    "from the raw events (bounded by BA_RAW_SCAN_MAX_EVENTS).",
)
# Funnels, breakdowns and retention answer a filter from the raw events, whatever it names.
RawFilterOption = typer.Option(
    None,
    "--filter",
    metavar="DIMENSION:VALUE",
    help=f"{_FILTER_HELP} Read from the raw events (bounded by BA_RAW_SCAN_MAX_EVENTS).",
)


def from_option(
    filtered_default: str,
    first: str = "First period: a label (2026-11-28, a coarser one too) or a time.",
) -> Any:
    """`--from` of a ranged query whose range, with `--filter` and no `--from`, starts
    `filtered_default` before now (`bounds`); without `--filter` it is unbounded."""
    return typer.Option(
        None,
        "--from",
        metavar="PERIOD",
        help=f"{first} Default: every stored period; with --filter: {filtered_default}, within "
        "the raw-event retention.",
    )


ToOption = typer.Option(
    None,
    "--to",
    metavar="PERIOD",
    help="Last period: a label or a time. Default: the last stored period; with --filter or "
    "--compare: the current period.",
)


def filters_of(texts: Sequence[str] | None, store: Store) -> tuple[Filter, ...]:
    """The `--filter` values as filters; exits 2 with one line on a bad one."""
    try:
        return parse_filters(texts or (), filter_dimensions(known_dimensions(store.rules)))
    except FilterError as exc:
        fail(f"--filter: {exc}", 2)


def bounds(
    window: Window,
    granularity: Granularity,
    config: Settings,
    default_window_s: float,
    *,
    now: Callable[[], float] = time.time,
) -> tuple[str, str]:
    """A window's (first, last) labels, filled where `--from`/`--to` were not given: to the
    current period, from `default_window_s` before it (shortened to lie within the raw-event
    retention: `raw_queries.raw_window_s`)."""
    periods = Periods(config.timezone)
    at = now()
    last = window.last or periods.label(granularity, at)
    window_s = raw_window_s(default_window_s, granularity, config.raw_retention_days * 86400.0)
    return window.first or periods.label(granularity, at - window_s), last


@contextmanager
def refusals() -> Iterator[None]:
    """Within it, a refused raw scan (`scan_too_large`, `before_horizon`) is one line and
    exit 2."""
    try:
        yield
    except ScanError as exc:
        fail(f"--filter: {exc.detail}", 2)


def source(body: dict[str, Any]) -> str:
    """One line saying where a filtered answer came from."""
    if body.get("answered_from") == "raw_events":
        return f"answered from raw events ({body['scanned_events']:,} scanned)"
    return "answered from the aggregates"


def print_source(filters: Sequence[Filter], body: dict[str, Any], *, matched: bool) -> None:
    """Print the filters and where the answer came from, one line; when nothing `matched`, a
    second line says how values match (an empty table said nothing of `device:Mobile`, or of
    `referrer:direct`, stored as `(direct)`)."""
    shown = ", ".join(f"{f.dimension} = {_shown_value(f.value)}" for f in filters)
    console.print(f"filter: {shown}; {source(body)}", highlight=False)
    if not matched:
        listed = f"`query breakdown {filters[0].dimension}` lists its values"
        if len(filters) > 1:
            listed = "`query breakdown DIMENSION` lists a dimension's values"
        console.print(
            f"no event matched: values match exactly, case included ({listed})", highlight=False
        )


def _shown_value(value: str) -> str:
    """`value` as the filter line prints it: quoted, and said so, when it begins or ends with
    spaces (`--filter "page: /home"` filters on " /home", which matched nothing unseen)."""
    if value == value.strip():
        return value
    return f"{json.dumps(value, ensure_ascii=False)} (its spaces included)"
