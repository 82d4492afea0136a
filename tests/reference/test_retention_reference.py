"""Retention on both stores against the plain computation of `retention_model` over generated
streams (late and redelivered events, identify calls within and outside the identity window,
relinking, crawlers, a forget in the middle, zones whose clocks change): cohorts by first-seen
day and by a start event (`search`, `add_to_cart`), and returning counts per day and per week,
must agree exactly; so must the cohorts narrowed by filters (`filtered_retention`: one filter,
two, one with a start event). Derandomized, so every run checks the same
streams: 150 on SQLite, a few on Firestore's emulator."""

from __future__ import annotations

import copy
import tempfile
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings

from behavioral_analytics.events import Event
from behavioral_analytics.filtered_queries import filtered_retention
from behavioral_analytics.raw_queries import Filter
from behavioral_analytics.store import Store
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.reference.differential import Clock, behavior_rules
from tests.reference.model import Reference, label
from tests.reference.retention_model import reference_retention
from tests.reference.streams import DAY_S, Stream, streams

# (start event, filters) of the narrowed tables checked: one filter, two at once, one with a
# start event; the values are those the generated streams send.
FILTERED: list[tuple[str | None, list[tuple[str, str]]]] = [
    (None, [("event_type", "search")]),
    (None, [("event_type", "page_view"), ("property:qty", "1")]),
    ("add_to_cart", [("property:qty", "2")]),
]


def play(stream: Stream, store: Store, clock: Clock, reference: Reference) -> None:
    """The stream's plan on the store and on the reference."""
    rules = behavior_rules(stream)
    enriched: dict[int, Event] = {}
    for op, arg in stream.plan:
        if op == "commit":
            for i in arg:
                if i not in enriched:
                    enriched[i] = copy.deepcopy(stream.events[i])
                    rules.enrich(enriched[i])
            store.commit([copy.deepcopy(enriched[i]) for i in arg])
            reference.commit(stream.events[i] for i in arg)
        elif op == "forget":
            store.forget(arg)
            reference.forget(arg, clock.now)
        else:
            clock.now = arg
    clock.now = stream.read_at


def check(stream: Stream, store: Store, clock: Clock) -> None:
    """Play the stream, then compare the store's cohorts with the reference's."""
    zone = ZoneInfo(stream.rules.timezone)
    first = label(stream.start - DAY_S, "day", zone)[0]
    last = label(stream.later + DAY_S, "day", zone)[0]
    today = label(stream.read_at, "day", zone)[0]
    reference = Reference(stream.rules)
    play(stream, store, clock, reference)
    for start_event in (None, "search", "add_to_cart"):
        for unit, max_offset in (("day", 6), ("week", 1)):
            got = [
                (c.cohort, c.size, c.returning)
                for c in store.retention(first, last, max_offset, unit, start_event)
            ]
            want = reference_retention(reference, first, last, max_offset, unit, today, start_event)
            assert got == want, (
                f"{unit} by {start_event}: store {got} reference {want}\n{stream.describe()}"
            )
    for start_event, filters in FILTERED:
        asked = [Filter(dimension, value) for dimension, value in filters]
        body = filtered_retention(
            store, store.periods, asked, first, last, 6, "day", start_event, 10_000
        )
        got = [(c["cohort"], c["size"], c["returning"]) for c in body["cohorts"]]
        want = reference_retention(reference, first, last, 6, "day", today, start_event, filters)
        assert got == want, (
            f"by {start_event} where {filters}: store {got} reference {want}\n{stream.describe()}"
        )
        assert body["answered_from"] == "raw_events"


@pytest.mark.slow
@settings(max_examples=150, deadline=None, derandomize=True)
@given(streams())
def test_sqlite_retention_matches_the_reference(stream: Stream) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock(stream.end)
        store = SQLiteStore(
            Path(folder) / "store.db",
            timezone=stream.rules.timezone,
            rules=behavior_rules(stream),
            clock=clock,
        )
        try:
            check(stream, store, clock)
        finally:
            store.close()


@pytest.mark.gcp
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams(most=15))
def test_firestore_retention_matches_the_reference(
    stream: Stream, emulators: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    firestore = pytest.importorskip(
        "google.cloud.firestore",
        reason="FIRESTORE LEG NOT RUN: google-cloud-firestore (the gcp extra) is not installed",
    )
    from behavioral_analytics.stores.firestore import FirestoreStore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    name = f"ret-{uuid.uuid4().hex[:10]}"
    clock = Clock(stream.end)
    client = firestore.Client(project=emulators.project, database=name)
    store = FirestoreStore(
        client,
        database=name,
        timezone=stream.rules.timezone,
        rules=behavior_rules(stream),
        clock=clock,
    )
    try:
        check(stream, store, clock)
    finally:
        store.close()
        emulators.wipe_firestore(name)
