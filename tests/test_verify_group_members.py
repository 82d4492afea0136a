"""`verify` recounts group memberships (`verification.compare`, pure): each membership the
retained group calls make, joined at the earliest call; one joined before the raw-event horizon
may have lost its calls to expiry, so it is left unchecked rather than called drift."""

from __future__ import annotations

import json
from typing import Any

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.records import AggregateSnapshot
from behavioral_analytics.verification import compare

T0 = 1_764_000_000.0


def group_call(n: int, at: float, user: str, group_id: str) -> Event:
    payload = {
        "event_id": f"c{n}",
        "id_kind": "message",
        "event_type": "group",
        "call": "group",
        "user_id": user,
        "timestamp": at,
        "properties": {"groupId": group_id, "traits": {}},
    }
    event = parse_message(json.dumps(payload).encode(), message_id=f"m{n}", received_at=at)
    assert isinstance(event, Event), event
    return event


def drift_of(
    stored: dict[tuple[str, str], float], events: list[Event], horizon: float | None
) -> tuple[list[tuple[str, Any, Any]], int]:
    """The `group_member` drift (key, stored, expected) and how many were not checked."""
    snap = AggregateSnapshot(group_members=stored)
    report = compare(snap, iter(events), Periods(), horizon)
    members = [(d.key, d.stored, d.expected) for d in report.drift if d.what == "group_member"]
    return members, report.not_checked


def test_the_earliest_call_of_a_member_is_when_it_joined() -> None:
    calls = [group_call(2, T0 + 60, "alice", "acme"), group_call(1, T0, "alice", "acme")]
    assert drift_of({("acme", "alice"): T0}, calls, None) == ([], 0)
    assert drift_of({("acme", "alice"): T0 + 60}, calls, None)[0] == [("acme:alice", T0 + 60, T0)]


def test_a_stored_membership_without_a_call_is_drift_unless_older_than_the_horizon() -> None:
    stored = {("acme", "mallory"): T0}
    assert drift_of(stored, [], T0 - 1) == ([("acme:mallory", T0, None)], 0)
    assert drift_of(stored, [], T0) == ([], 1)


def test_a_track_call_named_group_makes_no_membership() -> None:
    look_alike = group_call(1, T0, "alice", "acme")
    look_alike.call = None
    assert drift_of({}, [look_alike], None) == ([], 0)
