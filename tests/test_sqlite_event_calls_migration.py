"""A SQLite store file written before raw events kept `call` and `id_kind` is migrated on open:
the columns are added (NULL for the events already stored), and the group calls that made the
stored memberships are marked as such, so `verify` does not call those memberships drift and
`verify --repair` keeps them."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import DAY_START, NOW, ev
from tests.contract.test_named_calls import group


def test_a_file_from_before_the_columns_is_migrated_and_its_memberships_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([group(1, 0, "alice", "acme"), group(2, 60, "alice", "acme"), ev(3, 0, user="bo")])
    store.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE events DROP COLUMN parsers_id")  # a later column than theirs
        db.execute("DROP TABLE derived_parsers")
        db.execute("ALTER TABLE events DROP COLUMN call")
        db.execute("ALTER TABLE events DROP COLUMN id_kind")
    db.close()

    with caplog.at_level(logging.WARNING, logger="behavioral_analytics"):
        store = SQLiteStore(path, clock=FakeClock(NOW))
        store.close()
        store = SQLiteStore(path, clock=FakeClock(NOW))
    # Said once, before the one-way change, and not again once the file is migrated.
    (said,) = [r.getMessage() for r in caplog.records if "layout" in r.getMessage()]
    assert "raw events' call" in said and "an earlier release cannot open" in said
    calls = {e.event_id: (e.call, e.id_kind) for e in store.iter_raw_events()}
    # The joining call is known from its membership; the later one cannot be told apart.
    assert calls == {"c1": ("group", None), "c2": (None, None), "e3": (None, None)}
    report = verify(store, store.periods, now=NOW, retention_s=None, repair=True)
    assert report.ok, report.drift
    assert store.snapshot().group_members == {("acme", "alice"): DAY_START}
    store.commit([group(4, 120, "bob", "acme")])  # new events keep theirs
    assert {e.event_id: e.call for e in store.iter_raw_events()}["c4"] == "group"
    store.close()
