"""Commands for the behavioral read model: `query sessions`, `query funnel`, `query links`,
`forget`. Registered by `query` (the three queries) and `root` (`forget`)."""

from __future__ import annotations

import time
import unicodedata
from typing import Any, Literal, Protocol, runtime_checkable

import typer
from rich.text import Text

from behavioral_analytics.actors import ANONYMOUS_PREFIX, actor_ids
from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdown_report import known_dimensions
from behavioral_analytics.cli.compare import CompareOption, Window, ranged, windows
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.filters import (
    FilterOption,
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
    check_actor,
    confirm_or_stop,
    console,
    data_location,
    fmt_time,
    load_config,
    open_for_periods,
    open_store,
    plural,
    print_json,
)
from behavioral_analytics.cli.tables import TextTable, period_table
from behavioral_analytics.filtered_queries import filtered_funnel, filtered_sessions
from behavioral_analytics.raw_queries import Filter, horizon_s
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import ForgetReport, LinkedAnonymousId, Store
from behavioral_analytics.wiring import build_broker, check_local_store, local_broker_path

__all__ = ["forget", "query_funnel", "query_links", "query_sessions"]

# The range of a filtered answer without `--from` (the API's default), within raw retention.
DEFAULT_DAYS = 30
FromOption = from_option(f"the last {DEFAULT_DAYS} days")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def query_sessions(
    granularity: str = typer.Option("day", "--granularity", "-g", help="hour or day."),
    start: str | None = FromOption,
    end: str | None = ToOption,
    compare: bool = CompareOption,
    where: list[str] | None = FilterOption,
    as_json: bool = JsonOption,
) -> None:
    """Sessions started per hour or day: count, average duration, bounce rate, events per
    session, and whether the figures are final. With `--filter`, the sessions whose first
    event matches every filter."""
    if granularity not in ("hour", "day"):
        fail("--granularity must be hour or day", 2)
    g: Literal["hour", "day"] = granularity  # type: ignore[assignment]  # checked above
    config, store, first, last = open_for_periods(load_config(), start, end, g)
    filters = filters_of(where, store)
    ranges = windows(first, last, g, config.timezone, compare)
    rows_of: dict[Window, list[dict[str, Any]]] = {}
    bodies: dict[Window, dict[str, Any]] = {}
    for window in ranges:
        if filters:
            bodies[window] = _filtered_sessions(config, store, g, window, filters)
            rows_of[window] = bodies[window]["points"]
            continue
        with user_errors():
            points = store.session_series(g, window.first, window.last)
        rows_of[window] = [point.to_dict() for point in points]
        bodies[window] = {"points": rows_of[window]}
    if as_json:
        head: dict[str, Any] = {"granularity": granularity, "timezone": config.timezone}
        if filters:
            head["filters"] = [f.to_dict() for f in filters]
        print_json({**head, **ranged(ranges, lambda w: bodies[w])})
        return
    for window in ranges:
        window.heading()
        table = period_table(
            f"sessions per {granularity} ({config.timezone})",
            "period",
            ["sessions", "avg duration", "bounce rate", "events per session", "final"],
        )
        table.columns[-1].no_wrap = True  # `provisional` whole; the headers wrap at spaces
        for row in rows_of[window]:
            duration, per_session = row["avg_duration_s"], row["events_per_session"]
            table.add_row(
                row["period"],
                str(row["sessions"]),
                "-" if duration is None else f"{duration:.0f} s",
                _rate(row["bounce_rate"]),
                "-" if per_session is None else f"{per_session:.2f}",
                _final(row.get("final")),
            )
        console.print(table)
        if filters:
            matched = any(row["sessions"] for row in rows_of[window])
            print_source(filters, bodies[window], matched=matched)


def _final(final: bool | None) -> str:
    # None: a filtered answer, which does not say.
    return "-" if final is None else "yes" if final else "provisional"


def _filtered_sessions(
    config: Settings,
    store: Store,
    g: Literal["hour", "day"],
    window: Window,
    filters: tuple[Filter, ...],
) -> dict[str, Any]:
    first, last = bounds(window, g, config, DEFAULT_DAYS * 86400.0)
    periods = Periods(config.timezone)
    kept = known_dimensions(store.rules)
    rules = store.rules.sessions if store.rules else SessionRules()
    bound = config.raw_scan_max_events
    since_s = horizon_s(time.time(), config.raw_retention_days * 86400.0)
    with user_errors(), refusals():
        found = filtered_sessions(
            store, periods, kept, rules, g, filters, first, last, bound, since_s
        )
    return {"from": first, "to": last, **found}


def query_funnel(
    name: str = typer.Argument(..., help="Funnel name (BA_FUNNELS)."),
    start: str | None = FromOption,
    end: str | None = ToOption,
    compare: bool = CompareOption,
    where: list[str] | None = RawFilterOption,
    as_json: bool = JsonOption,
) -> None:
    """Users entering a funnel per day, how many reached each step, and the conversion. With
    `--filter`, the funnel over the events matching every filter."""
    environment = load_config()
    config, store, first, last = open_for_periods(environment, start, end, "day")
    funnel = store.rules.funnel(name) if store.rules else None
    if funnel is None:
        known = ", ".join(f.name for f in store.rules.funnels) if store.rules else ""
        if any(f.name == name for f in environment.behavior_rules().funnels):
            fail(
                f"funnel {name!r} is in BA_FUNNELS but the store has not recorded it (it "
                f"counts: {known or 'none'}): `behavioral-analytics config apply` records it "
                "and counts it from the raw events kept"
            )
        fail(f"no funnel named {name!r} (the store counts: {known or 'none'})", 2)
    filters = filters_of(where, store)
    ranges = windows(first, last, "day", config.timezone, compare)
    rows_of: dict[Window, list[dict[str, Any]]] = {}
    bodies: dict[Window, dict[str, Any]] = {}
    periods = Periods(config.timezone)
    for window in ranges:
        if filters:
            day_from, day_to = bounds(window, "day", config, DEFAULT_DAYS * 86400.0)
            bound = config.raw_scan_max_events
            with user_errors(), refusals():
                found = filtered_funnel(store, periods, funnel, filters, day_from, day_to, bound)
            bodies[window] = {"from": day_from, "to": day_to, **found}
            rows_of[window] = found["days"]
            continue
        with user_errors():
            days = store.funnel(name, window.first, window.last)
        rows_of[window] = [day.to_dict() for day in days]
        bodies[window] = {"days": rows_of[window]}
    if as_json:
        head: dict[str, Any] = {"funnel": funnel.to_dict(), "timezone": config.timezone}
        if filters:
            head["filters"] = [f.to_dict() for f in filters]
        print_json({**head, **ranged(ranges, lambda w: bodies[w])})
        return
    steps = [f"{i}. {step.event_type}" for i, step in enumerate(funnel.steps, 1)]
    for window in ranges:
        window.heading()
        table = period_table(
            f"funnel {name} (window {funnel.window_s:g} s; days in {config.timezone})",
            "day",
            [*steps, "overall"],
        )
        for row in rows_of[window]:
            cells = [str(row["users"][0])]
            for users, conversion in zip(row["users"][1:], row["conversion"], strict=True):
                cells.append(f"{users} ({_rate(conversion)})")
            table.add_row(row["day"], *cells, _rate(row["overall"]))
        console.print(table)
        if filters:
            matched = any(row["users"][0] for row in rows_of[window])
            print_source(filters, bodies[window], matched=matched)


def query_links(
    user: str = typer.Argument(..., help="User id, or anonymous:ID."),
    as_json: bool = JsonOption,
) -> None:
    """The identity links of a user or anonymous id: every identify, active or refused."""
    check_actor(user)
    store = open_store(load_config())
    noted = False  # the anonymous id's links are pointed to: no second line for none
    with user_errors():
        links = store.links(user)
        if (
            not links
            and not user.startswith(ANONYMOUS_PREFIX)
            and store.links(f"{ANONYMOUS_PREFIX}{user}")
        ):
            noted = True
            err_console.print(
                Text.assemble(
                    ("note:", "yellow"),
                    f" no links of user {user!r}; the anonymous id {user!r} has some: "
                    f"`query links anonymous:{user}`",
                ),
                soft_wrap=True,
            )
    if as_json:
        print_json([link.to_dict() for link in links])
        return
    table = TextTable(title=f"identity links of {user}")
    for column in ("anonymous id", "user id", "linked at", "status", "identify event"):
        table.add_column(column, overflow="fold")  # ids whole, to copy them
    for link in links:
        table.add_row(
            link.anonymous_id,
            link.user_id,
            fmt_time(link.linked_at),
            link.status,
            link.event_key,
        )
    console.print(table)
    if not links and not noted:
        console.print(f"no identity links of {user!r}", highlight=False)


@runtime_checkable
class MessageEraser(Protocol):
    """A broker that can delete the messages naming a person (the local one; Pub/Sub cannot
    delete chosen messages: the tombstones drop them when they are delivered)."""

    def forget_messages(self, user_ids: set[str], anonymous_ids: set[str]) -> int: ...


def _user_ids_left(store: Store, report: ForgetReport) -> list[str]:
    """The forgotten anonymous ids that are user ids too, with a profile left: an alias's
    `previousId` (an old login, say) is linked as an anonymous id, while the events it sent as
    a user id count for that user (docs/behavior.md, "alias"), whom this forget does not
    reach."""
    linked = actor_ids(report.persons[1:])[1]  # the first is who was named: not linked
    return sorted(x for x in linked if store.profile(x) is not None)


def _other_spellings(store: Store, who: str) -> list[str]:
    """Actors whose id is `who`'s in its other Unicode normalization form (NFC or NFD: the same
    text, other code points, as `café` typed on one system and sent by another) and who have
    events in the store. Ids are compared exactly, as Segment's are (opaque strings), so
    `forget` of one form leaves the other's."""
    prefix = ANONYMOUS_PREFIX if who.startswith(ANONYMOUS_PREFIX) else ""
    bare = who.removeprefix(prefix)
    nfc, nfd = unicodedata.normalize("NFC", bare), unicodedata.normalize("NFD", bare)
    forms = {prefix + nfc, prefix + nfd} - {who}
    return sorted(f for f in forms if store.timeline(f, limit=1).items)


def _note_spellings(spellings: list[str]) -> None:
    for other in spellings:
        console.print(
            f"note: {other!a} has events too: the same id in another Unicode form, and ids "
            f"are compared exactly; `forget {other}` forgets those (copy the id from this line)",
            soft_wrap=True,
        )


def _forget_in_broker(config: Settings, report: ForgetReport) -> int | None:
    """Messages naming the forgotten persons deleted from the local broker's file (waiting and
    dead-lettered); None with Pub/Sub. A folder without a broker file gets none (forget
    creates nothing)."""
    if config.backend != "local" or not local_broker_path(config).exists():
        return None
    broker = build_broker(config)
    try:
        if not isinstance(broker, MessageEraser):
            return None
        return broker.forget_messages(*actor_ids(report.persons))
    finally:
        broker.close()


def forget(
    user: str = typer.Argument(
        ..., help="User id to forget, or anonymous:ID for a visitor never linked to a user."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = JsonOption,
) -> None:
    """Delete a user's raw events, profile, sessions, funnel entries, identity links, dead
    letters and (local broker) the messages naming them still waiting, take them out of every
    aggregate, and leave a tombstone so that a redelivered event of theirs, or one already
    published when this ran, is dropped (and such a rejected message is not recorded). The
    anonymous ids linked to the user go with them; `anonymous:ID` forgets a visitor who never
    signed in (one linked to a user is refused: forget the user)."""
    check_actor(user)
    config = load_config()
    with user_errors():  # a store it may not write: refused before the question
        check_local_store(config, for_writing=True)
    if not yes:
        confirm_or_stop(f"Forget {user!r} everywhere? This cannot be undone")
    # Published messages no worker has taken yet are forgotten too: the tombstone that drops
    # their redeliveries needs a store, created here if none is yet.
    store = open_store(config, beside_broker=True, for_writing=True)
    with user_errors(LinkedAnonymousId):
        report = store.forget(user)
        broker_messages = _forget_in_broker(config, report)
        left = _user_ids_left(store, report)
        spellings = _other_spellings(store, user)
    if as_json:
        print_json(
            {
                **report.to_dict(),
                "broker_messages_deleted": broker_messages,
                "user_ids_left": left,
                "other_spellings": spellings,
            }
        )
        return
    found = (
        report.raw_events,
        report.sessions,
        report.funnel_entries,
        report.links,
        report.dead_letters,
        broker_messages,
    )
    if not any(found):
        console.print(
            f"nothing found for {user} in {data_location(config)}: no raw events, sessions, "
            "funnel entries, identity links, dead letters or waiting messages (check the id and "
            "the data; an id forgotten before has nothing left, and its tombstone now reaches "
            "this moment)"
        )
        _note_spellings(spellings)
        return
    counts = [
        plural(report.raw_events, "raw event"),
        plural(report.sessions, "session"),
        f"{report.funnel_entries} funnel {'entry' if report.funnel_entries == 1 else 'entries'}",
        plural(report.links, "link"),
        plural(report.dead_letters, "dead letter"),
    ]
    if broker_messages is not None:
        counts.append(plural(broker_messages, "broker message"))
    console.print(f"forgot {user}: {', '.join(counts)} (people: {', '.join(report.persons)})")
    for other in left:
        console.print(
            f"note: {other} is linked to {user} as an anonymous id and also sent events as a "
            f"user id of its own, which this forget does not reach: `forget {other}` forgets "
            "those"
        )
    _note_spellings(spellings)
