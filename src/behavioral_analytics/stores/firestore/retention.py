"""Retention on the Firestore store: cohorts from the profiles (`analytics_aggregates/user_…`),
their `first_seen` and their day markers `unique_days` (rule: `behavioral_analytics.retention`).

A profile's day markers are its person's active days: written by the commit for the person an
event counts for, moved by identity stitching, gone with the profile on `forget`; markers older
than the marker retention (at least the raw-event retention plus two days) are pruned, which is
why `retention.plan` refuses cohort days before the raw-event horizon.

The read: one count aggregation over the profiles first seen in the cohort days (only profiles
carry `first_seen`, so the automatic single-field index serves it, as for `active_users`), then,
if at most `retention.MAX_PERSONS` people, those profiles with only `first_seen` and
`unique_days` (pages of 1,000, ordered by `first_seen`). Cost per 1,000 people in the cohorts:
1,000 document reads plus one for the count (a count bills one read per 1,000 index entries),
about US$0.0003 at the list price of $0.03 per 100,000 reads (us-central1; check the pricing
page). The largest request allowed (100,000 people) costs about 100,000 reads, $0.03.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.retention import (
    MAX_PERSONS,
    RetentionCohort,
    RetentionRead,
    cohorts,
    too_many,
)
from behavioral_analytics.store import TransientStoreError
from behavioral_analytics.stores.firestore.gateway import PAGE, TRANSIENT_ERRORS, Gateway
from behavioral_analytics.stores.firestore.reads import count
from behavioral_analytics.stores.firestore.schema import AGGREGATES, MARKER_FIELD

__all__ = ["retention"]


def retention(gateway: Gateway, periods: Periods, read: RetentionRead) -> list[RetentionCohort]:
    """The `Store.retention` answer through `gateway` for `read` (`retention.plan`'s checked
    request), periods labelled by `periods`. Raises RetentionError (too many people),
    TransientStoreError, the client's other `GoogleAPICallError`s."""
    try:
        active = _active_days(gateway, periods, read)
    except TRANSIENT_ERRORS as exc:
        raise TransientStoreError(f"Firestore read failed: {exc}") from exc
    return cohorts(active, read)


def _active_days(gateway: Gateway, periods: Periods, read: RetentionRead) -> dict[str, set[str]]:
    query: Any = (
        gateway.collection(AGGREGATES)
        .where(filter=firestore.FieldFilter("first_seen", ">=", read.first_seen_from))
        .where(filter=firestore.FieldFilter("first_seen", "<", read.first_seen_until))
    )
    persons = count(query.count(), gateway.timeout_s)
    if persons > MAX_PERSONS:
        raise too_many(persons)
    days_field = MARKER_FIELD["day"]
    query = query.select(["kind", "first_seen", days_field]).order_by("first_seen")
    query = query.order_by(FieldPath.document_id())
    active: dict[str, set[str]] = {}
    last = None
    for _ in range(MAX_PERSONS // PAGE + 2):
        page = query.limit(PAGE) if last is None else query.limit(PAGE).start_after(last)
        docs = list(page.stream(timeout=gateway.timeout_s))
        for doc in docs:
            data = doc.to_dict() or {}
            if data.get("kind", "user") != "user":
                continue
            days = {
                day for day in data.get(days_field) or {} if read.start_day <= day <= read.last_day
            }
            days.add(periods.label("day", data["first_seen"]))
            active[doc.id] = days
        if len(docs) < PAGE:
            break
        last = docs[-1]
    if len(active) > MAX_PERSONS:  # profiles created between the count and the pages
        raise too_many(len(active))
    return active
