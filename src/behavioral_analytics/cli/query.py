"""`query`: the read model from the command line — a user's profile and timeline, events of
a type, counts per period, and (from `behavior`) sessions, funnels and identity links. Each
command prints a table, or one JSON document with `--json` (shapes in docs/cli.md)."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from typing import Any

import typer

from behavioral_analytics.actors import ANONYMOUS_PREFIX
from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.bots import BOT_PROPERTY, is_bot
from behavioral_analytics.breakdown_report import known_dimensions
from behavioral_analytics.cli import behavior, breakdown
from behavioral_analytics.cli.compare import CompareOption, Window, ranged, windows
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.filters import (
    FilterOption,
    ToOption,
    bounds,
    filters_of,
    from_option,
    print_source,
    refusals,
)
from behavioral_analytics.cli.shared import (
    JsonOption,
    check_event_type,
    check_user_id,
    console,
    cursor_errors,
    data_location,
    fmt_time,
    load_config,
    open_for_periods,
    open_store,
    plural,
    print_json,
)
from behavioral_analytics.cli.tables import TextTable, fits, period_table
from behavioral_analytics.filtered_queries import filtered_series_answer
from behavioral_analytics.listing_cursors import bind, unbind
from behavioral_analytics.raw_queries import Filter
from behavioral_analytics.store import NotSupported, Store

__all__ = ["query_app"]

_BOUND_HELP = "First period: a label (a coarser one too: 2026-11-28) or an RFC 3339 time."
_LIMIT_HELP = "Events per page."
_CURSOR_HELP = "From a previous page's next_cursor."
_EXACT_TYPES = "(types match exactly, case included)"

query_app = typer.Typer(help="Read the analytics.", no_args_is_help=True)


@query_app.command("profile")
def query_profile(
    user: str = typer.Argument(..., help="User id."), as_json: bool = JsonOption
) -> None:
    """A user's totals, events by type, first seen and last activity."""
    check_user_id(user)
    config = load_config()
    with user_errors():
        store = open_store(config)
        profile = store.profile(user)
        if profile is None:
            why = _bots_only(store, user) or _visitor_hint(store, user, "profile")
            fail(f"no profile for user {user!r} in {data_location(config)}{why}")
    if as_json:
        print_json(profile.to_dict())
        return
    table = TextTable(title=f"profile {user}", show_header=False)
    table.add_row("total events", str(profile.total_events))
    for event_type, count in sorted(profile.events_by_type.items()):
        table.add_row(f"  {event_type}", str(count))
    table.add_row("first seen", fmt_time(profile.first_seen))
    table.add_row("last activity", fmt_time(profile.last_activity))
    console.print(table)


def _bots_only(store: Store, user: str) -> str:
    """Why a user with events has no profile, when it is so: every event of theirs was flagged
    as a crawler's (docs/behavior.md, "Bots"); else nothing."""
    page = store.timeline(user, limit=50)
    if not page.items or not all(is_bot(e.event.properties) for e in page.items):
        return ""
    bots = Counter(str(e.event.properties[BOT_PROPERTY]) for e in page.items)
    count = plural(len(page.items), "event")
    if page.next_cursor:
        count = f"at least {count}"
    names = ", ".join(f"{name!r}" for name, _ in bots.most_common(3))
    return (
        f": every event of theirs ({count}) is flagged as a crawler's ($bot {names}): "
        "counted apart (bot_events), never in a profile; `query timeline` lists them"
    )


def _visitor_hint(store: Store, user: str, command: str) -> str:
    """Why `user` (a user id, or `anonymous:ID`) has nothing to show, where its text names an
    anonymous id that does: one whose link to a user makes its events count for that user
    (docs/behavior.md, "Identity"), or one with events of its own. The line's end naming the
    `query COMMAND` to run; else nothing."""
    visitor = user if user.startswith(ANONYMOUS_PREFIX) else f"{ANONYMOUS_PREFIX}{user}"
    anonymous_id = visitor.removeprefix(ANONYMOUS_PREFIX)
    try:
        linked = sorted({link.user_id for link in store.links(visitor) if link.status == "active"})
    except NotSupported:
        linked = []
    if linked:
        users = " and ".join(repr(u) for u in linked)
        run = " / ".join(f"`query {command} {shlex.quote(u)}`" for u in linked)
        return (
            f"; the anonymous id {anonymous_id!r} is linked to user {users}, and its events "
            f"count for them: {run} (`query links {shlex.quote(visitor)}`)"
        )
    if user.startswith(ANONYMOUS_PREFIX) or not store.timeline(visitor, 1, None).items:
        return ""
    return f"; the anonymous id {user!r} has some: `query {command} {shlex.quote(visitor)}`"


def _shortened(text: str, chars: int) -> str:
    """`text`, or its first `chars` characters and an ellipsis: a cut shows it is one."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _print_events(
    page: Any, scope: tuple[str, ...], title: str, as_json: bool, *, none: str | None = None
) -> None:
    """A page of events as a table, or `--json`, with its next cursor bound to the listing
    `scope` (`listing_cursors`); under an empty table, the line `none` (None: nothing)."""
    next_cursor = bind(page.next_cursor, scope)
    if as_json:
        print_json({"items": [e.to_dict() for e in page.items], "next_cursor": next_cursor})
        return
    table = TextTable(title=title)
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
            _shortened(json.dumps(event.properties), 80),
        )
    console.print(table)
    if not page.items and none:
        console.print(none, highlight=False)
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}")


@query_app.command("timeline")
def query_timeline(
    user: str = typer.Argument(..., help="User id."),
    limit: int = typer.Option(20, min=1, max=1000, help=_LIMIT_HELP),
    cursor: str | None = typer.Option(None, help=_CURSOR_HELP),
    as_json: bool = JsonOption,
) -> None:
    """A user's events, newest first."""
    check_user_id(user)
    config = load_config()
    scope = ("timeline", user)  # the API's listing: a cursor continues in either
    none = None
    with user_errors(), cursor_errors(cursor):
        store = open_store(config)
        page = store.timeline(user, limit, unbind(cursor, scope))
        if not page.items and not cursor and not as_json:
            none = f"no events of {user!r}" + _visitor_hint(store, user, "timeline")
    _print_events(page, scope, f"timeline of {user}", as_json, none=none)


@query_app.command("events")
def query_events(
    event_type: str = typer.Option(..., "--type", "-t", help="Event type."),
    limit: int = typer.Option(20, min=1, max=1000, help=_LIMIT_HELP),
    cursor: str | None = typer.Option(None, help=_CURSOR_HELP),
    as_json: bool = JsonOption,
) -> None:
    """Events of one type, newest first."""
    check_event_type(event_type)
    config = load_config()
    scope = ("events", event_type)
    with user_errors(), cursor_errors(cursor):
        page = open_store(config).events_by_type(event_type, limit, unbind(cursor, scope))
    none = None if cursor else f"no {event_type!r} events {_EXACT_TYPES}"
    _print_events(page, scope, f"{event_type} events", as_json, none=none)


# The range of a filtered series without `--from` (the API's defaults; `--from`'s help).
_FILTERED_WINDOWS_S: dict[str, float] = {"minute": 3600.0, "hour": 48 * 3600.0, "day": 30 * 86400.0}


@query_app.command("series")
def query_series(
    granularity: str = typer.Option("hour", "--granularity", "-g", help="minute, hour or day."),
    start: str | None = from_option(
        "the last 1 hour (minute), 48 hours (hour) or 30 days (day)", _BOUND_HELP
    ),
    end: str | None = ToOption,
    event_type: str | None = typer.Option(None, "--type", "-t", help="Only this event type."),
    compare: bool = CompareOption,
    where: list[str] | None = FilterOption,
    as_json: bool = JsonOption,
) -> None:
    """Counts per minute, hour or day: total, by type, unique users (hour and day)."""
    if granularity not in ("minute", "hour", "day"):
        fail("--granularity must be minute, hour or day", 2)
    if event_type is not None:
        check_event_type(event_type)
    g: Granularity = granularity  # type: ignore[assignment]  # checked above
    config, store, first, last = open_for_periods(load_config(), start, end, g)
    filters = filters_of(where, store)
    if filters and event_type is not None:
        filters = (*filters, Filter("event_type", event_type))
    ranges = windows(first, last, g, config.timezone, compare)
    if filters:
        _print_filtered(config, store, g, ranges, filters, as_json)
        return
    rows_of: dict[Window, list[dict[str, Any]]] = {}
    for window in ranges:
        with user_errors():
            points = store.series(g, window.first, window.last)
            if event_type is not None:
                points = [p for point in points if (p := point.of_type(event_type)) is not None]
            rows_of[window] = [point.to_dict() for point in points]
    head: dict[str, Any] = {"granularity": granularity, "timezone": config.timezone}
    if as_json:
        print_json({**head, **ranged(ranges, lambda window: {"points": rows_of[window]})})
        return
    for window in ranges:
        window.heading()
        _print_series(rows_of[window], f"{granularity} series ({config.timezone})")
        if event_type is not None and not rows_of[window]:
            console.print(f"no {event_type!r} events there {_EXACT_TYPES}", highlight=False)


def _print_filtered(
    config: Any,
    store: Any,
    g: Granularity,
    ranges: list[Window],
    filters: tuple[Filter, ...],
    as_json: bool,
) -> None:
    periods = Periods(config.timezone)
    kept = known_dimensions(store.rules)
    bound = config.raw_scan_max_events
    bodies: dict[Window, dict[str, Any]] = {}
    for window in ranges:
        first, last = bounds(window, g, config, _FILTERED_WINDOWS_S[g])
        with user_errors(), refusals():
            found = filtered_series_answer(store, periods, kept, g, filters, first, last, bound)
        bodies[window] = {"from": first, "to": last, **found}
    head: dict[str, Any] = {
        "granularity": g,
        "timezone": config.timezone,
        "filters": [f.to_dict() for f in filters],
    }
    if as_json:
        print_json({**head, **ranged(ranges, lambda window: bodies[window])})
        return
    for window in ranges:
        window.heading()
        body = bodies[window]
        table = period_table(
            f"{g} series ({config.timezone})", "period", ["total", "unique users", "exact"]
        )
        for row in body["points"]:
            uniques = "-" if row["unique_users"] is None else str(row["unique_users"])
            exact = "yes" if row["exact"] else "no: may be in (other)"
            table.add_row(row["period"], str(row["total_events"]), uniques, exact)
        console.print(table)
        print_source(filters, body, matched=bool(body["points"]))


def _print_series(rows: list[dict[str, Any]], title: str) -> None:
    """The series table: a period's human events, unique users, crawlers' events (`bots`,
    where any period has some) and events by type (a column each where they fit)."""
    types = sorted({t for row in rows for t in row["events_by_type"]})
    bots = ["bots"] if any(row.get("bot_events") for row in rows) else []
    widest = max((len(row["period"]) for row in rows), default=6)
    wide = fits(["x" * widest, "total", "unique users", *bots, *types])
    shown = types if wide else ["by type"]
    table = period_table(title, "period", ["total", "unique users", *bots, *shown])
    for row in rows:
        uniques = "-" if row["unique_users"] is None else str(row["unique_users"])
        crawlers = [str(row.get("bot_events") or 0)] if bots else []
        by_type = row["events_by_type"]
        if wide:
            cells = [str(by_type.get(t, 0)) for t in types]
        else:
            # type=count pairs: a line wraps between pairs, never between a type and its count
            cells = [" ".join(f"{t}={count}" for t, count in sorted(by_type.items()))]
        table.add_row(row["period"], str(row["total_events"]), uniques, *crawlers, *cells)
    console.print(table)


query_app.command("sessions")(behavior.query_sessions)
query_app.command("funnel")(behavior.query_funnel)
query_app.command("links")(behavior.query_links)
query_app.command("breakdown")(breakdown.query_breakdown)
