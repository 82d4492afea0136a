"""The SQLite store's behavioral read model under many generated batches in any order with
redelivery, and its migration of older files. The scenarios every store must pass (sessions,
funnels, identity, bots, forgetting) are in the contract suite (tests/contract)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules, as_person
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite import commit as sqlite_commit
from behavioral_analytics.stores.sqlite import funnels as sqlite_funnels
from tests.contract.builders import DAY_START, ev
from tests.faults import (
    assert_exact,
    commit_shuffled,
    expected_links,
    make_workload,
)
from tests.faults import assert_recounts as recounts_cleanly

NOW = 1_764_320_400.0  # on the hour


PURCHASE = parse_funnels(PURCHASE_FUNNEL)


def make_store(tmp_path: Path, **rules: object) -> SQLiteStore:
    rules.setdefault("funnels", PURCHASE)
    return SQLiteStore(
        tmp_path / "store.db",
        rules=BehaviorRules(**rules),
        clock=lambda: NOW,  # type: ignore[arg-type]
    )


def assert_recounts(store: SQLiteStore) -> None:
    recounts_cleanly(store, NOW)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_in_any_order_with_redelivery_equal_the_recount(tmp_path: Path, seed: int) -> None:
    workload = make_workload(1500, seed, NOW, behavior=True)
    events = list(workload.distinct.values())
    rng = random.Random(seed)
    rng.shuffle(events)
    store = make_store(tmp_path)
    commit_shuffled(store, events, rng)
    assert_exact(store, workload, Periods())
    assert_recounts(store)


def test_a_store_from_before_identity_stitching_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, user_id TEXT, "
        "anonymous_id TEXT, who TEXT NOT NULL, event_type TEXT NOT NULL, timestamp REAL NOT NULL, "
        "session_id TEXT, properties TEXT NOT NULL, received_at REAL NOT NULL, "
        "processed_at REAL NOT NULL, expire_at REAL NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO events VALUES "
        "('k', 'e', 'u1', NULL, 'u1', 'page_view', 1, NULL, '{}', 1, 1, 9e9)"
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert [e.event.key for e in store.timeline("u1").items] == ["k"]
    assert expected_links([]) == []


def test_new_events_that_can_only_enter_a_funnel_read_no_window_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person whose new events can only be entries (page views, the purchase funnel's first
    step alone) has progress recomputed from those events on, without the hour before them; a
    new event of a later step reads the hour before it; both count as a recount does."""
    store = make_store(tmp_path)
    seen: list[list[float]] = []  # the instants of the events each recount was given
    real = sqlite_funnels.progress

    def spy(points: Any, *args: Any) -> dict[str, int]:
        points = list(points)
        seen.append(sorted(point[0] for point in points))
        return real(points, *args)

    monkeypatch.setattr(sqlite_funnels, "progress", spy)
    store.commit([ev(1, 100, user="u1")])
    store.commit([ev(2, 700, user="u1")])  # a page view: entries from it on
    assert seen[-1] == [DAY_START + 700]
    store.commit([ev(3, 1000, user="u1", kind="search")])  # moves both page views on
    assert seen[-1] == [DAY_START + 100, DAY_START + 700, DAY_START + 1000]
    store.commit([ev(4, 50, user="u1")])  # late: the events after it in its window
    assert seen[-1] == [DAY_START + 50, DAY_START + 100, DAY_START + 700, DAY_START + 1000]
    assert_recounts(store)
    store.close()


def test_a_funnel_whose_later_step_shares_the_first_ones_type_reads_the_window_before(
    tmp_path: Path,
) -> None:
    """Where a later step has the first step's type (here told apart by a property), a new
    event of that type can move an earlier entry on: its person's window before it is read,
    and the progress counts as a recount does, in any order of the batches."""
    funnels = parse_funnels(
        '[{"name": "paths", "window_s": 3600, "steps": ['
        '{"event_type": "page_view", "where": {"path": "/a"}},'
        '{"event_type": "page_view", "where": {"path": "/b"}}]}]'
    )
    events = [ev(1, 100, user="u1", path="/a"), ev(2, 200, user="u1", path="/b")]
    for order in (events, events[::-1]):
        path = tmp_path / ("late" if order[0] is events[1] else "live")
        path.mkdir()
        store = make_store(path, funnels=funnels)
        store.commit([order[0]])
        store.commit([order[1]])
        assert sum(n for (_, _, step), n in store.snapshot().funnel_users.items() if step == 2) == 1
        assert_recounts(store)
        store.close()


def test_a_commits_own_events_are_not_read_back_for_its_funnels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events a commit adds are taken from memory for its funnels' progress, with their
    properties as parsed; only the events stored before it are read and their properties
    decoded (here: a later step's page view reads the window before it), and the progress
    counts as a recount does."""
    funnels = parse_funnels(
        '[{"name": "paths", "window_s": 3600, "steps": ['
        '{"event_type": "page_view", "where": {"path": "/a"}},'
        '{"event_type": "page_view", "where": {"path": "/b"}}]}]'
    )
    decoded: list[str] = []
    real = sqlite_funnels._decode

    def spy(text: str) -> Any:
        decoded.append(text)
        return real(text)

    monkeypatch.setattr(sqlite_funnels, "_decode", spy)
    store = make_store(tmp_path, funnels=funnels)
    store.commit([ev(1, 100, user="u1", path="/a"), ev(2, 200, user="u1", path="/b")])
    assert decoded == []
    store.commit([ev(3, 300, user="u2", path="/a"), ev(4, 400, user="u1", path="/b")])
    assert len(decoded) == 2  # u1's two stored page views; u2's and u1's new ones are held
    reached = store.snapshot().funnel_users
    assert sum(n for (_, _, step), n in reached.items() if step == 2) == 1
    assert_recounts(store)
    store.close()


def _sign_in(user: str = "u1") -> list[Any]:
    """A visitor's two anonymous page views, their sign-in (an identify with both ids), and a
    page view as the user, in one session."""
    return [
        ev(1, 100, anon="a1", session="s1"),
        ev(2, 200, anon="a1", session="s1"),
        ev(3, 300, user=user, anon="a1", kind="identify", session="s1"),
        ev(4, 400, user=user, anon="a1", session="s1"),
    ]


def test_a_sign_in_within_a_batch_stores_the_visitors_events_for_the_user_at_once(
    tmp_path: Path,
) -> None:
    """The batch's own link applies to its anonymous events before they are stored: nothing
    is stored for the anonymous id and then moved; every figure is what the same events
    committed one by one (stored, then moved by the link) give."""
    one = make_store(tmp_path / "one")
    statements: list[str] = []
    one._db.set_trace_callback(statements.append)
    one.commit(_sign_in())
    one._db.set_trace_callback(None)
    moved = [s for s in statements if s.startswith(("UPDATE events SET person", "DELETE FROM p"))]
    assert moved == []
    assert {e.event.key for e in one.timeline("u1").items} == {e.key for e in _sign_in()}
    apart = make_store(tmp_path / "apart")
    visit, sign_in, after = _sign_in()[:2], _sign_in()[2], _sign_in()[3]
    apart.commit(visit)
    statements.clear()
    apart._db.set_trace_callback(statements.append)
    apart.commit([sign_in])
    apart._db.set_trace_callback(None)
    apart.commit([after])
    # The sign-in moved the stored visit: the visitor's person row, left with no event, is
    # deleted in one statement, not updated twice first.
    left = [s for s in statements if s.startswith(("UPDATE persons", "DELETE FROM persons"))]
    assert left == ["DELETE FROM persons WHERE who = 'anonymous:a1' AND total_events <= 2"]
    assert one.snapshot() == apart.snapshot()
    assert_recounts(one)
    one.close()
    apart.close()


def test_a_sign_in_of_a_person_forgotten_since_the_visit_counts_as_a_later_sign_in_would(
    tmp_path: Path,
) -> None:
    """The visit dated before the person's tombstone is kept for the visitor, in the sign-in's
    batch as when the sign-in comes in a later batch: a link made after a forget covers none
    of the events up to the tombstone (docs/behavior.md "Forgetting a user", step 6)."""
    stores = []
    for name in ("one", "apart"):
        clock = [DAY_START + 250]
        store = SQLiteStore(
            tmp_path / name / "store.db",
            rules=BehaviorRules(funnels=PURCHASE),
            clock=lambda clock=clock: clock[0],
        )
        store.commit([ev(9, 50, user="u1")])
        store.forget("u1")  # a tombstone at +250: after the visit, before the sign-in
        clock[0] = NOW
        stores.append(store)
    one, apart = stores
    one.commit(_sign_in())
    for event in _sign_in():
        apart.commit([event])
    assert one.count_events() == apart.count_events() == 4
    visit, sign_in = _sign_in()[:2], _sign_in()[2:]
    assert {e.event.key for e in one.timeline("u1").items} == {e.key for e in sign_in}
    assert {e.event.key for e in one.timeline("anonymous:a1").items} == {e.key for e in visit}
    assert one.snapshot() == apart.snapshot()
    assert_recounts(one)
    one.close()
    apart.close()


def _spy_folds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches `_folds` is given from now on, in call order."""
    folded: list[int] = []
    real = sqlite_commit._folds

    def spy(humans: Any, *args: Any, **kwargs: Any) -> Any:
        folded.append(len(humans))
        return real(humans, *args, **kwargs)

    monkeypatch.setattr(sqlite_commit, "_folds", spy)
    return folded


def _folded_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *batches: list[Any]) -> Any:
    """The snapshot of a store that committed `batches` folding each whole inside its
    transaction (what the folds made before the lock must equal)."""
    real = sqlite_commit._folds
    with monkeypatch.context() as patched:
        patched.setattr(
            sqlite_commit._FoldedAhead, "of_humans", lambda self, h, p, r: real(h, p, r)
        )
        whole = make_store(tmp_path / "whole")
        for batch in batches:
            whole.commit(batch)
        snapshot = whole.snapshot()
        whole.close()
    return snapshot


def test_a_batch_with_a_sign_in_is_folded_once_before_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Who each event counts for, the batch's own sign-in resolved, is read before the write
    lock and the batch folded for those persons then: the transaction, which finds no other
    commit since, folds nothing again, and every figure is what folding inside gives."""
    others = [ev(5, 150, user="u2", session="s2"), ev(6, 250, user="u3", session="s3")]
    whole = _folded_whole(tmp_path, monkeypatch, [*_sign_in(), *others])
    folded = _spy_folds(monkeypatch)
    store = make_store(tmp_path / "store")
    store.commit([*_sign_in(), *others])
    assert folded == [6]
    assert store.snapshot() == whole
    assert_recounts(store)
    store.close()


def test_a_link_another_worker_stores_after_the_attribution_is_read_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in another worker commits between the attribution read before the lock and the
    lock itself: the transaction sees another commit (`PRAGMA data_version`), reads who each
    event counts for again, stores the visit for the user and folds again only the visitor's
    and the user's events; a tombstone stored there drops the forgotten person's events."""
    visit, sign_in = _sign_in()[:2], _sign_in()[2:3]
    others = [ev(5, 150, user="u2", session="s2"), ev(6, 250, user="u3", session="s3")]
    whole = _folded_whole(tmp_path, monkeypatch, sign_in, [*visit, *others])
    store = make_store(tmp_path / "store")
    other = make_store(tmp_path / "store")  # another connection to the same file
    real_transaction = sqlite_commit.transaction
    meanwhile = [lambda: other.commit(sign_in), lambda: other.forget("u3")]

    def transaction(db: sqlite3.Connection, waiting: Any = None) -> Any:
        if meanwhile and db is store._db:
            meanwhile.pop(0)()
        return real_transaction(db, waiting)

    monkeypatch.setattr(sqlite_commit, "transaction", transaction)
    folded = _spy_folds(monkeypatch)
    result = store.commit([*visit, *others])
    # The batch before the lock; the other worker's sign-in; a1's visit inside, now u1's.
    assert folded == [4, 1, 2]
    assert (result.created, result.forgotten) == (4, 0)
    assert store.snapshot() == whole
    assert {e.event.key for e in store.timeline("u1").items} == {e.key for e in _sign_in()[:3]}
    late = [ev(7, 350, user="u3", session="s3"), ev(8, 360, user="u2", session="s2")]
    result = store.commit(late)
    assert folded[3:] == [2, 1]  # before the lock with u3 alive; again without u3's event
    assert (result.created, result.forgotten) == (1, 1)
    assert store.timeline("u3").items == []
    assert_recounts(store)
    other.close()
    store.close()


def test_the_fold_refolded_for_the_linked_people_equals_the_whole_batch_folded_again() -> None:
    """Every part of the fold, with the breakdowns' event counts in the same order (admission
    follows it), is what folding the whole batch for the people the events count for gives."""
    periods, rules = Periods(), BehaviorRules().breakdowns
    batch = [*_sign_in(), ev(5, 150, user="u2", session="s2"), ev(6, 250, anon="a2")]
    ahead = sqlite_commit._FoldedAhead.of(batch, periods, rules)
    linked = [as_person(e, "u1") if e.anonymous_id == "a1" else e for e in batch]
    deltas, breakdowns = ahead.of_humans(linked, periods, rules)
    again = sqlite_commit._folds(linked, periods, rules)
    assert (deltas, breakdowns) == again
    assert list(breakdowns.events) == list(again[1].events)
    assert {who for who, _ in breakdowns.markers} == {"u1", "u2", "anonymous:a2"}
