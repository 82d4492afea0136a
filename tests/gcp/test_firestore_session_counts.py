"""Sessions per value on the Firestore store (the emulator): a commit reads a person's stored
events only at the instants its batch and the profile's stored session values do not settle
(`stores/firestore/session_counts.py`), and the values it reads there are the right ones. The
contract suite (tests/contract/test_breakdowns.py) holds the figures to the port's rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from google.cloud import firestore

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.people import People
from tests.faults import behavior_event

NOW = 1_764_320_400.0  # on the hour
DAY_START = NOW - 86400
HOUR = 3600.0
GAP_S = 30 * 60.0


def page(n: int, at: float, path: str) -> Event:
    return behavior_event(
        n, DAY_START + at, received_at=NOW, user="u1", page_url=f"https://shop.example{path}"
    )


@pytest.fixture
def instants(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every (person, instant) a commit reads stored events at."""
    read: list[tuple[str, float]] = []
    original = People.events_at

    def counting(self: People, wanted: Sequence[tuple[str, float]]) -> Any:
        read.extend(wanted)
        return original(self, wanted)

    monkeypatch.setattr(People, "events_at", counting)
    return read


def test_a_growing_session_reads_nothing_and_a_joining_event_reads_the_instant_it_cannot_know(
    settings_for: Callable[..., Any], instants: list[tuple[str, float]]
) -> None:
    settings = settings_for()
    store = FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        clock=lambda: NOW,
        rules=BehaviorRules(breakdowns=BreakdownRules(("page",), 10)),
    )
    start = 2 * HOUR

    def day_sessions(dimension: str) -> dict[str, int] | None:
        (point,) = store.breakdown(dimension, "day")
        return point.sessions

    try:
        store.commit([page(1, start, "/a"), page(2, start + 10, "/b")])
        store.commit([page(3, start + 20, "/c")])  # the session grows: its exit is the batch's
        assert instants == []
        assert day_sessions("exit_page") == {"/c": 1}
        # A second session after the gap, then an event in the gap joins the two: the joined
        # session ends where the second ended, on a stored event the batch does not hold.
        later = start + 20 + GAP_S + 60
        store.commit([page(4, later, "/x"), page(5, later + 10, "/y")])
        assert instants == []
        assert day_sessions("entry_page") == {"/a": 1, "/x": 1}
        store.commit([page(6, start + 20 + GAP_S / 2, "/j")])
        assert instants == [("u1", DAY_START + later + 10)]
        assert day_sessions("entry_page") == {"/a": 1}
        assert day_sessions("exit_page") == {"/y": 1}
        assert day_sessions("page") == {"/a": 1}
    finally:
        store.close()
