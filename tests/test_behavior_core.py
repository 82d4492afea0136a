"""The pure rules: sessions, funnels, identity, bots, privacy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.bots import BOT_PROPERTY, bot_name
from behavioral_analytics.events import Event, dedupe_key
from behavioral_analytics.funnels import FunnelPoint, parse_funnels, progress
from behavioral_analytics.identity import Link, attribute, coverage, resolve
from behavioral_analytics.privacy import hash_value, scrub, truncate_ip
from behavioral_analytics.sessions import SessionRules, gap_sessions, session_stats

DAY0 = 1_764_288_000.0  # 2025-11-28 00:00 UTC
RULES = SessionRules(gap_s=1800, max_s=86400)


def event(
    who: str = "u1",
    event_type: str = "page_view",
    timestamp: float = DAY0,
    *,
    anonymous: bool = False,
    user_id: str | None = None,
    properties: dict[str, object] | None = None,
) -> Event:
    uid = None if anonymous else who
    aid = who if anonymous else None
    if user_id is not None:
        uid = user_id
    actor = uid if uid is not None else f"anonymous:{aid}"
    return Event(
        key=dedupe_key("e", actor, event_type, timestamp),
        event_id="e",
        user_id=uid,
        anonymous_id=aid,
        event_type=event_type,
        timestamp=timestamp,
        session_id=None,
        properties=properties or {},
        received_at=timestamp,
    )


# -- sessions ---------------------------------------------------------------------------------


def test_a_gap_longer_than_the_timeout_starts_a_new_session() -> None:
    sessions = gap_sessions([DAY0, DAY0 + 600, DAY0 + 600 + 1801, DAY0 + 600 + 1801 + 1800], RULES)
    assert [(s.start - DAY0, s.events) for s in sessions] == [(0, 2), (2401, 2)]
    assert sessions[0].duration_ms == 600_000


def test_a_session_is_cut_at_the_cap_even_while_active() -> None:
    stamps = [DAY0 + i * 1200 for i in range(100)]  # every 20 minutes for 33 hours
    sessions = gap_sessions(stamps, RULES)
    assert [s.events for s in sessions] == [72, 28]
    assert sessions[1].start == DAY0 + 72 * 1200


@given(st.lists(st.floats(0, 3 * 86400, allow_nan=False), max_size=60), st.randoms())
def test_sessions_do_not_depend_on_arrival_order(offsets: list[float], rng: object) -> None:
    stamps = [DAY0 + x for x in offsets]
    shuffled = list(stamps)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert gap_sessions(shuffled, RULES) == gap_sessions(stamps, RULES)
    assert sum(s.events for s in gap_sessions(stamps, RULES)) == len(stamps)


def test_session_stats_are_the_difference_of_what_was_replaced() -> None:
    periods = Periods()
    before = gap_sessions([DAY0, DAY0 + 60], RULES)
    after = gap_sessions([DAY0, DAY0 + 60, DAY0 + 120], RULES)
    delta = session_stats(before, after, periods)
    hour = periods.label("hour", DAY0)
    assert delta["hour", hour].sessions == 0
    assert delta["hour", hour].duration_ms == 60_000
    assert delta["hour", hour].events == 1
    assert session_stats(before, before, periods) == {}


# -- funnels ----------------------------------------------------------------------------------

FUNNEL = parse_funnels(
    '[{"name": "buy", "steps": ["view", {"event_type": "cart", "where": {"item.kind": "book"}},'
    ' "pay"], "window_s": 3600}]'
)[0]


def points(*items: tuple[float, str, dict[str, object]]) -> list[FunnelPoint]:
    return [
        FunnelPoint(DAY0 + t, f"k{i}", FUNNEL.matched_steps(kind, props))
        for i, (t, kind, props) in enumerate(items)
    ]


def test_the_furthest_step_within_the_window_counts_for_the_entry_day() -> None:
    periods = Periods()
    day = periods.label("day", DAY0)
    book = {"item": {"kind": "book"}}
    assert (
        progress(points((0, "view", {}), (60, "cart", book), (120, "pay", {})), FUNNEL, periods)[
            day
        ]
        == 3
    )
    # Out of order, out of window, or the filter not met: the step is not reached.
    assert (
        progress(points((0, "cart", book), (60, "view", {}), (90, "pay", {})), FUNNEL, periods)[day]
        == 1
    )
    assert progress(points((0, "view", {}), (3700, "cart", book)), FUNNEL, periods)[day] == 1
    assert (
        progress(points((0, "view", {}), (60, "cart", {"item": {"kind": "toy"}})), FUNNEL, periods)[
            day
        ]
        == 1
    )
    # A later entry can do better than an earlier one.
    later = points((0, "view", {}), (5000, "view", {}), (5100, "cart", book))
    assert progress(later, FUNNEL, periods)[day] == 2


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '[{"name": "x", "steps": ["a"]}]',
        '[{"name": "", "steps": ["a", "b"]}]',
        '[{"name": "x", "steps": ["a", 3]}]',
        '[{"name": "x", "steps": ["a", "b"], "window_s": 0}]',
        '[{"name": "x", "steps": ["a", "b"]}, {"name": "x", "steps": ["a", "b"]}]',
        "not json",
    ],
)
def test_bad_funnel_definitions_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_funnels(text)


# -- identity ---------------------------------------------------------------------------------


def link(user: str, at: float, key: str = "") -> Link:
    return Link("anon1", user, DAY0 + at, key or f"{user}@{at}")


def test_the_earliest_link_wins_and_a_second_user_is_refused() -> None:
    resolved = resolve([link("bob", 50), link("alice", 10), link("alice", 90)], False)
    assert [(r.user_id, r.status) for r in resolved] == [
        ("alice", "active"),
        ("bob", "refused"),
        ("alice", "duplicate"),
    ]
    allowed = resolve([link("bob", 50), link("alice", 10)], True)
    assert [r.status for r in allowed] == ["active", "active"]


def test_anonymous_events_count_for_the_user_from_the_window_before_the_link() -> None:
    covers = coverage(resolve([link("alice", 3600)], False), 1800)
    early = event("anon1", timestamp=DAY0 + 1000, anonymous=True)
    within = event("anon1", timestamp=DAY0 + 2000, anonymous=True)
    later = event("anon1", timestamp=DAY0 + 90000, anonymous=True)
    assert attribute(early, covers) == "anonymous:anon1"
    assert attribute(within, covers) == "alice"
    assert attribute(later, covers) == "alice"
    assert attribute(event("carol"), covers) == "carol"  # a user id is never re-attributed


# -- bots and privacy --------------------------------------------------------------------------


def test_crawlers_are_named_and_browsers_are_not() -> None:
    assert bot_name({"user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}) == "Googlebot"
    assert bot_name({"context": {"userAgent": "curl/8.4.0"}}) == "curl"
    browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    assert bot_name({"user_agent": browser}) is None
    assert bot_name({}) is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("not an ip", None),
    ],
)
def test_ip_addresses_are_truncated(raw: str, kept: str | None) -> None:
    assert truncate_ip(raw) == kept


def test_enrichment_scrubs_hashes_and_flags_and_a_client_cannot_claim_the_flag() -> None:
    rules = BehaviorRules(hashed_fields=("email", "context.traits.email"), hash_salt=b"s" * 16)
    e = event(
        properties={
            "ip": "198.51.100.23",
            "email": "a@example.com",
            "context": {"ip": "198.51.100.24", "traits": {"email": "a@example.com"}},
            BOT_PROPERTY: "spoofed",
        }
    )
    rules.enrich(e)
    props = e.properties
    assert props["ip"] == "198.51.100.0" and props["context"]["ip"] == "198.51.100.0"
    assert props["email"] == hash_value("a@example.com", b"s" * 16) != "a@example.com"
    assert props["context"]["traits"]["email"] == props["email"]
    assert BOT_PROPERTY not in props
    bot = event(properties={"user_agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    rules.enrich(bot)
    assert bot.properties[BOT_PROPERTY] == "Googlebot"
    plain = event(properties={"ip": "198.51.100.23"})
    assert not scrub(plain.properties, truncate_ips=False)
