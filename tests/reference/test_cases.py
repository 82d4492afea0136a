"""Hand-written streams: the issue's numbered cases that the reference can see, the docs'
worked examples, and the disagreements the generated tests found (KNOWN_DISAGREEMENTS.md),
each checked on the SQLite store against the reference and against the number written
in the docs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.store import Store
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.reference.differential import Clock, drive
from tests.reference.model import Reference, RefRules
from tests.reference.streams import (
    BOT_AGENT,
    DAY_S,
    REF_FUNNELS,
    Stream,
    at,
    segment_event,
    stream_of,
)


def run(stream: Stream) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:

        def make(rules: BehaviorRules, clock: Clock) -> Store:
            return SQLiteStore(
                Path(folder) / "store.db", timezone=stream.rules.timezone, rules=rules, clock=clock
            )

        return drive(stream, make)


def reference_of(stream: Stream) -> Reference:
    ref = Reference(stream.rules)
    now = stream.end
    for op, arg in stream.plan:
        if op == "commit":
            ref.commit(stream.events[i] for i in arg)
        elif op == "forget":
            ref.forget(arg, now)
        else:
            now = arg
    return ref


def test_case_4_fall_back_hours_are_apart() -> None:
    """Issue #16 case 4 and docs/behavior.md "Periods when clocks change"."""
    stream = stream_of(
        [
            {"user_id": "u1", "timestamp": at("2026-11-01T05:30:00")},
            {"user_id": "u2", "timestamp": at("2026-11-01T06:30:00")},
            {"user_id": "u1", "timestamp": at("2026-11-01T06:45:00")},
        ],
        timezone="America/New_York",
    )
    hours = {p.label: (p.total_events, p.unique_users) for p in reference_of(stream).series("hour")}
    assert hours == {"2026-11-01-01": (1, 1), "2026-11-01-01b": (2, 2)}
    minutes = [p.label for p in reference_of(stream).series("minute")]
    assert minutes == ["2026-11-01-01-30", "2026-11-01-01b-30", "2026-11-01-01b-45"]
    assert run(stream) == []


def test_lord_howe_half_hour_fall_back() -> None:
    """docs/behavior.md: `2026-04-05-01b` is the repeated 01:30-02:00 +10:30."""
    stream = stream_of(
        [
            {"user_id": "u1", "timestamp": at("2026-04-04T14:10:00")},  # 01:10 +11
            {"user_id": "u1", "timestamp": at("2026-04-04T14:40:00")},  # 01:40 +11
            {"user_id": "u2", "timestamp": at("2026-04-04T15:10:00")},  # 01:40 +10:30
            {"user_id": "u2", "timestamp": at("2026-04-04T15:40:00")},  # 02:10 +10:30
        ],
        timezone="Australia/Lord_Howe",
    )
    hours = {p.label: p.total_events for p in reference_of(stream).series("hour")}
    assert hours == {"2026-04-05-01": 2, "2026-04-05-01b": 1, "2026-04-05-02": 1}
    assert run(stream) == []


def test_case_5_client_session_id_keeps_the_cap() -> None:
    """Issue #16 case 5: four `app_open` a day apart with `session_id "-1"`: four sessions."""
    t0 = at("2026-11-01T12:00:00")
    stream = stream_of(
        [
            {
                "user_id": "u1",
                "event_type": "app_open",
                "session_id": "-1",
                "timestamp": t0 + k * DAY_S,
            }
            for k in range(4)
        ]
    )
    sessions = reference_of(stream).session_series("day", stream.read_at)
    assert [(s.label, s.sessions, s.duration_ms) for s in sessions] == [
        (f"2026-11-0{k + 1}", 1, 0) for k in range(4)
    ]
    assert run(stream) == []


def test_docs_sessions_example_with_one_client_id() -> None:
    """docs/behavior.md "Sessions": events at 0, 10, 20, 30, 40 h with one client id are
    two sessions, 0-20 h (3 events) and 30-40 h (2 events)."""
    t0 = at("2026-11-01T00:00:00")
    stream = stream_of(
        [
            {"user_id": "u1", "session_id": "s", "timestamp": t0 + h * 3600}
            for h in (0, 10, 20, 30, 40)
        ]
    )
    runs = [len(events) for _, events in reference_of(stream).sessions()]
    assert runs == [3, 2]
    assert run(stream) == []


@pytest.mark.parametrize(("qty", "reaches"), [(1, 3), (1.0, 3), (True, 2), ("1", 2)])
def test_case_6_filters_compare_by_json_type(qty: Any, reaches: int) -> None:
    """Issue #16 case 6: a step `where {"qty": 1}` matches 1 and 1.0, not true or "1"."""
    t0 = at("2026-11-01T10:00:00")
    stream = stream_of(
        [
            {"user_id": "u1", "event_type": "page_view", "timestamp": t0},
            {"user_id": "u1", "event_type": "search", "timestamp": t0 + 60},
            {
                "user_id": "u1",
                "event_type": "purchase",
                "timestamp": t0 + 120,
                "properties": {"qty": qty},
            },
        ]
    )
    assert reference_of(stream).funnel("buy")["2026-11-01"][:reaches] == [1] * reaches
    assert sum(reference_of(stream).funnel("buy")["2026-11-01"]) == reaches
    assert run(stream) == []


def test_case_7_relinking_keeps_what_an_identify_claimed() -> None:
    """docs/behavior.md "Identity" example (issue #16 case 7): bob gets a1, a2, a3 and his
    identify; carol her identify and a4."""
    t0 = at("2026-11-01T10:00:00")
    rows = [
        {"anonymous_id": "dev-A", "timestamp": t0},
        {"anonymous_id": "dev-A", "timestamp": t0 + 60},
        {
            "user_id": "bob",
            "anonymous_id": "dev-A",
            "event_type": "identify",
            "timestamp": t0 + 120,
        },
        {"anonymous_id": "dev-A", "timestamp": t0 + 180},
        {
            "user_id": "carol",
            "anonymous_id": "dev-A",
            "event_type": "identify",
            "timestamp": t0 + 240,
        },
        {"anonymous_id": "dev-A", "timestamp": t0 + 300},
    ]
    stream = stream_of(
        rows, identity_window_s=3600.0, allow_relink=True, batches=[[5, 4, 3, 2, 1, 0]]
    )
    profiles = reference_of(stream).profiles()
    assert profiles["bob"][1] == {"page_view": 3, "identify": 1}
    assert profiles["carol"][1] == {"page_view": 1, "identify": 1}
    assert run(stream) == []


def test_case_8_forget_leaves_no_empty_period_and_counts_drops() -> None:
    """Issue #16 case 8: after `forget`, a period every event left is not returned, and a
    redelivered event dated before the tombstone is counted as `forgotten`."""
    t0 = at("2026-11-01T10:00:00")
    stream = stream_of(
        [{"user_id": "u1", "timestamp": t0}, {"user_id": "u2", "timestamp": t0 + 7200}]
    )
    stream.plan += [("forget", "u1"), ("commit", [0])]
    assert [p.label for p in reference_of(stream).series("hour")] == ["2026-11-01-12"]
    assert run(stream) == []


def test_a_period_of_crawlers_only_is_returned() -> None:
    """KNOWN_DISAGREEMENTS.md 1 (settled) and docs/api.md `/v1/series`: a period whose only
    events are crawlers' comes back with `total_events` 0 and `bot_events` n."""
    t0 = at("2026-11-01T10:00:00")
    stream = stream_of(
        [
            {"anonymous_id": "a1", "timestamp": t0, "properties": {"user_agent": BOT_AGENT}},
            {"anonymous_id": "a1", "timestamp": t0 + 60, "properties": {"user_agent": BOT_AGENT}},
            {"user_id": "u1", "timestamp": t0 + 3600},
        ]
    )
    hours = [
        (p.label, p.total_events, p.unique_users, p.bot_events)
        for p in reference_of(stream).series("hour")
    ]
    assert hours == [("2026-11-01-10", 0, 0, 2), ("2026-11-01-11", 1, 1, 0)]
    assert run(stream) == []


def test_first_copy_in_a_batch_wins() -> None:
    received = at("2026-11-02T00:00:00")
    call = {
        "messageId": "m1",
        "event": "page_view",
        "anonymousId": "a1",
        "timestamp": "2026-11-01T23:00:00Z",
    }
    retry = {**call, "userId": "u1"}
    stream = Stream(
        RefRules(funnels=REF_FUNNELS), received - 3 * DAY_S, received, received, received + 60
    )
    stream.events = [segment_event(call, received), segment_event(retry, received)]
    stream.plan = [("commit", [0, 1])]
    assert set(reference_of(stream).profiles()) == {"anonymous:a1"}
    assert run(stream) == []


@pytest.mark.parametrize("identify_first", [False, True], ids=["visit-first", "identify-first"])
def test_a_link_made_after_a_forget_reaches_back_to_no_event_before_it(
    identify_first: bool,
) -> None:
    """QUESTIONS.md 17: u1 is forgotten at 11:30; at 12:00 they sign in again on `a1`, whose
    visit at 11:00 lies in the identity window but before the tombstone. The visit stays
    `a1`'s in either order: it was dropped as u1's when the identify came first, and moved to
    u1 (a forgotten person keeping an event dated before their tombstone) when it did not."""
    t0 = at("2026-11-01T10:00:00")
    stream = stream_of(
        [
            {"user_id": "u1", "timestamp": t0},
            {"anonymous_id": "a1", "timestamp": t0 + 3600},
            {
                "user_id": "u1",
                "anonymous_id": "a1",
                "event_type": "identify",
                "timestamp": t0 + 7200,
            },
        ]
    )
    later = [[2], [1]] if identify_first else [[1], [2]]
    stream.plan = [
        ("commit", [0]),
        ("clock", t0 + 5400),
        ("forget", "u1"),
        ("clock", t0 + 7260),
        *(("commit", batch) for batch in later),
    ]
    profiles = reference_of(stream).profiles()
    assert {who: total for who, (total, *_) in profiles.items()} == {"u1": 1, "anonymous:a1": 1}
    assert run(stream) == []
