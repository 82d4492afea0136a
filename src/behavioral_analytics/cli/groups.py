"""`query group GROUP_ID`: a group kept from Segment's group calls (docs/behavior.md):
members, latest traits and, per day, the members' events and unique users. Registered under
`query` by `root`."""

from __future__ import annotations

import json

import typer

from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    check_user_id,
    console,
    load_config,
    open_for_periods,
    plural,
    print_json,
)
from behavioral_analytics.cli.tables import TextTable, period_table

__all__ = ["query_group"]


def query_group(
    group_id: str = typer.Argument(..., help="The group's id (Segment's groupId)."),
    start: str | None = typer.Option(
        None, "--from", metavar="DAY", help="First day: a label (2026-11-28) or a time."
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="DAY", help="Last day: a label or a time."
    ),
    as_json: bool = JsonOption,
) -> None:
    """A group's members, latest traits and, per day, its members' events and unique users
    (every retained day unless --from/--to). Exits 1 when no group call named it."""
    check_user_id(group_id, "group id")
    config, store, first, last = open_for_periods(load_config(), start, end, "day")
    with user_errors():
        group = store.group(group_id)
    if group is None:
        fail(f"no group {group_id!r}: no group call has named it", 1)
    days = [
        d
        for d in group.days
        if (first is None or d.day >= first) and (last is None or d.day <= last)
    ]
    if as_json:
        days_json = [d.to_dict() for d in days]
        print_json({**group.to_dict(), "timezone": config.timezone, "days": days_json})
        return
    console.print(f"group {group.group_id}: {plural(len(group.members), 'member')}")
    traits = TextTable(title="latest traits")
    traits.add_column("trait")
    traits.add_column("value")
    for name, value in sorted(group.traits.items()):
        text = value if isinstance(value, str) else json.dumps(value)
        traits.add_row(name, text)
    console.print(traits)
    console.print("members: " + ", ".join(group.members))
    table = period_table("members' events per day", "day", ["events", "unique users"])
    for d in days:
        table.add_row(d.day, str(d.events), str(d.unique_users))
    console.print(table)
