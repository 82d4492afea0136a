"""The suite's own guard (tests/completeness.py): a run in which a selected test reported no
outcome exits 1 and names it, serially and across test processes, and so does one whose tests
share a node id across test processes; a complete run, one narrowed by `-k`, and a collection
alone are left as they are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# A plugin that runs no protocol for `test_lost`: no setup, call or teardown report, as when
# the process that was given the test ends before it.
_LOSING = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if item.name == "test_lost":
        return True
"""


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist", "-p", "tests.completeness",
         "-p", "no:cacheprovider", "-q", f"--rootdir={folder}", *args, str(folder)],
        # Only the two plugins: the installed ones (hypothesis, schemathesis …) cost seconds.
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )  # fmt: skip


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(_LOSING)
    (tmp_path / "test_some.py").write_text("def test_kept(): pass\n\ndef test_lost(): pass\n")
    return tmp_path


@pytest.mark.parametrize("processes", ["0", "2"], ids=["serial", "two processes"])
def test_a_test_without_an_outcome_fails_the_run_by_name(suite: Path, processes: str) -> None:
    result = _run(suite, "-n", processes)
    assert result.returncode == 1, result.stdout
    assert "1 of 2 selected tests never reported an outcome" in result.stdout
    assert "  test_some.py::test_lost\n" in result.stdout
    assert "1 passed" in result.stdout


# Two tests under one node id, as schemathesis' `schema.parametrize()` makes them; handed out
# by file (`--dist loadfile`), xdist runs one of them.
_SHARED_ID = """
import pytest

def pytest_pycollect_makeitem(collector, name, obj):
    if name == "test_shared":
        return [pytest.Function.from_parent(collector, name=name, callobj=obj) for _ in "ab"]
"""


def test_tests_sharing_a_node_id_across_processes_fail_the_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(_SHARED_ID)
    (tmp_path / "test_shared.py").write_text("def test_shared(): pass\n")
    serial = _run(tmp_path, "-n", "0")
    assert serial.returncode == 0, serial.stdout
    assert "2 passed" in serial.stdout
    shared = _run(tmp_path, "-n", "2", "--dist", "loadfile")  # as `./dev test` runs
    assert shared.returncode == 1, shared.stdout
    assert "1 of 2 selected tests never reported an outcome" in shared.stdout
    assert "  test_shared.py::test_shared\n" in shared.stdout


@pytest.mark.parametrize(
    "args", [("-k", "kept"), ("--collect-only",)], ids=["narrowed by -k", "collect only"]
)
def test_a_run_that_selects_only_what_reports_passes(suite: Path, args: tuple[str, ...]) -> None:
    result = _run(suite, "-n", "0", *args)
    assert result.returncode == 0, result.stdout
    assert "never reported" not in result.stdout
