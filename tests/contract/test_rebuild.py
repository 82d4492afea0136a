"""What `verify` reads and what `verify --repair` writes: every raw event, every aggregate in
comparable form, and the aggregates rebuilt from a stream of raw events."""

from __future__ import annotations

import json
import sqlite3

from behavioral_analytics.events import Event
from behavioral_analytics.store import AggregateSnapshot, Store
from behavioral_analytics.stores.firestore.behavior import decode_sessions, encode_sessions
from behavioral_analytics.stores.firestore.schema import AGGREGATES, PROGRESS_FIELD, SESSIONS_FIELD
from behavioral_analytics.stores.firestore.session_counts import SESSION_VALUES_FIELD
from behavioral_analytics.verification import verify
from tests.contract.builders import (
    BOT_AGENT,
    DAY_START,
    NOW,
    assert_counts,
    assert_recounts,
    ev,
    without_copies,
)


def _traffic() -> list[Event]:
    """An anonymous visit that identifies, a user down the funnel, a bot: every figure kind."""
    return [
        ev(1, 0, anon="a1"),
        ev(2, 60, anon="a1", kind="search"),
        ev(3, 120, user="alice", anon="a1", kind="identify"),
        ev(4, 300, user="bob"),
        ev(5, 360, user="bob", kind="search"),
        ev(6, 420, user="bob", kind="add_to_cart"),
        ev(7, 480, user="bob", kind="purchase"),
        ev(8, 3 * 3600, user="bob"),
        ev(9, 30, anon="crawler", user_agent=BOT_AGENT),
    ]


def test_iter_raw_events_yields_every_stored_event_once(store: Store) -> None:
    assert list(store.iter_raw_events()) == []
    events = _traffic()
    store.commit(events[:5])
    store.commit(events[3:])
    raw = list(store.iter_raw_events())
    assert len(raw) == len(events)
    assert sorted(raw, key=lambda e: e.key) == sorted(events, key=lambda e: e.key)


def test_snapshot_holds_every_figure_a_recount_gives(store: Store) -> None:
    assert store.snapshot() == AggregateSnapshot()
    events = _traffic()
    store.commit(events)
    snap = store.snapshot()
    assert snap.buckets and snap.unique_users and snap.markers and snap.profiles
    assert snap.bot_events and snap.session_stats and snap.funnel_users
    assert snap.person_sessions and snap.funnel_progress
    assert_counts(store, events)


def _lose_bobs_last_session_and_progress(store: Store, backend: str) -> None:
    """Bob's later session (with its values) lost and his furthest purchase step set back to 1,
    behind the store's back (a bug or a hand edit): no figure changes."""
    if backend == "sqlite":
        db = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        with db:
            db.execute(
                "DELETE FROM sessions WHERE person = 'bob' AND start = "
                "(SELECT max(start) FROM sessions WHERE person = 'bob')"
            )
            db.execute("UPDATE funnel_progress SET step = 1 WHERE person = 'bob'")
        db.close()
        return
    bob = store.db.collection(AGGREGATES).document("user_bob")  # type: ignore[attr-defined]
    data = bob.get().to_dict() or {}
    sessions = sorted(decode_sessions(data[SESSIONS_FIELD]).values(), key=lambda s: s.start)
    progress = {name: dict.fromkeys(days, 1) for name, days in data[PROGRESS_FIELD].items()}
    values = json.loads(data[SESSION_VALUES_FIELD])
    del values[sessions[-1].key]  # as the row's `vals` go with it on SQLite
    bob.update(
        {
            SESSIONS_FIELD: encode_sessions(sessions[:-1], 0.0),
            PROGRESS_FIELD: progress,
            SESSION_VALUES_FIELD: json.dumps(values).encode(),
        }
    )


def test_verify_finds_a_persons_lost_session_or_funnel_step_that_no_figure_shows_yet(
    store: Store, backend: str
) -> None:
    """A person's kept sessions and furthest funnel steps are what their next commit derives
    from: lost or wrong, they change no figure until that person is seen again, then a session
    or a funnel user is counted twice. `verify` compares them, and `--repair` puts them back."""
    store.commit(_traffic())
    assert_recounts(store)
    before = store.snapshot()
    _lose_bobs_last_session_and_progress(store, backend)
    periods = store.periods  # type: ignore[attr-defined]
    report = verify(store, periods, now=NOW, retention_s=None)
    drift = {(d.what, d.key): (d.stored, d.expected) for d in report.drift}
    day = periods.of(DAY_START)[2]
    start = DAY_START + 3 * 3600
    assert drift.pop(("person_sessions", "bob")) == ([], [[f"g:{start!r}", start, start, 1]])
    assert drift.pop(("funnel_progress", f"purchase:bob:{day}")) == (1, 4)
    stored_values, recounted_values = drift.pop(("session_values", f"bob:g:{start!r}@{start!r}"))
    assert stored_values is None and {"entry_page", "exit_page"} <= set(recounted_values)
    assert drift == {}
    assert verify(store, periods, now=NOW, retention_s=None, repair=True).repaired
    assert without_copies(store.snapshot()) == without_copies(before)
    assert_recounts(store)


def test_rebuild_replaces_the_aggregates_by_those_of_the_events_given(store: Store) -> None:
    events = _traffic()
    store.commit(events)
    before = store.snapshot()
    part = [e for e in events if e.who != "bob"]
    store.rebuild(iter(part))  # as if bob's events had never been counted: drift
    assert store.profile("bob") is None
    assert_counts(store, part)
    store.rebuild(store.iter_raw_events())  # the repair
    assert without_copies(store.snapshot()) == without_copies(before)
    assert_recounts(store)
    assert store.commit([ev(10, 600, user="bob")]).created == 1  # and counting goes on
    assert_recounts(store)


def test_consistent_reads_see_the_store_and_end_cleanly(store: Store) -> None:
    events = _traffic()
    store.commit(events)
    with store.consistent_reads():
        snapshot = store.snapshot()
        raw = sorted(e.key for e in store.iter_raw_events())
        links = store.stored_links()
    assert raw == sorted(e.key for e in events)
    assert snapshot == store.snapshot() and links == store.stored_links()
    try:
        with store.consistent_reads():
            store.snapshot()
            raise LookupError("a failure inside")
    except LookupError:
        pass
    # Whatever happened inside, the read has ended: commits go on.
    assert store.commit([ev(10, 600, user="carol")]).created == 1
    assert_recounts(store)


def test_dropping_the_kept_copies_changes_no_figure_and_counting_goes_on(store: Store) -> None:
    """`drop_copies`, what `verify --repair` does where only the copies of raw events a store
    keeps to spare queries drifted (Firestore's digests and anonymous lists; SQLite keeps none):
    they are gone, every figure stays, and the next commits count from the raw events."""
    events = _traffic()
    store.commit(events)
    before = store.snapshot()
    actors = sorted({e.who for e in events} | {"nobody", "anonymous:nobody"})  # absent: left
    store.drop_copies(actors, [who for who in actors if who.startswith("anonymous:")])
    after = store.snapshot()
    assert without_copies(after) == without_copies(before)
    assert (after.recent_events, after.anonymous_events) == (None, None)
    store.commit([ev(10, 600, user="bob"), ev(11, 660, anon="a1"), ev(12, 720, anon="a9")])
    assert_recounts(store)
