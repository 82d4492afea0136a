"""Retention on the Firestore store: cohorts from the profiles (`analytics_aggregates/user_…`),
their `first_seen` and their day markers `unique_days` (rule: `behavioral_analytics.retention`).

A profile's day markers are its person's active days: written by the commit for the person an
event counts for, moved by identity stitching, gone with the profile on `forget`; markers older
than the marker retention (at least the raw-event retention plus two days) are pruned, which is
why `retention.plan` refuses cohort days before the raw-event horizon.

The read: one count aggregation over the profiles first seen in the cohort days (only profiles
carry `first_seen`, so the automatic single-field index serves it, as for `active_users`), then,
if at most `retention.MAX_PERSONS` people, those profiles with only `user_id` (the person:
the cohorts' members), `first_seen` and `unique_days` (pages of 1,000, ordered by
`first_seen`). Cost per 1,000 people in the cohorts:
1,000 document reads plus one for the count (a count bills one read per 1,000 index entries),
about US$0.0003 at the list price of $0.03 per 100,000 reads (us-central1; check the pricing
page). The largest request allowed (100,000 people) costs about 100,000 reads, $0.03.

With a start event: the raw events of that type dated from the first cohort day on (index
`event_type` + `timestamp` descending, only `ts`, `person` and `bot` read; at most
`retention.MAX_START_EVENTS`, refused past it), per person their number and earliest; then the
profiles of the people whose earliest is within the cohort days (batched gets of 1,000, only
`kind`, `events_by_type` and `unique_days`), kept where that number equals the profile's
all-time count of the type (`retention.first_start_days`). Cost: one read per start event
since the first cohort day plus one per person in the cohorts: the largest scan allowed
(200,000 events) about $0.06 at the list price above. The scan and the gets are separate reads
(Firestore's are not one snapshot outside a transaction): a commit between them can make a
person's counts disagree for that one answer, which then leaves them out; the next read agrees.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.retention import (
    MAX_PERSONS,
    MAX_START_EVENTS,
    RetentionCohort,
    RetentionRead,
    cohorts,
    first_start_days,
    too_many,
    too_many_start_events,
)
from behavioral_analytics.stores.firestore.documents import as_datetime
from behavioral_analytics.stores.firestore.gateway import PAGE, Gateway
from behavioral_analytics.stores.firestore.keys import doc_id, encode_map_key
from behavioral_analytics.stores.firestore.reads import count
from behavioral_analytics.stores.firestore.schema import AGGREGATES, EVENTS, MARKER_FIELD

__all__ = ["retention"]


def retention(gateway: Gateway, periods: Periods, read: RetentionRead) -> list[RetentionCohort]:
    """The `Store.retention` answer through `gateway` for `read` (`retention.plan`'s checked
    request), periods labelled by `periods`, every read made with `gateway.bound`. Raises
    RetentionError (too many people or start events), the client's errors (`RetryError` when
    a read's retries ran out: the facade's to translate)."""
    if read.start_event is not None:
        active, cohort_days = _by_start_event(gateway, periods, read, read.start_event)
        return cohorts(active, read, cohort_days)
    return cohorts(_active_days(gateway, periods, read), read)


def _by_start_event(
    gateway: Gateway, periods: Periods, read: RetentionRead, start_event: str
) -> tuple[dict[str, set[str]], dict[str, str]]:
    """(active days, cohort day) of the people whose first `start_event` is in the cohort
    days."""
    scanned = _scan_start_events(gateway, read, start_event)
    within = [who for who, (_, earliest) in scanned.items() if earliest < read.first_seen_until]
    if len(within) > MAX_PERSONS:
        raise too_many(len(within))
    days_field = MARKER_FIELD["day"]
    type_key = encode_map_key(start_event)
    profiles = gateway.collection(AGGREGATES)
    person_of = {doc_id("user_", who): who for who in within}
    refs = [profiles.document(name) for name in person_of]
    all_time: dict[str, int] = {}
    active: dict[str, set[str]] = {}
    for start in range(0, len(refs), PAGE):
        for snap in gateway.client.get_all(
            refs[start : start + PAGE],
            field_paths=["kind", "events_by_type", days_field],
            **gateway.bound,
        ):
            data = (snap.to_dict() or {}) if snap.exists else {}
            if data.get("kind", "user") != "user" or snap.id not in person_of:
                continue
            who = person_of[snap.id]
            all_time[who] = (data.get("events_by_type") or {}).get(type_key, 0)
            active[who] = {
                day for day in data.get(days_field) or {} if read.start_day <= day <= read.last_day
            }
    cohort_days = first_start_days(scanned, all_time, read, periods)
    return active, cohort_days


def _scan_start_events(
    gateway: Gateway, read: RetentionRead, start_event: str
) -> dict[str, tuple[int, float]]:
    """person -> (their human `start_event`s dated at or after `read.first_seen_from`, the
    earliest one's epoch seconds), newest first by the index (event_type, timestamp desc)."""
    query: Any = (
        gateway.collection(EVENTS)
        .where(filter=firestore.FieldFilter("event_type", "==", start_event))
        # The Timestamp keeps microseconds: a millisecond of slack, then the exact `ts`.
        .where(
            filter=firestore.FieldFilter(
                "timestamp", ">=", as_datetime(read.first_seen_from - 0.001)
            )
        )
        .order_by("timestamp", direction=firestore.Query.DESCENDING)
        .order_by(FieldPath.document_id(), direction=firestore.Query.DESCENDING)
        .select(["ts", "person", "bot"])
    )
    scanned: dict[str, tuple[int, float]] = {}
    seen = 0
    last = None
    while True:
        page = query.limit(PAGE) if last is None else query.limit(PAGE).start_after(last)
        docs = list(page.stream(**gateway.bound))
        seen += len(docs)
        if seen > MAX_START_EVENTS:
            raise too_many_start_events(MAX_START_EVENTS)
        for doc in docs:
            data = doc.to_dict() or {}
            stamp = data.get("ts")
            if data.get("bot") or stamp is None or stamp < read.first_seen_from:
                continue
            who = str(data["person"])
            found, earliest = scanned.get(who, (0, stamp))
            scanned[who] = (found + 1, min(earliest, stamp))
        if len(docs) < PAGE:
            return scanned
        last = docs[-1]


def _active_days(gateway: Gateway, periods: Periods, read: RetentionRead) -> dict[str, set[str]]:
    query: Any = (
        gateway.collection(AGGREGATES)
        .where(filter=firestore.FieldFilter("first_seen", ">=", read.first_seen_from))
        .where(filter=firestore.FieldFilter("first_seen", "<", read.first_seen_until))
    )
    persons = count(query.count(), **gateway.bound)
    if persons > MAX_PERSONS:
        raise too_many(persons)
    days_field = MARKER_FIELD["day"]
    query = query.select(["kind", "user_id", "first_seen", days_field]).order_by("first_seen")
    query = query.order_by(FieldPath.document_id())
    active: dict[str, set[str]] = {}
    last = None
    for _ in range(MAX_PERSONS // PAGE + 2):
        page = query.limit(PAGE) if last is None else query.limit(PAGE).start_after(last)
        docs = list(page.stream(**gateway.bound))
        for doc in docs:
            data = doc.to_dict() or {}
            if data.get("kind", "user") != "user":
                continue
            days = {
                day for day in data.get(days_field) or {} if read.start_day <= day <= read.last_day
            }
            days.add(periods.label("day", data["first_seen"]))
            active[str(data.get("user_id", doc.id))] = days
        if len(docs) < PAGE:
            break
        last = docs[-1]
    if len(active) > MAX_PERSONS:  # profiles created between the count and the pages
        raise too_many(len(active))
    return active
