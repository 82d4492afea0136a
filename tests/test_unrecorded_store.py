"""A store written before configurations were recorded, from an operator's upgrade trial:
`doctor` (a check) records nothing, and `config apply`, which the read commands point to,
records the environment's values and counts the breakdowns, as a worker's start does (it said
"nothing to change" and left the store as it was)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import cli, processed

WIDE = {"COLUMNS": "300"}


def _unrecorded_store() -> Path:
    """A store with events, its recorded configuration and breakdowns removed, as a release
    before they were recorded left it."""
    now = time.time()
    lines = b"".join(
        json.dumps(
            {
                "user_id": f"u{i}",
                "event_type": "page_view",
                "timestamp": now - 60 + i,
                "properties": {"page_url": f"/p{i % 2}"},
            }
        ).encode()
        + b"\n"
        for i in range(4)
    )
    processed(lines)
    path = Path(os.environ["BA_DATA_DIR"]) / "store.db"
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM metadata WHERE name = 'config'")
        for table in ("breakdown_buckets", "breakdown_markers", "breakdown_admitted"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    return path


def _recorded(path: Path) -> bool:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT 1 FROM metadata WHERE name = 'config'").fetchone() is not None
    finally:
        db.close()


@pytest.mark.slow
def test_doctor_records_nothing_in_a_store_without_a_record() -> None:
    path = _unrecorded_store()
    doctor = cli("doctor", env={**WIDE, "BA_TIMEZONE": "Europe/Paris"}, check=False)
    assert doctor.returncode == 0, doctor.stderr.decode()
    assert not _recorded(path)  # this shell's time zone was not taken as the store's


@pytest.mark.slow
def test_config_apply_records_the_environments_values_and_counts_the_breakdowns() -> None:
    path = _unrecorded_store()
    refused = cli("query", "breakdown", "page", "--json", env=WIDE, check=False)
    assert refused.returncode == 2 and "config apply" in refused.stderr.decode()
    applied = json.loads(cli("config", "apply", "--yes", "--json", env=WIDE).stdout)
    assert applied["applied"] is True and "page" in applied["breakdowns_recounted"]
    assert _recorded(path)
    pages = json.loads(cli("query", "breakdown", "page", "--json", env=WIDE).stdout)
    counted = {row["value"]: row["events"] for row in pages["values"]}
    assert counted == {"/p0": 2, "/p1": 2}
    verify = json.loads(cli("verify", "--json", env=WIDE).stdout)
    assert verify["ok"] is True
    again = json.loads(cli("config", "apply", "--yes", "--json", env=WIDE).stdout)
    assert again["applied"] is False  # recorded now: nothing to change
