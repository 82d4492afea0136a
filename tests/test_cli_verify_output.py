"""`verify`'s drift lines name only what differs, sorted, whatever order the stored and the
expected values keep their entries in (a user could not spot `purchase 44` against `41` among
two dicts printed in different orders)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from behavioral_analytics.cli.verify import differences


def test_a_bucket_names_the_type_that_differs_whatever_the_order() -> None:
    stored = (2931, {"add_to_cart": 81, "purchase": 44, "signup": 18})
    expected = (2931, {"signup": 18, "purchase": 41, "add_to_cart": 81})
    assert differences("bucket", stored, expected) == (
        "purchase 44 → 41 (stored → expected; 3 others agree)"
    )


def test_a_profile_names_its_figures_and_an_absent_one() -> None:
    stored = (53, {"page_view": 50, "purchase": 3}, 10.0, 20.0)
    expected = (48, {"page_view": 45, "purchase": 3}, 10.0, 20.0)
    assert differences("profile", stored, expected) == (
        "page_view 50 → 45, total 53 → 48 (stored → expected; 3 others agree)"
    )
    assert differences("profile", None, (1, {}, 10.0, 10.0)) == (
        "first seen absent → 1970-01-01T00:00:10+00:00, last activity absent → "
        "1970-01-01T00:00:10+00:00, total absent → 1 (stored → expected)"
    )


def test_one_agreeing_entry_is_one_other() -> None:
    assert differences("bucket", (3, {"a": 1, "b": 2}), (4, {"a": 1, "b": 3})) == (
        "b 2 → 3, total 3 → 4 (stored → expected; 1 other agrees)"
    )


def test_numbers_lists_and_markers_read_plainly() -> None:
    assert differences("unique_users", 5, 3) == "stored 5 → expected 3"
    assert differences("breakdown_admitted", ["a"], ["a", "b"]) == (
        "stored ['a'] → expected ['a', 'b']"
    )
    assert differences("unique_markers", {"extra": 2}, {"missing": 0}) == (
        "2 extra, 0 missing markers"
    )


def test_a_persons_sessions_read_as_times_and_events() -> None:
    lost = ["g:1764316800.0", 1764316800.0, 1764317100.0, 3]
    assert differences("person_sessions", [], [lost]) == (
        "kept, not recounted: none; recounted, not kept: "
        "2025-11-28T08:00:00+00:00 to 2025-11-28T08:05:00+00:00 (3 events)"
    )


def test_copies_of_raw_events_read_as_events_with_what_each_side_holds() -> None:
    key = "a" * 32
    kept = [key, 1764316800.0, True, {}]
    recounted = [key, 1764316800.0, True, {"purchase": [0, 2]}]
    assert differences("recent_events", [kept], [recounted]) == (
        f"kept, not as the raw events say: event {key} at 2025-11-28T08:00:00+00:00 (no client "
        f"session id); as the raw events say, not kept: event {key} at "
        "2025-11-28T08:00:00+00:00 (no client session id; purchase steps 0, 2)"
    )
    lost = [
        [f"{n:032x}", 1764316800.0 + 60 * n, "scroll", "s1" * (n % 2) or None] for n in range(5)
    ]
    assert differences("anonymous_events", [], lost) == (
        "kept, not as the raw events say: none; as the raw events say, not kept: event "
        f"{0:032x} at 2025-11-28T08:00:00+00:00 (scroll), event {1:032x} at "
        f"2025-11-28T08:01:00+00:00 (scroll; client session s1), event {2:032x} at "
        "2025-11-28T08:02:00+00:00 (scroll) and 2 more"
    )


@pytest.mark.slow
def test_the_command_prints_the_difference_and_what_it_could_not_check(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BA_DATA_DIR": str(tmp_path),
        "BA_METRICS_EXPORTER": "none",
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "behavioral_analytics.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for args in (
        ("init",),
        ("generate", "--events", "500", "--via", "broker", "--seed", "2"),
        ("worker", "--until-idle"),
    ):
        assert cli(*args).returncode == 0
    with sqlite3.connect(tmp_path / "store.db") as db:
        (day,) = db.execute(
            "SELECT period FROM bucket_types WHERE granularity = 'day' AND event_type = "
            "'page_view' ORDER BY count DESC LIMIT 1"
        ).fetchone()
        db.execute(
            "UPDATE bucket_types SET count = count + 3 WHERE granularity = 'day' AND "
            "period = ? AND event_type = 'page_view'",
            (day,),
        )
        db.execute(  # a client's type with rich markup in it: printed as it is
            "INSERT INTO bucket_types VALUES ('day', ?, '[/z][bold]x', 2)", (day,)
        )
    done = cli("verify")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("checked: raw events ")
    (line,) = [line for line in lines if line.startswith(f"drift bucket day:{day}")]
    assert " → " in line and "page_view " in line and "(stored → expected; " in line
    assert "{" not in line  # no dict printed whole
    assert "[/z][bold]x 2 → absent" in line, line
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.executemany(  # minutes nobody sent an event in: each is a drift item
            "INSERT OR IGNORE INTO buckets VALUES ('minute', ?, 1, 0, 0)",
            [(f"{yesterday}-{n // 60:02d}-{n % 60:02d}",) for n in range(1100)],
        )
    many = cli("verify")
    assert f"more (--json lists the first {1000:,})" in many.stdout, many.stdout[-300:]
