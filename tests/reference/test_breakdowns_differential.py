"""Differential tests of breakdowns: the stores against the breakdown reference
(`breakdowns_model`) on generated streams — random batches with redeliveries, crawlers,
identify calls moving anonymous events, a forget in the middle, zones whose clocks change —
with pages and typed property values on the events and few values admitted (K of 1 to 3), so
`(other)` is reached. Every figure of `Store.breakdown` is compared by period label (sessions
per value, entry and exit pages included: late events that become a session's first or last,
gap-joining events, relinks and forgets move them), and
`verify` must find no drift. Any disagreement fails with the smallest stream hypothesis finds
(the stream and K are printed). The SQLite legs are derandomized (every run checks the same
streams); the Firestore leg runs a few on the emulator.
"""

from __future__ import annotations

import copy
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.dimensions import SESSION_DIMENSIONS
from behavioral_analytics.events import Event
from behavioral_analytics.store import NotSupported, Store
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.reference.breakdowns_model import BreakdownReference
from tests.reference.differential import Clock, behavior_rules
from tests.reference.model import Reference
from tests.reference.streams import NO_REPEAT, REPEAT, Stream, streams

DIMENSIONS = ("page", "event_type", "property:qty", "property:item")
PAGES = [None, "/a", "/b", "/c", "/d", "/shop/cart"]
# Items a client may send that read like labels: none is counted as the label.
LABEL_ITEMS = [None, "(other)", '"(other)"', "(none)", '""(none)""']

Case = tuple[Stream, int]
Make = Callable[[BehaviorRules, Clock], Store]


@st.composite
def cases(draw: st.DrawFn, **options: Any) -> Case:
    """A generated stream (`streams(**options)`) whose events get pages (recipe URLs with a
    query, or none), some an item that reads like a label, and K."""
    stream = draw(streams(**options))
    for event in stream.events:
        page = draw(st.sampled_from(PAGES))
        if page is not None:
            event.properties["page_url"] = f"https://shop.example{page}?ref=x#top"
        if (item := draw(st.sampled_from(LABEL_ITEMS))) is not None:
            event.properties["item"] = item
    return stream, draw(st.sampled_from([1, 2, 3]))


def drive(case: Case, make: Make) -> list[str]:
    """Play the stream's plan on a new store and on the reference; the disagreements."""
    stream, max_values = case
    rules = replace(behavior_rules(stream), breakdowns=BreakdownRules(DIMENSIONS, max_values))
    clock = Clock(stream.end)
    store = make(rules, clock)
    try:
        store.init()
        ref = BreakdownReference(
            Reference(stream.rules), DIMENSIONS, max_values, stream.rules.timezone
        )
        enriched: dict[int, Event] = {}
        for op, arg in stream.plan:
            if op == "commit":
                batch = []
                for i in arg:
                    if i not in enriched:
                        enriched[i] = copy.deepcopy(stream.events[i])
                        rules.enrich(enriched[i])
                    batch.append(copy.deepcopy(enriched[i]))
                store.commit(batch)
                ref.commit([stream.events[i] for i in arg])
            elif op == "forget":
                store.forget(arg)
                ref.reference.forget(arg, clock.now)
            else:
                clock.now = arg
        clock.now = stream.read_at
        problems = []
        # Every store keeps sessions per value: a point without them (None) is a difference.
        for dimension in (*DIMENSIONS, *SESSION_DIMENSIONS):
            for granularity in ("hour", "day"):
                events = (
                    {} if dimension in SESSION_DIMENSIONS else ref.points(dimension, granularity)
                )
                sessions = ref.session_points(dimension, granularity)
                want = {
                    period: (
                        *events.get(period, ({}, 0, None)),
                        sessions.get(period, {}),
                    )
                    for period in set(events) | set(sessions)
                }
                got = {
                    p.period: (p.events, p.other_events, p.unique_users, p.sessions)
                    for p in store.breakdown(dimension, granularity)  # type: ignore[arg-type]
                }
                for period in sorted(set(want) | set(got)):
                    if want.get(period) != got.get(period):
                        problems.append(
                            f"{dimension} {granularity} {period}: reference {want.get(period)} "
                            f"store {got.get(period)}"
                        )
        report = verify(store, store.periods, now=clock.now, retention_s=None)  # type: ignore[attr-defined]
        problems += [f"verify: {d}" for d in report.drift[:5]]
        return problems
    finally:
        store.close()


def check(case: Case, make: Make) -> None:
    problems = drive(case, make)
    assert not problems, "\n".join([*problems, f"K={case[1]} stream:", case[0].describe()])


def sqlite(case: Case) -> None:
    with tempfile.TemporaryDirectory() as folder:

        def make(rules: BehaviorRules, clock: Clock) -> Store:
            return SQLiteStore(
                Path(folder) / "store.db",
                timezone=case[0].rules.timezone,
                rules=rules,
                clock=clock,
            )

        check(case, make)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, derandomize=True)
@given(cases(changes=NO_REPEAT, relink=[False], ids_across_visits=False))
def test_sqlite_breakdowns_match_the_reference(case: Case) -> None:
    sqlite(case)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True)
@given(cases(changes=REPEAT))
def test_sqlite_breakdowns_match_the_reference_when_clocks_go_back_and_with_relinking(
    case: Case,
) -> None:
    sqlite(case)


@pytest.mark.gcp
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases(most=15))
def test_firestore_breakdowns_match_the_reference(
    case: Case, emulators: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    firestore = pytest.importorskip(
        "google.cloud.firestore",
        reason="FIRESTORE LEG NOT RUN: google-cloud-firestore (the gcp extra) is not installed",
    )
    from behavioral_analytics.stores.firestore import FirestoreStore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    name = f"ref-{uuid.uuid4().hex[:10]}"

    def make(rules: BehaviorRules, clock: Clock) -> Store:
        client = firestore.Client(project=emulators.project, database=name)
        return FirestoreStore(
            client, database=name, timezone=case[0].rules.timezone, rules=rules, clock=clock
        )

    try:
        check(case, make)
    except NotSupported as exc:
        pytest.skip(f"FIRESTORE BREAKDOWNS NOT RUN: the Firestore store keeps none yet ({exc})")
    finally:
        emulators.wipe_firestore(name)
