"""`verify --repair` lists the periods reported final whose session figures it changed (as
`forget` does: docs/behavior.md "Provisional, then final"), and only those."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock, cli
from tests.faults import behavior_event

NOW = 1_764_320_400.0  # 2025-11-28 09:00:00 UTC
OLD = NOW - 3 * 86400.0  # 2025-11-25 09:00: final (see `final_after_s` below)


def test_repair_reports_the_final_periods_it_changed(tmp_path: Path) -> None:
    rules = BehaviorRules(lateness_s=3600.0, identity_window_s=3600.0)
    assert rules.session_final_after_s() < 2 * 86400.0  # OLD's hour and day are final at NOW
    store = SQLiteStore(tmp_path / "store.db", rules=rules, clock=FakeClock(NOW))
    store.init()
    events = [
        behavior_event(1, OLD, received_at=NOW, user="u1"),
        behavior_event(2, OLD + 60, received_at=NOW, user="u1"),
        behavior_event(3, NOW - 600, received_at=NOW, user="u2"),
    ]
    assert store.commit(events).created == 3
    old_hour = store.periods.label("hour", OLD)
    assert [p.final for p in store.session_series("hour", old_hour, old_hour)] == [True]
    store.rebuild(iter(events[1:]))  # u1's first event left out: the old session drifts

    report = verify(store, store.periods, now=NOW, retention_s=None, repair=True)

    assert report.repaired and {d.what for d in report.drift} >= {"sessions"}
    assert report.final_periods == ["day:2025-11-25", "hour:2025-11-25-09"]
    assert report.to_dict()["final_periods_changed"] == report.final_periods
    again = verify(store, store.periods, now=NOW, retention_s=None, repair=True)
    assert again.ok and again.final_periods == []

    store.rebuild(iter(events[:2]))  # only the recent, provisional session drifts
    report = verify(store, store.periods, now=NOW, retention_s=None, repair=True)
    assert report.repaired and report.final_periods == []
    store.close()


@pytest.mark.slow
def test_verify_repair_prints_and_returns_the_final_periods(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "BA_MAX_EVENT_AGE_DAYS": "2"}
    cli("publish", "-", env=env, input=b'{"user_id": "u", "event_type": "page_view"}\n')
    cli("worker", "--until-idle", env=env)
    db = sqlite3.connect(tmp_path / "data" / "store.db")
    with db:  # the event as if it had happened 10 days ago: its sessions drift, in final periods
        db.execute("UPDATE events SET timestamp = timestamp - 10 * 86400")
    (timestamp,) = db.execute("SELECT timestamp FROM events").fetchone()
    db.close()
    moment = datetime.fromtimestamp(timestamp, UTC)
    day, hour = moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m-%d-%H")

    report = json.loads(cli("verify", "--repair", "--json", env=env).stdout)

    assert report["repaired"] and report["final_periods_changed"] == [f"day:{day}", f"hour:{hour}"]
    assert cli("verify", "--repair", env=env).stdout.decode().count("final periods changed") == 0
    with sqlite3.connect(tmp_path / "data" / "store.db") as db:
        db.execute("UPDATE session_buckets SET sessions = 5")
    printed = cli("verify", "--repair", env={**env, "COLUMNS": "300"}).stdout.decode()
    assert f"final periods changed (2): day:{day}, hour:{hour}" in printed
