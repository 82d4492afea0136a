"""The contract suite's builders and checks: one event builder, one time frame, the figures a
store must agree with.

Every event is built by `tests.faults.behavior_event` (parsed and enriched as the worker
stores it), placed `at` seconds after `DAY_START`, received at `NOW`; the stores' clock
(`tests.conftest.FakeClock`) starts at `NOW`, on the hour, a day after `DAY_START`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from behavioral_analytics.behavior import recount
from behavioral_analytics.events import Event
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.store import AggregateSnapshot, NewDeadLetter, Page, Store
from tests.faults import BOT_AGENT, behavior_event
from tests.faults import assert_recounts as recounts_cleanly

__all__ = [
    "BOT_AGENT",
    "DAY",
    "DAY_START",
    "HOUR",
    "NOW",
    "PURCHASE",
    "MakeStore",
    "assert_counts",
    "assert_matches_remaining",
    "assert_recounts",
    "dead_letter",
    "ev",
    "every_page",
    "refused_scenario",
    "sent_later",
]

T = TypeVar("T")

NOW = 1_764_320_400.0  # 2025-11-28 09:00:00 UTC, on the hour
HOUR = 3600.0
DAY = 86400.0
DAY_START = NOW - DAY
PURCHASE = parse_funnels(PURCHASE_FUNNEL)

# `make(**options)`: a store on the test's backing data (each call a new instance on the same
# data, as several workers share one database), with those behavior rules; see conftest.py.
MakeStore = Callable[..., Store]


def ev(n: int, at: float, *, received_at: float = NOW, **fields: Any) -> Event:
    """Event `e{n}`, `at` seconds after DAY_START, first published at `received_at`; `fields`
    as `behavior_event` takes them (user, anon, kind, session, properties)."""
    return behavior_event(n, DAY_START + at, received_at=received_at, **fields)


def sent_later(n: int, at: float, **fields: Any) -> Event:
    """Event `e{n}` published when it happened, `at` seconds after DAY_START (after NOW, when
    the stores' clock ran a `forget`): new activity, no message already in flight."""
    return ev(n, at, received_at=DAY_START + at, **fields)


def dead_letter(n: int, *, received_at: float = NOW, **fields: Any) -> NewDeadLetter:
    """Rejected message `m{n}` (`not_json`, body `bad {n}`), first published at `received_at`."""
    values: dict[str, Any] = {
        "reason": "not_json",
        "detail": f"line {n}",
        "data": f"bad {n}".encode(),
        "message_id": f"m{n}",
        "received_at": received_at,
    }
    values.update(fields)
    return NewDeadLetter(**values)


def every_page(fetch: Callable[[str | None], Page[T]], most: int = 100) -> list[list[T]]:
    """The pages `fetch(cursor)` hands out, following each next cursor from the first page;
    fails after `most` pages (a cursor that never ends)."""
    pages: list[list[T]] = []
    cursor: str | None = None
    for _ in range(most):
        page = fetch(cursor)
        pages.append(page.items)
        if (cursor := page.next_cursor) is None:
            return pages
    raise AssertionError(f"still a next cursor after {most} pages")


def assert_recounts(store: Store) -> None:
    """`verify` of everything the store holds, at NOW, finds no drift."""
    recounts_cleanly(store, NOW)


def assert_counts(store: Store, events: Iterable[Event]) -> None:
    """Every figure the store holds equals a recount of `events` by its rules, with the links
    it holds."""
    assert store.rules is not None
    periods = store.periods  # type: ignore[attr-defined]
    want = recount(events, store.stored_links(), store.rules, periods)
    snap = store.snapshot()
    assert _nonzero_buckets(snap.buckets) == _nonzero_buckets(
        {k: (b.total, dict(b.by_type)) for k, b in want.deltas.buckets.items()}
    )
    assert snap.unique_users == dict(want.deltas.unique_users())
    assert snap.markers == want.deltas.markers
    assert snap.session_stats == want.session_stats
    assert (snap.person_sessions or set()) == {
        (person, s.key, s.start, s.end, s.events)
        for person, sessions in want.sessions.items()
        for s in sessions
    }
    want_progress = {k: step for k, step in want.funnel_progress.items() if step}
    assert (snap.funnel_progress or {}) == want_progress
    assert snap.funnel_users == {k: n for k, n in want.funnel_users.items() if n}
    assert snap.bot_events == dict(want.bot_events)
    want_profiles = {
        who: (p.total, dict(p.by_type), p.first_seen, p.last_activity)
        for who, p in want.deltas.profiles.items()
    }
    assert snap.profiles == want_profiles


def assert_matches_remaining(store: Store) -> None:
    """The figures equal a recount of the raw events the store holds, with the links it holds
    (after a forget, say), and `verify` finds no drift."""
    assert_counts(store, store.iter_raw_events())
    assert_recounts(store)


def _nonzero_buckets(
    buckets: dict[tuple[str, str], tuple[int, dict[str, int]]],
) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    """Buckets without the zeros a forget leaves behind (a bucket whose events all went)."""
    return {
        key: (total, {t: n for t, n in by_type.items() if n})
        for key, (total, by_type) in buckets.items()
        if total or any(by_type.values())
    }


def refused_scenario() -> tuple[list[Event], list[Event], list[Event]]:
    """a2 is bob's (bob identified first), alice's later proposal for a2 is refused; a1 is
    alice's. Returns (alice's events, a1's anonymous events, what stays)."""
    alice = [
        ev(3, 300, user="alice", anon="a2", kind="identify"),  # refused: bob was first
        ev(5, 600, user="alice", anon="a1", kind="identify"),  # active
        ev(7, 800, user="alice", kind="search"),
    ]
    a1 = [ev(4, 500, anon="a1"), ev(6, 700, anon="a1", kind="add_to_cart")]
    stays = [
        ev(1, 100, user="bob", anon="a2", kind="identify"),
        ev(2, 50, anon="a2", kind="search"),  # within bob's window: bob's
        ev(8, 400, anon="a2"),  # bob's
        ev(9, -2 * HOUR, anon="a2"),  # before bob's window: a2's own
        ev(10, 200, user="carol"),
    ]
    return alice, a1, stays


def without_copies(snapshot: AggregateSnapshot) -> AggregateSnapshot:
    """`snapshot` less the copies of raw events a store keeps to spare queries (`kept_copies`),
    which a rebuild drops and a commit keeps anew."""
    return replace(snapshot, recent_events=None, anonymous_events=None)
