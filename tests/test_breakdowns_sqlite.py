"""What is specific to the SQLite store's breakdowns: `verify` finds a count, marker or admitted
set that drifted and `--repair` rebuilds them under the stored admitted sets; a file written
before breakdowns gets their tables when opened, and recording the configuration there (as
opening it with the settings does, saying so in one line) counts them from the raw events."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import OTHER, BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.settings import Settings, load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore, session_counts
from behavioral_analytics.verification import verify
from behavioral_analytics.wiring import open_configured
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev

RULES = BehaviorRules(breakdowns=BreakdownRules(("page",), 2))
DAY_LABEL = "2025-11-27"


def _store(path: Path, rules: BehaviorRules = RULES) -> SQLiteStore:
    return SQLiteStore(path, rules=rules, clock=FakeClock(NOW))


def _visits() -> list:
    return [
        ev(n, n * 10, user=f"u{n % 2}", page_url=f"https://shop.example/{path}")
        for n, path in enumerate(["a", "b", "c", "a", "d"], start=1)
    ]


def test_verify_finds_breakdown_drift_and_repair_restores_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "store.db")
    store.commit(_visits())
    points = store.breakdown("page", "day")
    assert points[0].events == {"/a": 2, "/b": 1} and points[0].other_events == 2
    db = sqlite3.connect(tmp_path / "store.db")
    with db:
        db.execute(
            "UPDATE breakdown_buckets SET events = json_set(events, ?1, json_extract(events, ?1) "
            "+ 5) WHERE json_extract(events, ?1) IS NOT NULL",
            ('$."/a"',),
        )
        db.execute("DELETE FROM breakdown_markers")
        db.execute(
            "UPDATE breakdown_buckets SET unique_users = json_remove(unique_users, ?)",
            (f'$."{OTHER}"',),
        )
        db.execute("DELETE FROM breakdown_admitted WHERE granularity = 'hour'")
    db.close()
    report = verify(store, store.periods, now=NOW, retention_s=None)
    drift = {(d.what, d.key) for d in report.drift}
    assert ("breakdown", f"day:{DAY_LABEL}:page:/a") in drift
    assert ("breakdown_users", f"{DAY_LABEL}:page:{OTHER}") in drift
    assert ("breakdown_admitted", f"hour:{DAY_LABEL}-09:page") in drift
    repaired = verify(store, store.periods, now=NOW, retention_s=None, repair=True)
    assert repaired.repaired
    assert store.breakdown("page", "day") == points
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    # The markers are back: a known person on a known value adds no unique user.
    store.commit([ev(8, 80, user="u1", page_url="https://shop.example/a")])
    assert store.breakdown("page", "day")[0].unique_users == points[0].unique_users
    # The hour's set was chosen again, in time order.
    hour = store.snapshot().breakdown_admitted[("hour", f"{DAY_LABEL}-09", "page")]
    assert hour == ("/a", "/b")


def test_a_file_from_before_breakdowns_gets_them_counted(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    old = _store(path)
    old.commit(_visits())
    old.close()
    db = sqlite3.connect(path)
    with db:
        for table in (
            "breakdown_buckets",
            "breakdown_markers",
            "breakdown_admitted",
            "breakdown_sessions",
        ):
            db.execute(f"DROP TABLE {table}")
        db.execute("ALTER TABLE sessions DROP COLUMN vals")
        (text,) = db.execute("SELECT value FROM metadata WHERE name = 'config'").fetchone()
        record = json.loads(text)
        del record["breakdown_dimensions"], record["breakdown_values"]
        db.execute("UPDATE metadata SET value = ? WHERE name = 'config'", (json.dumps(record),))
    db.close()
    store = _store(path)
    recorded = store.recorded_config()
    assert recorded is not None and recorded.breakdown_dimensions == ()
    assert store.breakdown("page", "day") == []  # the tables are back, empty
    store.record_config()
    recorded = store.recorded_config()
    assert recorded is not None and recorded.breakdown_dimensions == ("page",)
    day = store.breakdown("page", "day")
    assert day[0].events == {"/a": 2, "/b": 1}
    assert day[0].unique_users == {"/a": 2, "/b": 1, OTHER: 1}
    assert store.commit([ev(9, 90, user="u9", page_url="https://shop.example/b")]).created == 1
    assert verify(store, store.periods, now=NOW, retention_s=None).ok


def _written(tmp_path: Path) -> tuple[Settings, sqlite3.Connection]:
    """The default settings on `tmp_path`, and a connection to the store they wrote the visits
    to."""
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    _, store = open_configured(settings)
    store.commit(_visits())
    store.close()
    return settings, sqlite3.connect(tmp_path / "store.db")


def test_opening_a_store_recorded_before_breakdowns_counts_them_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, db = _written(tmp_path)
    with db:
        (text,) = db.execute("SELECT value FROM metadata WHERE name = 'config'").fetchone()
        record = json.loads(text)
        del record["breakdown_dimensions"], record["breakdown_values"]
        db.execute("UPDATE metadata SET value = ? WHERE name = 'config'", (json.dumps(record),))
        for table in ("breakdown_buckets", "breakdown_markers", "breakdown_admitted"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    with caplog.at_level(logging.INFO, logger="behavioral_analytics"):
        _, store = open_configured(settings)
    try:
        assert "breakdown dimensions 'page', 'referrer'" in caplog.text
        assert store.commit([ev(9, 90, user="u9", page_url="https://shop.example/e")]).created
        day = store.breakdown("page", "day")
        assert day[0].events == {"/a": 2, "/b": 1, "/c": 1, "/d": 1, "/e": 1}
        assert verify(store, store.periods, now=NOW, retention_s=None).ok  # type: ignore[attr-defined]
    finally:
        store.close()


def test_a_store_with_events_but_no_record_is_recorded_and_its_breakdowns_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written before configurations were recorded (and breakdowns): a reader reads it without
    breakdowns, saying why; a writer records the environment's and counts them."""
    settings, db = _written(tmp_path)
    with db:
        db.execute("DELETE FROM metadata WHERE name = 'config'")
        for table in ("breakdown_buckets", "breakdown_markers", "breakdown_admitted"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    with caplog.at_level(logging.INFO, logger="behavioral_analytics"):
        _, reader = open_configured(settings, record=False)
    try:
        assert "from before it recorded the configuration" in caplog.text
        assert reader.recorded_config() is None and reader.rules.breakdowns.dimensions == ()
    finally:
        reader.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="behavioral_analytics"):
        _, store = open_configured(settings)
    try:
        assert "breakdowns counted from its raw events" in caplog.text
        recorded = store.recorded_config()
        assert recorded is not None and "page" in recorded.breakdown_dimensions
        day = store.breakdown("page", "day")
        assert day[0].events == {"/a": 2, "/b": 1, "/c": 1, "/d": 1}
        assert verify(store, store.periods, now=NOW, retention_s=None).ok  # type: ignore[attr-defined]
    finally:
        store.close()


def _packed(path: Path) -> dict[tuple[str, str], str]:
    db = sqlite3.connect(path)
    try:
        return {(p, d): pairs for p, d, pairs in db.execute("SELECT * FROM breakdown_markers")}
    finally:
        db.close()


def test_markers_packed_as_a_list_of_pairs_are_read_moved_and_forgotten(tmp_path: Path) -> None:
    """Rows of the older packing (`[[dimension, value], …]`) count as they did; a commit that
    touches one rewrites it as `{dimension: [value, …]}`."""
    path = tmp_path / "store.db"
    store = _store(path)
    store.commit(
        [
            ev(1, 10, anon="a1", page_url="https://shop.example/a"),
            ev(2, 20, user="u2", page_url="https://shop.example/b"),
            ev(3, 30, user="u3", page_url="https://shop.example/a"),
        ]
    )
    assert set(_packed(path).values()) == {'{"page":["/a"]}', '{"page":["/b"]}'}
    db = sqlite3.connect(path)
    with db:
        for person, day, pairs in db.execute("SELECT * FROM breakdown_markers").fetchall():
            old = json.dumps([[d, v] for d, values in json.loads(pairs).items() for v in values])
            db.execute(
                "UPDATE breakdown_markers SET pairs = ? WHERE person = ? AND day = ?",
                (old, person, day),
            )
    db.close()
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    # u2 sees /a too (their row is read, then rewritten); a1 becomes u3 (their row moves).
    store.commit(
        [
            ev(4, 40, user="u2", page_url="https://shop.example/a"),
            ev(5, 50, user="u3", anon="a1", kind="identify", page_url="https://shop.example/a"),
        ]
    )
    packed = _packed(path)
    assert packed["u2", DAY_LABEL] == '{"page":["/a","/b"]}'
    assert ("a1", DAY_LABEL) not in packed
    assert store.breakdown("page", "day")[0].unique_users == {"/a": 2, "/b": 1}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.forget("u2")
    assert store.breakdown("page", "day")[0].unique_users == {"/a": 1}
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def _spy_session_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """The keys of the stored events `session_counts` decodes, and of those whose values it
    reads from the event (not from the commit's fold), as they happen."""
    decoded: list[str] = []
    valued: list[str] = []
    read_row = session_counts._event
    entry_values, exit_value = session_counts.entry_values, session_counts.exit_value

    def spy(person: str, key: str, *rest: Any) -> Event:
        decoded.append(key)
        return read_row(person, key, *rest)

    def entry_spy(first: Event, rules: BreakdownRules) -> dict[str, str]:
        valued.append(first.key)
        return entry_values(first, rules)

    def exit_spy(last: Event) -> str:
        valued.append(last.key)
        return exit_value(last)

    monkeypatch.setattr(session_counts, "_event", spy)
    monkeypatch.setattr(session_counts, "entry_values", entry_spy)
    monkeypatch.setattr(session_counts, "exit_value", exit_spy)
    return decoded, valued


def test_session_values_come_from_the_commits_own_events_without_decoding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's first and last events that the commit is adding are found among the events
    it holds, with the values its fold read; only a stored one is decoded from its row (here:
    the kept first event of a session that shares its start with a new one, read again for its
    key), and the counts stay exact."""
    decoded, valued = _spy_session_reads(monkeypatch)
    store = _store(tmp_path / "store.db")
    first = ev(1, 0, user="u1", session="s1", page_url="https://shop.example/a")
    store.commit([first, ev(2, 30, user="u1", session="s1", page_url="https://shop.example/b")])
    assert decoded == [] and valued == []
    store.commit(
        [
            ev(3, 60, user="u1", session="s1", page_url="https://shop.example/c"),
            ev(4, 0, user="u2", session="s2", page_url="https://shop.example/d"),  # same start
        ]
    )
    assert decoded == [first.key] and valued == []
    assert [p.sessions for p in store.breakdown("exit_page", "day")] == [{"/c": 1, OTHER: 1}]
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def test_an_event_a_link_moves_in_its_own_commit_counts_for_its_new_persons_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An anonymous event whose person an identify in the same batch changes is found among the
    commit's events under the person the link gives it (the store is not read for the commit's
    own rows, so it would be in no session if it stayed under the anonymous id), and the
    session counts stay exact."""
    decoded, valued = _spy_session_reads(monkeypatch)
    store = _store(tmp_path / "store.db")
    anonymous = ev(1, 0, anon="a1", session="s1", page_url="https://shop.example/a")
    store.commit(
        [
            anonymous,
            ev(2, 10, user="u1", anon="a1", kind="identify", session="s1"),
            ev(3, 20, user="u1", session="s1", page_url="https://shop.example/b"),
        ]
    )
    assert decoded == [] and valued == []
    assert [p.sessions for p in store.breakdown("entry_page", "day")] == [{"/a": 1}]
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def test_the_store_is_asked_for_events_at_an_instant_only_where_a_stored_one_can_sit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's new first or last event is looked for among stored events only within a
    session the commit replaces (each stored event lies in its session): a session that gains
    a later event asks nothing of the store; a new event at the instant of a stored one finds
    both, and the exit page follows the later key, as a recount does."""
    decoded, _ = _spy_session_reads(monkeypatch)
    store = _store(tmp_path / "store.db")
    asked: list[str] = []
    store._db.set_trace_callback(
        lambda sql: asked.append(sql) if "FROM wanted w JOIN events e" in sql else None
    )
    store.commit(
        [
            ev(1, 0, user="u1", session="s1", page_url="https://shop.example/a"),
            ev(2, 30, user="u1", session="s1", page_url="https://shop.example/b"),
        ]
    )
    store.commit([ev(3, 60, user="u1", session="s1", page_url="https://shop.example/c")])
    assert asked == [] and decoded == []
    at_the_end = ev(4, 60, user="u1", session="s1", page_url="https://shop.example/d")
    store.commit([at_the_end])
    assert len(asked) == 1 and len(decoded) == 1  # the stored event at 60
    exit_page = "/c" if decoded[0] > at_the_end.key else "/d"
    assert [p.sessions for p in store.breakdown("exit_page", "day")] == [{exit_page: 1}]
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()
