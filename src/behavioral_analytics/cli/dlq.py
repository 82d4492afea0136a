"""`dlq`: list the dead letters (rejected events and messages the broker gave up on),
publish chosen ones again, and purge the expired ones. A replay carries the original message
id and publish time, so an event already counted is not counted twice; a purge keeps how many
it deleted, by reason."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table

from behavioral_analytics.broker import ORIGINAL_MESSAGE_ID, ORIGINAL_PUBLISH_TIME, OutgoingMessage
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    cursor_errors,
    fmt_time,
    load_config,
    open_store,
    print_json,
)
from behavioral_analytics.store import Store
from behavioral_analytics.wiring import build_broker

__all__ = ["dlq_app"]

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(50, min=1, max=1000),
    cursor: str | None = typer.Option(None),
    as_json: bool = JsonOption,
) -> None:
    """Dead letters, newest first: rejected events and messages the broker gave up on."""
    config = load_config()
    with user_errors(), cursor_errors(cursor):
        store = open_store(config)
        page = store.dead_letters(limit, cursor)
        total = store.count_dead_letters()
    if as_json:
        print_json(
            {
                "total": total,
                "items": [d.to_dict() for d in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return
    table = Table(title=f"dead letters ({total})")
    for column in ("id", "recorded", "source", "reason", "detail", "data", "replayed"):
        table.add_column(column, overflow="fold")
    for d in page.items:
        data = d.data[:60].decode("utf-8", "replace")
        table.add_row(
            d.id,
            fmt_time(d.recorded_at),
            d.source,
            d.reason,
            d.detail[:60],
            data,
            fmt_time(d.replayed_at) if d.replayed_at else "",
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@dlq_app.command("replay")
def dlq_replay(
    ids: list[str] = typer.Option(None, "--id", help="Dead letter id (repeatable)."),
    replay_all: bool = typer.Option(False, "--all", help="Every dead letter not yet replayed."),
) -> None:
    """Publish dead letters again, as they were (after a fix, say). A replayed message keeps
    its identity, so an event already counted is not counted twice."""
    if not ids and not replay_all:
        fail("say which: --id ID (repeatable) or --all", 2)
    config = load_config()
    with user_errors():
        store, broker = open_store(config), build_broker(config)
        chosen = _chosen_dead_letters(store, ids, replay_all)
        if not chosen:
            err_console.print("nothing to replay")
            return
        messages = [
            OutgoingMessage(
                d.data,
                {
                    **d.attributes,
                    ORIGINAL_MESSAGE_ID: d.message_id,
                    ORIGINAL_PUBLISH_TIME: repr(d.received_at),
                },
            )
            for d in chosen
        ]
        for start in range(0, len(messages), 1000):
            broker.publish(messages[start : start + 1000])
        store.mark_replayed([d.id for d in chosen], time.time())
    err_console.print(f"replayed {len(chosen)} dead letters to {config.pubsub_topic}")


def _chosen_dead_letters(store: Store, ids: list[str] | None, replay_all: bool) -> list[Any]:
    if ids:
        chosen = []
        for dead_letter_id in ids:
            found = store.get_dead_letter(dead_letter_id)
            if found is None:
                fail(f"no dead letter with id {dead_letter_id!r}")
            chosen.append(found)
        return chosen
    chosen, cursor = [], None
    while True:
        page = store.dead_letters(1000, cursor)
        chosen.extend(d for d in page.items if d.replayed_at is None)
        cursor = page.next_cursor
        if cursor is None:
            return chosen


@dlq_app.command("purge")
def dlq_purge(
    older_than_days: float | None = typer.Option(
        None,
        "--older-than-days",
        min=0,
        help="Also purge those recorded more than this many days ago (default: the expired).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Delete expired dead letters (BA_DEAD_LETTER_RETENTION_DAYS after they were recorded;
    the worker does it too), keeping how many were purged, by reason. On Google Cloud,
    Firestore's TTL policy on `dead_letters.expire_at` deletes them instead."""
    config = load_config()
    now = time.time()
    before = None if older_than_days is None else now - older_than_days * 86400.0
    with user_errors():
        store = open_store(config)
        held = store.count_dead_letters()
        ever = store.purge_dead_letters(now, before)
        purged = held - store.count_dead_letters()
    if as_json:
        print_json({"purged": purged, "purged_ever_by_reason": ever})
        return
    console.print(f"purged {purged} dead letters")
    for reason, count in sorted(ever.items()):
        console.print(f"  {reason}: {count} purged so far", highlight=False)
