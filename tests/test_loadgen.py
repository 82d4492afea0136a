"""The load generator's model: pure, fast tests against its ground truth.

Statistical checks use a fixed seed and a stated tolerance: within 4 standard errors of the
configured value (for a proportion p over n trials, 4·sqrt(p(1-p)/n)), so that a change of the
model that shifts a rate by a few percent fails while the sampling noise never does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from behavioral_analytics.enrich.user_agents import agent_facts
from behavioral_analytics.events import Event, Rejection, parse_message
from behavioral_analytics.loadgen import (
    BOT_USER_AGENTS,
    FUNNEL,
    GeneratorConfig,
    anchored_start,
    expected_session_events,
    generate,
    iter_messages,
    synthetic_stream,
    with_seed,
)

START = 1_764_320_000.0
BASE = GeneratorConfig(events=40_000, users=40, seed=20251128, start=START)


@pytest.fixture(scope="module")
def run():
    return generate(BASE)


def _events(run):
    """The original (non-duplicate, well-formed) events, decoded."""
    return [m.payload() for m in run.messages if m.kind == "event"]


def _human_sessions(run) -> dict[str, list[dict]]:
    sessions: dict[str, list[dict]] = defaultdict(list)
    for event in _events(run):
        if "session_id" in event:
            sessions[event["session_id"]].append(event)
    for events in sessions.values():
        events.sort(key=lambda e: e["timestamp"])
    return sessions


def within(observed: float, expected: float, standard_error: float) -> bool:
    return abs(observed - expected) <= 4 * standard_error


def test_same_seed_and_start_give_the_same_bytes():
    config = replace(BASE, events=2000)
    first = [m.data for m in generate(config).messages]
    assert first == [m.data for m in generate(config).messages]
    assert first == [m.data for m in iter_messages(config)]
    assert first != [m.data for m in generate(replace(config, seed=1)).messages]


def test_the_start_shifts_times_and_changes_nothing_else():
    """`anchored_start` measures a run from time zero and relies on this."""
    config = replace(BASE, events=10_000)
    original = generate(config).messages
    for start in (0.0, START + 12_345.678):
        shifted = generate(replace(config, start=start)).messages
        assert [(m.kind, m.late, m.reason) for m in shifted] == [
            (m.kind, m.late, m.reason) for m in original
        ]
        assert [m.sent_at - start for m in shifted] == pytest.approx(
            [m.sent_at - START for m in original], abs=1e-3
        )


def test_exactly_the_requested_number_of_messages_in_send_order(run):
    assert len(run.messages) == BASE.events
    sent = [m.sent_at for m in run.messages]
    assert sent == sorted(sent)


def test_events_have_the_recipe_shape(run):
    types = Counter()
    for event in _events(run):
        types[event["event_type"]] += 1
        assert event["event_id"].startswith("evt_")
        assert isinstance(event["timestamp"], float)
        props = event["properties"]
        assert {"page_url", "referrer", "device_type", "user_agent"} <= set(props)
        if "user_id" in event:
            assert event["user_id"].startswith("user_")
            assert 1 <= int(event["user_id"][5:]) <= BASE.users
            assert event["session_id"].startswith("sess_")
            assert dict(agent_facts(props["user_agent"]))["device"] == props["device_type"]
        else:
            assert props["user_agent"] in BOT_USER_AGENTS
        if event["event_type"] == "purchase":
            assert props["amount"] > 0 and props["currency"] in {"USD", "EUR", "GBP"}
        if event["event_type"] == "search":
            assert props["query"]
    expected = {"page_view", "button_click", "search", "add_to_cart", "purchase", "login", "signup"}
    assert set(types) == expected
    agents = {e["properties"]["user_agent"] for e in _events(run) if "user_id" not in e}
    assert any("Googlebot" in agent for agent in agents)


def test_a_person_keeps_a_browser_per_device_and_browsers_vary(run):
    agents: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event in _events(run):
        if "user_id" in event:
            props = event["properties"]
            agents[event["user_id"], props["device_type"]].add(props["user_agent"])
    assert all(len(seen) == 1 for seen in agents.values())
    browsers = {dict(agent_facts(a))["browser"] for seen in agents.values() for a in seen}
    assert len(browsers) >= 4, browsers


def test_another_run_gives_a_person_other_session_ids():
    """A client session id joins a person's events whatever the gap (docs/behavior.md), so
    ids repeated by the next run would merge its sessions into the last run's."""
    config = replace(BASE, events=3000)

    def ids(config: GeneratorConfig) -> set[tuple[str, str]]:
        return {
            (e["user_id"], e["session_id"])
            for e in (m.payload() for m in generate(config).messages if m.kind == "event")
            if "user_id" in e
        }

    first = ids(config)
    assert ids(config) == first
    assert not first & ids(replace(config, seed=config.seed + 1))
    assert not first & ids(replace(config, start=START + 3600))
    assert not first & ids(replace(config, seed=None))


def test_every_message_parses_as_the_ground_truth_says(run):
    received_at = START + run.span_s + 60
    for message in run.messages:
        result = parse_message(message.data, message_id="m", received_at=received_at)
        if message.kind == "malformed":
            assert isinstance(result, Rejection), message.data
            assert result.reason == message.reason
        else:
            assert isinstance(result, Event), message.data


def test_funnel_conversion_matches_the_configured_dropoff(run):
    """Tolerance: 4 standard errors of each step's conversion (sessions that reached the
    previous step are the trials)."""
    reached = Counter()
    for events in _human_sessions(run).values():
        types = {e["event_type"] for e in events}
        depth = 1
        while depth < len(FUNNEL) and FUNNEL[depth] in types:
            depth += 1
        for step in range(depth):
            reached[step] += 1
        # steps are in order within a session
        order = [e["event_type"] for e in events if e["event_type"] in FUNNEL[1:]]
        assert order == list(FUNNEL[1:depth])
    for step, rate in enumerate(BASE.funnel_rates, start=1):
        trials = reached[step - 1]
        assert trials > 300
        observed = reached[step] / trials
        assert within(observed, rate, math.sqrt(rate * (1 - rate) / trials)), (step, observed)


def test_sessions_are_separated_by_inactivity_and_have_the_configured_length(run):
    """Sessionizing each user's events with the 30-minute inactivity rule finds exactly the
    generated sessions; within-session gaps, page views per session and events per returning
    session match the parameters within 4 standard errors."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for event in _events(run):
        if "user_id" in event:
            by_user[event["user_id"]].append(event)
    gaps: list[float] = []
    for events in by_user.values():
        events.sort(key=lambda e: e["timestamp"])
        for before, after in itertools.pairwise(events):
            gap = after["timestamp"] - before["timestamp"]
            same = before["session_id"] == after["session_id"]
            assert same == (gap < BASE.session_timeout_s), (before, after)
            if same:
                gaps.append(gap)
    mean_gap = statistics.fmean(gaps)
    assert within(mean_gap, BASE.mean_gap_s, BASE.mean_gap_s / math.sqrt(len(gaps)))

    complete = [s for s in run.sessions.values() if s.complete]
    assert len(complete) > 0.95 * len(run.sessions)
    views = [s.page_views for s in complete]
    p = 1 / BASE.mean_page_views  # geometric: variance (1-p)/p²
    sd_views = math.sqrt((1 - p) / p**2)
    assert within(statistics.fmean(views), BASE.mean_page_views, sd_views / math.sqrt(len(views)))

    first_session = {}
    for session in run.sessions.values():
        first_session.setdefault(session.user_id, session.session_id)
    returning = [s.planned_events for s in complete if first_session[s.user_id] != s.session_id]
    se = statistics.stdev(returning) / math.sqrt(len(returning))
    assert within(statistics.fmean(returning), expected_session_events(BASE), se)


def test_injected_duplicates_late_malformed_and_bots_match_their_rates(run):
    counts = run.counts()
    originals = counts["events"]
    for name, rate in (("duplicates", BASE.duplicate_rate), ("late", BASE.late_rate)):
        assert within(counts[name] / originals, rate, math.sqrt(rate * (1 - rate) / originals))
    rate = BASE.malformed_rate
    assert within(counts["malformed"] / originals, rate, math.sqrt(rate / originals))
    # crawler events come in bursts of ~40, so their share varies more: ±2 points
    assert abs(counts["bot"] / originals - BASE.bot_rate) < 0.02
    seen: set[bytes] = set()
    for message in run.messages:
        if message.kind == "duplicate":
            assert message.data in seen  # the same bytes, sent again later
        if message.kind == "event":
            seen.add(message.data)
        if message.late and message.kind == "event":
            delay = message.sent_at - message.payload()["timestamp"]
            assert BASE.late_min_s - 0.01 <= delay <= BASE.late_max_s + 0.01
    reasons = Counter(m.reason for m in run.messages if m.kind == "malformed")
    assert len(reasons) >= 4  # a mix of kinds


def test_page_popularity_follows_zipf_and_mixes_match(run):
    pages = Counter()
    devices = Counter()
    for event in _events(run):
        url = event["properties"]["page_url"]
        if "user_id" in event and url.startswith("/page/"):
            pages[int(url.removeprefix("/page/"))] += 1
        if "user_id" in event:
            devices[event["properties"]["device_type"]] += 1
    assert pages.most_common(1)[0][0] == 1
    assert pages[1] / pages[2] == pytest.approx(2**BASE.zipf_s, rel=0.15)
    assert pages[1] / pages[10] == pytest.approx(10**BASE.zipf_s, rel=0.25)
    total = sum(devices.values())
    assert devices["mobile"] / total == pytest.approx(0.55, abs=0.1)


def test_anchored_start_ends_the_run_at_the_given_time():
    config = replace(BASE, events=3000, start=0.0)
    end = 1_800_000_000.0
    anchored = generate(replace(config, start=anchored_start(config, end)))
    assert max(m.sent_at for m in anchored.messages) == pytest.approx(end, abs=0.01)


def test_anchoring_needs_a_seed_and_with_seed_gives_one():
    unseeded = replace(BASE, seed=None, events=100)
    with pytest.raises(ValueError, match="seed"):
        anchored_start(unseeded, 1_800_000_000.0)
    seeded = with_seed(unseeded)
    assert seeded.seed is not None and with_seed(seeded) == seeded


def test_no_dirt_when_rates_are_zero():
    config = replace(BASE, events=5000, duplicate_rate=0, late_rate=0, malformed_rate=0, bot_rate=0)
    counts = generate(config).counts()
    assert counts["events"] == 5000
    assert counts["duplicates"] == counts["late"] == counts["malformed"] == counts["bot"] == 0


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="funnel_dropoff"):
        GeneratorConfig(funnel_dropoff=(0.5, 1.5, 0.1))
    with pytest.raises(ValueError, match=r"mean_gap_s \(above 0, below session_timeout_s 1800 s\)"):
        GeneratorConfig(mean_gap_s=4000)


def test_synthetic_stream_is_live_and_valid():
    stream = synthetic_stream(seed=1, users=10)
    now = time.time()
    events = [next(stream) for _ in range(200)]
    for event in events:
        assert abs(event["timestamp"] - now) < 60
        data = json.dumps(event).encode()
        assert isinstance(parse_message(data, message_id="m", received_at=time.time()), Event)
    assert {e.get("user_id") for e in events if "user_id" in e} <= {
        f"user_{i}" for i in range(1, 11)
    }


@pytest.mark.slow
def test_late_tiers_stamp_the_stated_shares_back_within_their_bounds():
    tiers = ((0.05, 3600.0), (0.01, 3 * 86400.0))
    config = replace(
        BASE, events=60_000, late_rate=0, duplicate_rate=0, malformed_rate=0, late_tiers=tiers
    )
    messages = list(iter_messages(config))
    assert [m.sent_at for m in messages] == sorted(m.sent_at for m in messages)  # time order
    delays = [m.sent_at - m.payload()["timestamp"] for m in messages]
    assert all(m.late == (d > 0.01) for m, d in zip(messages, delays, strict=True))
    total = len(messages)
    for (share, up_to), low in zip(tiers, (config.late_min_s, 3600.0), strict=True):
        in_tier = sum(low - 0.01 <= d <= up_to + 0.01 for d in delays if d > 0.01)
        assert within(in_tier / total, share, math.sqrt(share * (1 - share) / total))
    assert all(d <= tiers[-1][1] + 0.01 for d in delays)
    assert all(d >= config.late_min_s - 0.01 for d in delays if d > 0.01)


def test_late_tiers_default_to_none_and_leave_the_bytes_unchanged():
    assert GeneratorConfig().late_tiers == ()
    # The bytes this seed gave before late tiers existed, with the actors' addresses, browsers
    # and run-scoped session ids (added since; they draw nothing): no tier, no extra draw.
    digest = hashlib.sha256(b"".join(m.data for m in iter_messages(replace(BASE, events=2000))))
    assert digest.hexdigest() == "fa47995ddf2c6deb550283b08124a14be4702d7221dba1e961aec3555a2bc065"
    with pytest.raises(ValueError, match="late_tiers"):
        GeneratorConfig(late_tiers=((0.5, 3600.0), (0.6, 7200.0)))
    with pytest.raises(ValueError, match="late_tiers"):
        GeneratorConfig(late_tiers=((0.05, 60.0),))  # below late_min_s


@pytest.mark.slow
def test_planning_every_persons_next_session_ahead_stays_small():
    # The generator plans each person's next session before its first event: for the
    # Firestore target's 650,000 people that is millions of planned events. Each keeps its
    # draws, not its payload (6,300 bytes per person when each kept its payload dict; 2,300).
    people = 20_000
    tracemalloc.start()
    try:
        next(iter_messages(replace(BASE, users=people, events=1)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / people < 3_000
