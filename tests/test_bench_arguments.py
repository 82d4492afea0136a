"""The benchmarks refuse bad arguments with a usage error naming the option (exit 2), before
any work and without a traceback: counts below 1 (below 0 where 0 means none), a share above 1,
a `--baseline` that is not a checkout, a flush interval that is not a number."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CASES = [
    ("pipeline.py", ["--events", "0"], "--events"),
    ("pipeline.py", ["--users", "-5"], "--users"),
    ("pipeline.py", ["--grow", "--grow-to", "0"], "--grow-to"),
    ("pipeline.py", ["--input", "backfill", "--days", "0"], "--days"),
    ("firestore_writes.py", ["--events", "0"], "--events"),
    ("firestore_writes.py", ["--intervals", "1,x"], "--intervals"),
    ("firestore_writes.py", ["--shards", "-1"], "--shards"),
    ("firestore_writes.py", ["--identify", "1.5"], "--identify"),
    ("firestore_writes.py", ["--workers", "0"], "--workers"),
    ("collector.py", ["--events", "-5"], "--events"),
    ("verify_memory.py", ["--rounds", "0"], "--rounds"),
]


def refused(script: str, arguments: list[str]) -> str:
    """`script`'s stderr, after asserting it exited with a usage error and no traceback."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: ")
    assert done.stdout == ""
    return done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("script", "arguments", "option"), CASES)
def test_a_bad_number_is_a_usage_error_naming_the_option(
    script: str, arguments: list[str], option: str
) -> None:
    assert f"{script}: error: argument {option}: " in refused(script, arguments)


def test_a_baseline_without_the_package_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    error = refused("pipeline.py", ["--baseline", str(nowhere)]).splitlines()[-1]
    assert error.startswith("pipeline.py: error: argument --baseline: ")
    assert str(nowhere / "src" / "behavioral_analytics") in error


@pytest.mark.parametrize(
    "script", ["pipeline.py", "firestore_writes.py", "collector.py", "verify_memory.py"]
)
def test_help_shows_every_option_with_its_default(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # a `%` in a help text breaks argparse's formatting
    assert "(default: " in done.stdout and "--events" in done.stdout
