"""The behavioral aggregates measure what the generator was told to produce (fixed seed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.loadgen import GeneratorConfig, expected_session_events, generate
from behavioral_analytics.stores.sqlite import SQLiteStore

# Tolerances, stated: events per session within 5 % of what the parameters imply; each funnel
# step's conversion within 0.05 of its rate. With ~4,000 funnel entries the sampling error of
# a conversion is about 0.008; the rest is the user-per-day definition (a user with two
# sessions that day counts once, at their furthest step), which can only raise conversion.
EVENTS_PER_SESSION_TOLERANCE = 0.05
# A session's length is the sum of its gaps: (events - 1) * the mean gap, in expectation.
DURATION_TOLERANCE = 0.10
CONVERSION_TOLERANCE = 0.05


@pytest.mark.slow
def test_sessions_and_funnel_match_the_generator_parameters(tmp_path: Path) -> None:
    # Many users who rarely return, so a user-day is mostly one session, as the rates assume.
    config = GeneratorConfig(
        events=40_000, users=5000, seed=11, mean_idle_s=3 * 86400, start=1_764_000_000.0
    )
    generated = generate(config)
    rules = BehaviorRules()
    events: list[Event] = []
    for message in generated.messages:
        parsed = parse_message(message.data, message_id="m", received_at=message.sent_at)
        if isinstance(parsed, Event):
            rules.enrich(parsed)
            events.append(parsed)
    store = SQLiteStore(
        tmp_path / "store.db",
        rules=BehaviorRules(funnels=parse_funnels(PURCHASE_FUNNEL)),
        clock=lambda: config.start + 40 * 86400,
    )
    for start in range(0, len(events), 5000):
        store.commit(events[start : start + 5000])

    points = store.session_series("day")
    sessions = sum(p.stats.sessions for p in points)
    distinct = {
        (e.who, e.session_id)
        for e in {e.key: e for e in events}.values()
        if not is_bot(e.properties) and e.session_id
    }
    assert sessions == len(distinct)
    per_session = sum(p.stats.events for p in points) / sessions
    expected = expected_session_events(config)
    assert abs(per_session - expected) <= EVENTS_PER_SESSION_TOLERANCE * expected
    duration = sum(p.stats.duration_ms for p in points) / 1000 / sessions
    expected_duration = (expected - 1) * config.mean_gap_s
    assert abs(duration - expected_duration) <= DURATION_TOLERANCE * expected_duration
    assert all(p.final for p in points)

    totals = [0, 0, 0, 0]
    for day in store.funnel("purchase"):
        totals = [a + b for a, b in zip(totals, day.users_by_step, strict=True)]
    assert totals[0] > 3000
    for step, rate in enumerate(config.funnel_rates, 1):
        conversion = totals[step] / totals[step - 1]
        assert abs(conversion - rate) <= CONVERSION_TOLERANCE, (step, conversion, rate)
