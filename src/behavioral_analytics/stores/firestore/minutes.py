"""Minute counts kept in their hour's bucket document.

A minute's counts (`total_events`, `events_by_type`, `bot_events`) live in its hour's bucket
document, and in that hour's counter shards, under `minutes.{MM}`, not in documents of their
own. A flush writes the hour's document anyway, so an event's minute costs no write. Each
minute used to cost one: the current minute once per flush, and on live traffic a late event
alone in its minute one more. That was about 50 of the 80 bucket writes per 1,000 events at the
1 s flush (`bench/firestore_writes.py`, issue 17). A chart of the last hour now reads two
documents, not sixty.

An hour holds at most 60 minutes. With a dozen event types its map is a few KiB, and it is
exempt from indexing (`firestore.indexes.json`). Firestore allows 500 field transforms per
document in one commit (https://firebase.google.com/docs/firestore/quotas#writes_and_transactions).
A commit's minutes count against its hour's budget (`transforms_fit`), and batches that would
pass it are split.

Stores written before this layout hold `minute_{label}` documents. Reads add them to the
hours' maps, and `verify --repair` (a rebuild) moves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.schema import SESSION_STATS
from behavioral_analytics.stores.firestore.wire import field_path

__all__ = [
    "MINUTES_FIELD",
    "bucket_transform_limit",
    "fitting_prefix",
    "minute_prefix",
    "minutes_of",
    "split_minute",
    "transforms_fit",
]

MINUTES_FIELD = "minutes"


def split_minute(label: str) -> tuple[str, str]:
    """A minute label (`YYYY-MM-DD-HH[b]-MM`, `aggregation.Periods`) as (its hour's label,
    the two-digit minute that keys it in the hour's `minutes` map)."""
    hour, _, minute = label.rpartition("-")
    return hour, minute


def minute_prefix(minute: str) -> str:
    """The quoted field path of a minute's map in its hour's document (`minutes.\\`07\\``)."""
    return field_path(MINUTES_FIELD, minute)


def minutes_of(hour: str, data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(minute label, the minute's fields) for each minute an hour's document (or shard)
    `data`, read, holds."""
    for minute, fields in (data.get(MINUTES_FIELD) or {}).items():
        yield f"{hour}-{minute}", fields or {}


def bucket_transform_limit(options: StoreOptions) -> int:
    """The transforms per document left for event types and minutes (`transforms_fit`) once
    a document's fixed ones are counted: total and unique users (with room to spare), and with
    the behavioral read model bots, the session figures and each step of `options`' funnels."""
    limit = options.max_transforms_per_doc - 4
    if options.behavioral:
        steps = sum(len(f.steps) for f in options.rules.funnels)
        limit -= 1 + len(SESSION_STATS) + steps
    return limit


def transforms_fit(
    events: Iterable[Event], periods: Periods, limit: int, *, profiles: bool = True
) -> bool:
    """Whether the bucket documents (and, with `profiles`, the profiles) `events` touch
    each take at most `limit` field transforms: one per event type, and in an hour's
    document two (`total_events`, `bot_events`) plus one per event type for each of its
    minutes. The caller leaves room in `limit` for the documents' fixed transforms (unique
    users, bots, session figures: `bucket_transform_limit`)."""
    tokens: dict[tuple[str, str], set[object]] = {}
    for event in events:
        minute, hour, day = periods.of(event.timestamp)
        _, mm = split_minute(minute)
        kind = event.event_type
        hour_doc = tokens.setdefault(("h", hour), set())
        hour_doc.update((kind, mm, (mm, 1), (mm, kind)))
        found = [hour_doc, tokens.setdefault(("d", day), set())]
        found[1].add(kind)
        if profiles:
            found.append(tokens.setdefault(("u", event.who), set()))
            found[2].add(kind)
        if any(len(doc) > limit for doc in found):
            return False
    return True


def fitting_prefix(events: Sequence[Event], periods: Periods, limit: int, most: int) -> int:
    """How many of `events`, from the first, one commit takes: `most`, halved until their
    bucket documents' transforms fit `limit` (`transforms_fit`); at least one."""
    size = min(most, len(events))
    while size > 1 and not transforms_fit(events[:size], periods, limit, profiles=False):
        size //= 2
    return max(size, 1)
