"""The cap on client sessions, in the core: `client_sessions` cuts, and the incremental
`merge_client_sessions` agrees with it whenever it answers (docs/behavior.md, "Sessions")."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.sessions import (
    Session,
    SessionRules,
    client_sessions,
    merge_client_sessions,
)

RULES = SessionRules(gap_s=1800.0, max_s=86400.0)
DAY = 86400.0


def test_the_issue_case_four_opens_a_day_apart_are_four_sessions() -> None:
    sessions = client_sessions("-1", [0.0, DAY, 2 * DAY, 3 * DAY], RULES)
    assert [(s.start, s.end, s.events) for s in sessions] == [
        (t, t, 1) for t in (0.0, DAY, 2 * DAY, 3 * DAY)
    ]
    assert [s.key for s in sessions] == [
        "c:-1",
        f"c:-1\x1f{DAY!r}",
        f"c:-1\x1f{2 * DAY!r}",
        f"c:-1\x1f{3 * DAY!r}",
    ]


def test_gaps_do_not_cut_a_client_session_and_the_cap_counts_from_each_start() -> None:
    stamps = [0.0, 3 * 3600, 86399.0, 86400.0, 90000.0]
    sessions = client_sessions("s", stamps, RULES)
    assert [(s.start, s.end, s.events, s.first) for s in sessions] == [
        (0.0, 86399.0, 3, True),
        (86400.0, 90000.0, 2, False),
    ]


def _fold(stamps: list[float], batches: list[list[int]]) -> list[Session]:
    """Sessions after the batches arrive in turn, merging where possible, else recounting."""
    stored: list[Session] = []
    seen: list[float] = []
    for batch in batches:
        new = [stamps[i] for i in batch]
        merged = merge_client_sessions(stored, new, RULES) if stored else None
        seen += new
        stored = merged if merged is not None else client_sessions("s", seen, RULES)
    return sorted(stored, key=lambda s: s.start)


@given(
    st.lists(st.integers(0, 4 * 24), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_merging_in_any_order_equals_cutting_the_whole_set(hours: list[int], rng: object) -> None:
    stamps = [h * 3600.0 for h in hours]
    order = list(range(len(stamps)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    cut = rng.randint(0, len(order))  # type: ignore[attr-defined]
    batches = [b for b in (order[:cut], order[cut:]) if b]
    batches = [[i] for b in batches for i in b] if len(stamps) % 2 else batches
    assert _fold(stamps, batches) == client_sessions("s", stamps, RULES)


def test_every_order_of_a_small_session_merges_to_the_same_sessions() -> None:
    stamps = [0.0, 12 * 3600, 23 * 3600, 25 * 3600, 47 * 3600, 49 * 3600]
    want = client_sessions("s", stamps, RULES)
    for order in itertools.permutations(range(len(stamps))):
        assert _fold(stamps, [[i] for i in order]) == want
