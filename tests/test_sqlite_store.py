"""The SQLite store: exactly-once commits and the reads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event, dedupe_key
from behavioral_analytics.store import NewDeadLetter, StoreError
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify

T0 = 1_764_320_000.0  # 2025-11-28 08:53:20 UTC


def ev(n: int, who: str = "user_1", event_type: str = "page_view", ts: float = T0) -> Event:
    return Event(
        key=dedupe_key(f"evt_{n}", who, event_type, ts),
        event_id=f"evt_{n}",
        user_id=who,
        anonymous_id=None,
        event_type=event_type,
        timestamp=ts,
        session_id="s1",
        properties={"page_url": f"/p/{n}"},
        received_at=ts + 1,
    )


def test_commit_creates_events_and_applies_their_deltas(store: SQLiteStore) -> None:
    result = store.commit([ev(1), ev(2, event_type="purchase"), ev(3, who="user_2", ts=T0 + 3600)])
    assert (result.created, result.duplicates) == (3, 0)
    assert result.created_by_type == {"page_view": 2, "purchase": 1}
    profile = store.profile("user_1")
    assert profile is not None
    assert profile.total_events == 2 and profile.events_by_type == {"page_view": 1, "purchase": 1}
    day = store.series("day")
    assert [(p.period, p.total_events, p.unique_users) for p in day] == [("2025-11-28", 3, 2)]
    hours = store.series("hour")
    assert [(p.period, p.total_events, p.unique_users) for p in hours] == [
        ("2025-11-28-08", 2, 1),
        ("2025-11-28-09", 1, 1),
    ]
    assert all(p.unique_users is None for p in store.series("minute"))


def test_a_redelivered_batch_changes_nothing(store: SQLiteStore) -> None:
    batch = [ev(i, who=f"user_{i % 3}") for i in range(10)]
    store.commit(batch)
    before = store.snapshot()
    again = store.commit(batch)
    assert (again.created, again.duplicates) == (0, 10)
    assert store.snapshot() == before


def test_partly_new_batch_counts_only_the_new_events(store: SQLiteStore) -> None:
    store.commit([ev(1), ev(2)])
    result = store.commit([ev(2), ev(3), ev(3)])
    assert (result.created, result.duplicates) == (1, 2)
    profile = store.profile("user_1")
    assert profile is not None and profile.total_events == 3
    assert store.series("day")[0].unique_users == 1


def test_commit_is_atomic(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SQLiteStore, "_apply", staticmethod(explode))
    with pytest.raises(RuntimeError):
        store.commit([ev(1)], [NewDeadLetter("not_json", "", b"x", "m1")])
    monkeypatch.undo()
    assert store.count_events() == 0 and store.count_dead_letters() == 0
    assert store.commit([ev(1)]).created == 1  # and the retry counts it


def test_dead_letters_are_kept_with_reason_and_bytes(store: SQLiteStore) -> None:
    store.commit(
        [ev(1)],
        [NewDeadLetter("invalid_utf8", "bad byte", b"\xff\xfe", "m-9", {"a": "b"}, received_at=T0)],
    )
    page = store.dead_letters()
    assert len(page.items) == 1
    dead = page.items[0]
    assert (dead.reason, dead.data, dead.message_id, dead.attributes) == (
        "invalid_utf8",
        b"\xff\xfe",
        "m-9",
        {"a": "b"},
    )
    assert dead.to_dict()["data"] is None and dead.to_dict()["data_base64"] == "//4="
    store.mark_replayed([dead.id], T0)
    assert store.get_dead_letter(dead.id).replayed_at == T0  # type: ignore[union-attr]
    assert store.get_dead_letter("nope") is None


def test_timeline_is_newest_first_with_a_cursor(store: SQLiteStore) -> None:
    store.commit([ev(i, ts=T0 + i) for i in range(25)] + [ev(99, who="other")])
    seen, cursor = [], None
    while True:
        page = store.timeline("user_1", limit=10, cursor=cursor)
        seen.extend(item.event.event_id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"evt_{i}" for i in reversed(range(25))]
    with pytest.raises(StoreError):
        store.timeline("user_1", cursor="garbage!")


def test_events_by_type_newest_first(store: SQLiteStore) -> None:
    store.commit(
        [ev(i, event_type="search" if i % 2 else "page_view", ts=T0 + i) for i in range(6)]
    )
    page = store.events_by_type("search", limit=2)
    assert [i.event.event_id for i in page.items] == ["evt_5", "evt_3"]
    rest = store.events_by_type("search", limit=2, cursor=page.next_cursor)
    assert [i.event.event_id for i in rest.items] == ["evt_1"] and rest.next_cursor is None


def test_awkward_ids_and_types_work(store: SQLiteStore) -> None:
    store.commit([ev(1, who="team/alice", event_type="checkout.step_2")])
    profile = store.profile("team/alice")
    assert profile is not None and profile.events_by_type == {"checkout.step_2": 1}
    assert store.series("hour")[0].events_by_type == {"checkout.step_2": 1}


def test_series_range(store: SQLiteStore) -> None:
    store.commit([ev(i, ts=T0 + i * 3600) for i in range(5)])
    points = store.series("hour", "2025-11-28-09", "2025-11-28-11")
    assert [p.period for p in points] == ["2025-11-28-09", "2025-11-28-10", "2025-11-28-11"]


def test_active_users_and_freshness(store: SQLiteStore) -> None:
    now = time.time()
    store.commit([ev(1, who="a", ts=now - 60), ev(2, who="b", ts=now - 1200)])
    assert store.active_users(now - 300) == 1
    assert store.active_users(now - 1800) == 2
    fresh = store.freshness()
    assert fresh.newest_event_at == pytest.approx(now - 60)
    assert fresh.lag_s is not None and fresh.lag_s >= 0


def test_verify_finds_drift_and_repair_fixes_it(store: SQLiteStore) -> None:
    now = time.time()
    store.commit([ev(i, who=f"u{i % 4}", ts=now - i * 50) for i in range(40)])
    periods = Periods()
    assert verify(store, periods, now=now, retention_s=86400 * 30).ok
    store._db.execute("UPDATE buckets SET total_events = total_events + 1 WHERE granularity='day'")
    store._db.execute("UPDATE profiles SET total_events = 0 WHERE who = 'u1'")
    store._db.execute("DELETE FROM unique_markers WHERE who = 'u2'")
    store._db.execute("UPDATE buckets SET unique_users = 9 WHERE granularity = 'hour'")
    report = verify(store, periods, now=now, retention_s=86400 * 30)
    kinds = {d.what for d in report.drift}
    assert kinds == {"bucket", "profile", "unique_users", "unique_markers"}
    repaired = verify(store, periods, now=now, retention_s=86400 * 30, repair=True)
    assert repaired.repaired
    assert verify(store, periods, now=now, retention_s=86400 * 30).ok


def test_purge_drops_expired_raw_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SQLiteStore(tmp_path / "s.db", raw_retention_s=100)
    store.commit([ev(1)])
    assert store.purge_expired(time.time() + 50) == 0
    assert store.purge_expired(time.time() + 150) == 1
    assert store.count_events() == 0


def test_get_events_returns_the_stored_ones(store: SQLiteStore) -> None:
    store.commit([ev(1), ev(2)])
    found = store.get_events([ev(1).key, ev(3).key, ev(2).key])
    assert sorted(s.event.event_id for s in found) == ["evt_1", "evt_2"]
    assert all(s.processed_at >= s.event.received_at for s in found)


def test_a_redelivered_rejection_is_recorded_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    first = NewDeadLetter(
        "not_json", "", b"nope", "m-1", received_at=5.0, attempts=[{"attempt": 1}]
    )
    again = NewDeadLetter(
        "not_json", "", b"nope", "m-1", received_at=5.0, attempts=[{"attempt": 2}]
    )
    replay = NewDeadLetter("not_json", "", b"nope", "m-1", received_at=9.0)
    store.commit([], [first])
    store.commit([], [again])  # the batch came back after a crash between commit and ack
    assert store.count_dead_letters() == 1
    store.add_dead_letters([replay])  # a replay is a new publish: recorded again
    assert store.count_dead_letters() == 2
