"""`bench/verify_memory.py` runs end to end on a small store: both recounts find it exact, and
the figures and the ratio are printed (a benchmark prints; nothing here is timed)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_both_recounts_are_exact_and_the_ratio_is_printed() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "verify_memory.py"), "--events", "2000",
         "--users", "500", "--rounds", "1"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout  # fmt: skip
    assert "store built: " in out
    rows = {
        m["variant"]: m["exact"]
        for m in re.finditer(
            r"^(?P<variant>as read|shared) +[\d.]+ +\d+ +[\d,]+ +(?P<exact>\w+)$", out, re.M
        )
    }
    assert rows == {"as read": "True", "shared": "True"}, out
    assert re.search(r"^shared against as read: \d+% of the memory, \d+% of the time$", out, re.M)
