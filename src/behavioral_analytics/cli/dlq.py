"""`dlq`: list the dead letters (rejected events and messages the broker gave up on),
publish again those the worker would now take (or chosen ones), and purge the expired ones. A
replay carries the original message id and publish time, so an event already counted is not
counted twice; a purge keeps how many it deleted, by reason."""

from __future__ import annotations

import re
import sqlite3
import textwrap
import time

import typer
from rich.text import Text

from behavioral_analytics.broker import (
    ORIGINAL_MESSAGE_ID,
    ORIGINAL_PUBLISH_TIME,
    Broker,
    BrokerError,
    OutgoingMessage,
)
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.pipeline import EMPTY_LINE
from behavioral_analytics.cli.shared import (
    JsonOption,
    confirm_or_stop,
    console,
    cursor_errors,
    fmt_time,
    load_config,
    open_store,
    plural,
    print_json,
)
from behavioral_analytics.cli.tables import TextTable
from behavioral_analytics.events import Limits
from behavioral_analytics.listing_cursors import bind, unbind
from behavioral_analytics.sqlite_util import is_busy, locked
from behavioral_analytics.store import DeadLetter, Store, StoreError
from behavioral_analytics.wiring import build_broker

__all__ = ["dlq_app"]

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(50, min=1, max=1000, help="Dead letters per page."),
    cursor: str | None = typer.Option(None, help="From a previous page's next_cursor."),
    as_json: bool = JsonOption,
) -> None:
    """Dead letters, newest first: rejected events and messages the broker gave up on."""
    config = load_config()
    scope = ("dead_letters",)  # the API's listing: a cursor continues in either
    with user_errors(), cursor_errors(cursor):
        store = open_store(config)
        page = store.dead_letters(limit, unbind(cursor, scope))
        total = store.count_dead_letters()
    next_cursor = bind(page.next_cursor, scope)
    if as_json:
        print_json(
            {"total": total, "items": [d.to_dict() for d in page.items], "next_cursor": next_cursor}
        )
        return
    if console.width >= _TABLE_MIN_COLUMNS:
        console.print(_table(page.items, total))
    else:  # a table this narrow folds every cell: one block per dead letter instead
        _print_blocks(page.items, total)
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}")


# Below this many columns the table would fold its cells a few characters wide.
_TABLE_MIN_COLUMNS = 140


def _print_blocks(letters: list[DeadLetter], total: int) -> None:
    """The dead letters as blocks: id (whole), time and source, then a line per field, cut
    at the console's width but the detail, which wraps (its end often says what to do)."""
    console.print(f"dead letters ({total})", highlight=False)
    for d in letters:
        console.print(
            Text.assemble("\n", (d.id, "bold"), f"  {fmt_time(d.recorded_at)}  {d.source}"),
            crop=False,
            soft_wrap=True,
        )
        fields = [("reason", d.reason), ("detail", _printable(d.detail)), ("data", _data(d))]
        if line := _input_line(d):
            fields.append(("input line", line))
        if d.replayed_at:
            fields.append(("replayed", fmt_time(d.replayed_at)))
        for label, text in fields:
            line = f"  {label}: {text}"
            if label == "detail":
                line = textwrap.fill(line, console.width, subsequent_indent="    ")
            elif len(line) > console.width:
                line = line[: console.width - 1] + "…"
            console.print(line, highlight=False)


def _data(d: DeadLetter) -> str:
    """The start of a dead letter's data, bytes that are no UTF-8 as `\\xff` and control
    characters as `\\x1b`, with `…` where it is cut; or what it is when nothing there would
    show: `(empty)`, or `(blank: N bytes)` for whitespace alone."""
    if not d.data.strip():
        return f"(blank: {plural(len(d.data), 'byte')})" if d.data else "(empty)"
    text = _printable(d.data[:244].decode("utf-8", "backslashreplace"))
    return text if len(text) <= 60 and len(d.data) <= 244 else text[:59] + "…"


def _printable(text: str) -> str:
    """`text` with its control characters (an escape sequence a client sent, a NUL) written
    as `\\x1b`, so that printing a dead letter never drives the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# C0 controls but tab, DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _input_line(d: DeadLetter) -> str:
    """The number of the empty input line `publish` made this message of (`ba_empty_line`,
    which `--json` gives in `attributes`), or ""."""
    return d.attributes.get(EMPTY_LINE, "")[:20]


def _table(letters: list[DeadLetter], total: int) -> TextTable:
    """The dead letters as a table, ids whole (to be pasted into `dlq replay --id`)."""
    table = TextTable(title=f"dead letters ({total})")
    id_width = max((len(d.id) for d in letters), default=2)
    table.add_column("id", no_wrap=True, overflow="ignore", min_width=id_width)
    table.add_column("recorded", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    for column in ("detail", "data"):
        table.add_column(column, overflow="fold")
    lines = any(_input_line(d) for d in letters)  # a column only where a letter has one
    if lines:
        table.add_column("input line", no_wrap=True, justify="right")
    table.add_column("replayed", no_wrap=True)
    for d in letters:
        table.add_row(
            d.id,
            fmt_time(d.recorded_at),
            d.source,
            d.reason,
            _printable(d.detail if len(d.detail) <= 200 else d.detail[:199] + "…"),
            _data(d),
            *([_input_line(d)] if lines else []),
            fmt_time(d.replayed_at) if d.replayed_at else "",
        )
    return table


@dlq_app.command("replay")
def dlq_replay(
    ids: list[str] = typer.Option(None, "--id", help="Dead letter id (repeatable)."),
    replay_all: bool = typer.Option(
        False, "--all", help="Every dead letter not yet replayed that the worker would now take."
    ),
) -> None:
    """Publish dead letters again, as they were (after a fix, say). A replayed message keeps
    its identity, so an event already counted is not counted twice.

    `--all` replays the dead letters, not yet replayed, that the worker would take as events
    now, judged as `verify` judges them, under the worker's BA_MAX_EVENT_AGE_DAYS and
    BA_MAX_FUTURE_SKEW. The others stay, not replayed, where `dlq list` shows them (and
    `verify`, those refused for their time), and stderr counts them by reason: those the worker
    would refuse again (a replay keeps the first receipt time, so `timestamp_too_old` comes
    back; `not_json` stays what it is) and, apart, the collector's rejections: each holds what
    its client sent (a Segment call, an item of `POST /v1/events`, or a whole request the
    collector refused, `request:…`), not an event the worker takes, and its client sends it
    again. With nothing to replay it says so and exits 0.

    `--id` replays each dead letter it names, whatever the judgment, warning on stderr, per
    letter, when the worker would refuse it again and why; one that holds nothing (a request
    the collector refused unread, an empty message) is not replayed, with a warning. Exits 2
    without `--id` or `--all`, or with both; 1 on an unknown id (replaying none), a failing
    store or broker, or letters published but not marked replayed (it says so)."""
    from behavioral_analytics.replay_verdicts import FROM_COLLECTOR, judged_dead_letters

    if not ids and not replay_all:
        fail("say which: --id ID (repeatable) or --all", 2)
    if ids and replay_all:
        fail("say which: --id ID (repeatable) or --all, not both", 2)
    config = load_config()
    left: dict[str, int] = {}
    with user_errors():
        store, broker = open_store(config, for_writing=True), build_broker(config)
        if ids:  # an id named twice is replayed once
            chosen = _named_dead_letters(store, list(dict.fromkeys(ids)), config.limits)
        else:
            chosen = []
            for letter, refusal in judged_dead_letters(store, 1000, config.limits):
                if refusal is None:
                    chosen.append(letter)
                else:
                    left[refusal] = left.get(refusal, 0) + 1
        if chosen:
            _replay(store, broker, chosen)
    if chosen:
        err_console.print(
            f"replayed {plural(len(chosen), 'dead letter')} to {config.pubsub_topic}",
            highlight=False,
        )
    else:
        err_console.print("nothing to replay")
    from_collector = left.pop(FROM_COLLECTOR, 0)
    if left:
        reasons = ", ".join(
            f"{r} {n}" for r, n in sorted(left.items(), key=lambda i: (-i[1], i[0]))
        )
        err_console.print(
            f"left {plural(sum(left.values()), 'dead letter')} the worker would refuse again: "
            f"{reasons}; `dlq replay --id ID` replays one anyway",
            highlight=False,
            soft_wrap=True,
        )
    if from_collector:
        err_console.print(
            f"left {plural(from_collector, 'dead letter')} the collector refused: each holds "
            "what its client sent, not an event the worker takes; the client sends it again",
            highlight=False,
            soft_wrap=True,
        )


def _named_dead_letters(store: Store, ids: list[str], limits: Limits) -> list[DeadLetter]:
    """The dead letters `ids` names, in that order, with a warning on stderr for each the
    worker would refuse again (`replay_verdicts.replay_refusal`). Exits 1 on an unknown id."""
    from behavioral_analytics.replay_verdicts import FROM_COLLECTOR, replay_refusal

    chosen = []
    for dead_letter_id in ids:
        found = store.get_dead_letter(dead_letter_id)
        if found is None:
            fail(f"no dead letter with id {dead_letter_id!r}: nothing replayed")
        if not found.data:
            why = (
                "the collector refused the request before reading it: its detail says why and "
                "its size"
                if found.source == "collector"
                else "an empty message"
            )
            err_console.print(
                Text.assemble(
                    ("warning:", "yellow"),
                    f" dead letter {found.id} holds nothing ({why}): not replayed",
                ),
                soft_wrap=True,
            )
            continue
        if found.replayed_at is not None:
            refused = (
                "a refusal is a new dead letter, from source worker"
                if found.source == "collector"
                else "a refusal reopens the letter"
            )
            err_console.print(
                Text.assemble(
                    ("warning:", "yellow"),
                    f" dead letter {found.id} was replayed already "
                    f"({fmt_time(found.replayed_at)}): an event counted then is a duplicate "
                    f"now, and {refused}; replaying it as asked",
                ),
                soft_wrap=True,
            )
        refusal = replay_refusal(found, limits)
        if refusal is not None:
            why = (
                "the collector refused it: it holds the call as its client sent it, not an "
                "event (a refusal by the worker is a new dead letter, from source worker)"
                if refusal == FROM_COLLECTOR
                else f"the worker would refuse it again: {refusal}"
            )
            err_console.print(
                Text.assemble(
                    ("warning:", "yellow"), f" dead letter {found.id}: {why}; replaying it as asked"
                ),
                soft_wrap=True,
            )
        chosen.append(found)
    return chosen


REPLAY_CHUNK = 1000  # dead letters published, then marked replayed, at a time


def _replay(store: Store, broker: Broker, chosen: list[DeadLetter]) -> None:
    """Publish `chosen` again, each with its first message id and receipt time, and mark them
    replayed, `REPLAY_CHUNK` at a time (a chunk is marked once it is published, so a failure
    leaves every earlier chunk marked). Raises StoreError, BrokerError on the first chunk;
    exits 1 saying how many were replayed when a later chunk fails, and when a chunk was
    published but not marked."""
    done = 0
    for start in range(0, len(chosen), REPLAY_CHUNK):
        part = chosen[start : start + REPLAY_CHUNK]
        try:
            broker.publish([_again(d) for d in part])
        except (BrokerError, OSError, sqlite3.Error) as exc:
            if not done:
                raise
            fail(
                f"replayed {done} of {plural(len(chosen), 'dead letter')}; publishing the "
                f"others failed ({exc}): they stay not replayed, where `dlq replay --all` "
                "finds them"
            )
        try:
            store.mark_replayed([d.id for d in part], time.time())
        except (StoreError, sqlite3.Error) as exc:
            problem: object = exc
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                problem = locked(None, exc)
            left = len(chosen) - done - len(part)
            earlier = f"; the {done} before them were marked" if done else ""
            later = f"; the {left} after them were not published" if left else ""
            fail(
                f"published {plural(len(part), 'dead letter')} again, but could not mark "
                f"{'it' if len(part) == 1 else 'them'} replayed ({problem}){earlier}{later}: "
                "`dlq list` still shows them so; a replay keeps the message's identity, so "
                "replaying again counts an event once"
            )
        done += len(part)


def _again(d: DeadLetter) -> OutgoingMessage:
    """A dead letter as a message to publish again: its bytes and attributes, with its first
    message id and receipt time (`ORIGINAL_MESSAGE_ID`, `ORIGINAL_PUBLISH_TIME`)."""
    return OutgoingMessage(
        d.data,
        {
            **d.attributes,
            ORIGINAL_MESSAGE_ID: d.message_id,
            ORIGINAL_PUBLISH_TIME: repr(d.received_at),
        },
    )


@dlq_app.command("purge")
def dlq_purge(
    older_than_days: float | None = typer.Option(
        None,
        "--older-than-days",
        min=0,
        help="Also purge those recorded more than this many days ago (default: the expired).",
    ),
    yes: bool = typer.Option(False, "--yes", help="With --older-than-days: purge without asking."),
    as_json: bool = JsonOption,
) -> None:
    """Delete expired dead letters (BA_DEAD_LETTER_RETENTION_DAYS after they were recorded;
    the worker does it too), keeping how many were purged, by reason; with --older-than-days,
    earlier ones too, after asking (--yes: without). On Google Cloud, Firestore's TTL policy on
    `dead_letters.expire_at` deletes them instead."""
    config = load_config()
    now = time.time()  # what is recorded while the question waits is not asked about: kept
    before = None if older_than_days is None else now - older_than_days * 86400.0
    with user_errors():
        store = open_store(config, for_writing=True)
        held = store.count_dead_letters()
    early = older_than_days is not None and older_than_days < config.dead_letter_retention_days
    if held and early and not yes and config.backend == "local":
        days = f"{older_than_days:.10g}"
        confirm_or_stop(
            f"{plural(held, 'dead letter')} held. Purge every one recorded more than {days} "
            f"day{'' if days == '1' else 's'} ago, before its retention ends? One never "
            "replayed cannot be replayed after this"
        )
    with user_errors():
        held = store.count_dead_letters()
        ever = store.purge_dead_letters(now, before)
        purged = held - store.count_dead_letters()
    if as_json:
        print_json({"purged": purged, "purged_ever_by_reason": ever})
        return
    so_far = ", ".join(f"{reason} {count}" for reason, count in sorted(ever.items()))
    console.print(
        f"purged {plural(purged, 'dead letter')}"
        + (f" (so far, by reason: {so_far})" if so_far else ""),
        highlight=False,
        soft_wrap=True,
    )
