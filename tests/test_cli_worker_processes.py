"""`worker --workers N` supervises its child processes as `up` does: a child that exits on its
own (here killed with SIGKILL) stops the others and the parent, with one line naming the child
and its code, and exit 1, so that a supervisor restarts it; it did not keep running with one
worker fewer (and, the first child dead, no longer moving the broker's dead letters) until
its next SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from behavioral_analytics.cli.pipeline import first_exit
from tests.conftest import cli, wait_until

WORKER = (sys.executable, "-m", "behavioral_analytics.cli", "worker")


def _children(pid: int) -> list[int]:
    """The child processes of `pid`, oldest first (`/proc/PID/task/*/children`)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in task.read_text().split())
        except OSError:  # the task ended meanwhile
            continue
    return sorted(found)


def _is_worker(pid: int) -> bool:
    try:
        return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1], ids=["first child", "second child"])
def test_a_killed_child_stops_worker_with_exit_1_naming_it(tmp_path: Path, victim: int) -> None:
    cli("init")
    err_path = tmp_path / "worker_err.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*WORKER, "--workers", "2"],
            env={**os.environ, "COLUMNS": "300"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    children: list[int] = []
    try:
        wait_until(
            lambda: len([c for c in _children(proc.pid) if _is_worker(c)]) == 2,
            30,
            "the two worker processes",
        )
        children = _children(proc.pid)
        os.kill(children[victim], signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
            for child in children:  # orphaned by the kill: leave nothing running
                if _is_worker(child):
                    os.kill(child, signal.SIGKILL)
    said = err_path.read_text()
    assert f"worker {victim + 1} of 2 (pid {children[victim]}" in said
    assert "exited with code -9" in said
    if victim == 0:
        assert "dead letters" in said  # the one that moves them: say so
    # The other child was stopped, not left running.
    other = children[1 - victim]
    wait_until(lambda: not Path(f"/proc/{other}").exists() or _zombie(other), 15, "the other")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_worker_until_idle_with_two_processes_still_exits_0(tmp_path: Path) -> None:
    # A child that finished (`--until-idle`, exit 0) is no failure: the others are waited for.
    cli("init")
    cli("publish", input=b'{"user_id": "u1", "event_type": "page_view"}\n')
    result = cli("worker", "--workers", "2", "--until-idle", check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert b"u1" in cli("query", "profile", "u1").stdout


class _Exited:
    """A child process that has exited with `code` (as `Popen.poll` reports it)."""

    def __init__(self, code: int | None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def test_first_exit_names_the_first_child_that_exits() -> None:
    stop = threading.Event()
    children = [_Exited(None), _Exited(-9)]
    assert first_exit(children, stop, interval_s=0.01) == 1  # type: ignore[arg-type]
    assert stop.is_set()


def test_first_exit_waits_for_every_finished_child_when_finishing_is_expected() -> None:
    stop = threading.Event()
    children = [_Exited(0), _Exited(None)]
    timer = threading.Timer(0.1, lambda: setattr(children[1], "returncode", 0))
    timer.start()
    try:
        found = first_exit(children, stop, finished_ok=True, interval_s=0.01)  # type: ignore[arg-type]
    finally:
        timer.cancel()
    assert found is None and stop.is_set()


def test_first_exit_returns_none_once_stopped() -> None:
    stop = threading.Event()
    stop.set()
    assert first_exit([_Exited(None)], stop, interval_s=0.01) is None  # type: ignore[list-item]
