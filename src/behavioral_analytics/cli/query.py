"""`query`: the read model from the command line — a user's profile and timeline, events of
a type, counts per period, and (from `behavior`) sessions, funnels and identity links. Each
command prints a table, or one JSON document with `--json` (shapes in docs/cli.md)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from behavioral_analytics.aggregation import Granularity
from behavioral_analytics.cli import behavior
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    data_location,
    fits,
    fmt_time,
    load_config,
    open_for_periods,
    open_store,
    period_table,
    print_json,
)

__all__ = ["query_app"]

_BOUND_HELP = "Period label (a coarser one too: 2026-11-28) or RFC 3339 time."

query_app = typer.Typer(help="Read the analytics.", no_args_is_help=True)


@query_app.command("profile")
def query_profile(
    user: str = typer.Argument(..., help="User id."), as_json: bool = JsonOption
) -> None:
    """A user's totals, events by type, first seen and last activity."""
    config = load_config()
    with user_errors():
        profile = open_store(config).profile(user)
    if profile is None:
        if as_json:
            print_json(None)
        fail(f"no profile for user {user!r} in {data_location(config)}")
    if as_json:
        print_json(profile.to_dict())
        return
    table = Table(title=f"profile {user}", show_header=False)
    table.add_row("total events", str(profile.total_events))
    for event_type, count in sorted(profile.events_by_type.items()):
        table.add_row(f"  {event_type}", str(count))
    table.add_row("first seen", fmt_time(profile.first_seen))
    table.add_row("last activity", fmt_time(profile.last_activity))
    console.print(table)


def _print_events(page: Any, title: str, as_json: bool) -> None:
    if as_json:
        print_json({"items": [e.to_dict() for e in page.items], "next_cursor": page.next_cursor})
        return
    table = Table(title=title)
    for column in ("time", "event type", "user", "session", "event id", "properties"):
        table.add_column(column, overflow="fold")
    for stored in page.items:
        event = stored.event
        table.add_row(
            fmt_time(event.timestamp),
            event.event_type,
            event.who,
            event.session_id or "-",
            event.event_id,
            json.dumps(event.properties)[:80],
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@query_app.command("timeline")
def query_timeline(
    user: str = typer.Argument(..., help="User id."),
    limit: int = typer.Option(20, min=1, max=1000),
    cursor: str | None = typer.Option(None, help="From a previous page's next_cursor."),
    as_json: bool = JsonOption,
) -> None:
    """A user's events, newest first."""
    config = load_config()
    with user_errors():
        page = open_store(config).timeline(user, limit, cursor)
    _print_events(page, f"timeline of {user}", as_json)


@query_app.command("events")
def query_events(
    event_type: str = typer.Option(..., "--type", "-t", help="Event type."),
    limit: int = typer.Option(20, min=1, max=1000),
    cursor: str | None = typer.Option(None, help="From a previous page's next_cursor."),
    as_json: bool = JsonOption,
) -> None:
    """Events of one type, newest first."""
    config = load_config()
    with user_errors():
        page = open_store(config).events_by_type(event_type, limit, cursor)
    _print_events(page, f"{event_type} events", as_json)


@query_app.command("series")
def query_series(
    granularity: str = typer.Option("hour", "--granularity", "-g", help="minute, hour or day."),
    start: str | None = typer.Option(None, "--from", metavar="PERIOD", help=_BOUND_HELP),
    end: str | None = typer.Option(None, "--to", metavar="PERIOD", help=_BOUND_HELP),
    event_type: str | None = typer.Option(None, "--type", "-t", help="Only this event type."),
    as_json: bool = JsonOption,
) -> None:
    """Counts per minute, hour or day: total, by type, unique users (hour and day)."""
    if granularity not in ("minute", "hour", "day"):
        fail("--granularity must be minute, hour or day", 2)
    g: Granularity = granularity  # type: ignore[assignment]  # checked above
    config, store, first, last = open_for_periods(load_config(), start, end, g)
    with user_errors():
        points = store.series(g, first, last)
    rows = []
    for point in points:
        row = point.to_dict()
        if event_type is not None:
            row["total_events"] = point.events_by_type.get(event_type, 0)
            row["events_by_type"] = {event_type: row["total_events"]}
            row["unique_users"] = None
        rows.append(row)
    if as_json:
        print_json({"granularity": granularity, "timezone": config.timezone, "points": rows})
        return
    types = sorted({t for row in rows for t in row["events_by_type"]})
    widest = max((len(row["period"]) for row in rows), default=6)
    wide = fits(["x" * widest, "total", "unique users", *types])
    title = f"{granularity} series ({config.timezone})"
    table = period_table(
        title, "period", ["total", "unique users", *(types if wide else ["by type"])]
    )
    for row in rows:
        uniques = "-" if row["unique_users"] is None else str(row["unique_users"])
        by_type = row["events_by_type"]
        if wide:
            cells = [str(by_type.get(t, 0)) for t in types]
        else:
            cells = [" ".join(f"{t} {count}" for t, count in sorted(by_type.items()))]
        table.add_row(row["period"], str(row["total_events"]), uniques, *cells)
    console.print(table)


query_app.command("sessions")(behavior.query_sessions)
query_app.command("funnel")(behavior.query_funnel)
query_app.command("links")(behavior.query_links)
