"""`up` stops loudly and cleanly: a worker whose store's configuration changed under it (here
by `config apply`) exits, and `up` stops with the worker's reason; a SIGTERM sent to `up`
alone stops it as Ctrl-C does, its workers and API with it; and a child that a terminal's
Ctrl-C stopped before `up` saw its own interrupt is no failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from behavioral_analytics.cli.up import _watch
from tests.conftest import cli, wait_until

UP = (sys.executable, "-m", "behavioral_analytics.cli", "up")


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, dict[str, str]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"}
    out_path = tmp_path / "up_out.txt"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [*UP, "--workers", "1", "--rate", "0", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until(lambda: "dashboard http://" in out_path.read_text(), 60, "up to start")
    return proc, out_path, env


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.slow
def test_up_stops_with_the_workers_reason_when_config_apply_changes_the_store(
    tmp_path: Path,
) -> None:
    proc, out_path, env = _start_up(tmp_path)
    try:
        event = b'{"user_id": "u1", "event_type": "page_view"}\n'
        cli("publish", env=env, input=event)
        wait_until(lambda: b"u1" in cli("query", "profile", "u1", env=env, check=False).stdout)
        cli("config", "apply", "--yes", env={**env, "BA_TIMEZONE": "Europe/Paris"})
        cli("publish", env=env, input=event.replace(b"u1", b"u2"))
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    said = out_path.read_text()
    assert "a worker exited with code 1 (the configuration recorded with the data changed" in said
    assert "(timezone), by `behavioral-analytics config apply`" in said
    # Its message was given back, not dead-lettered: a restarted worker counts it.
    cli("worker", "--until-idle", env=env)
    assert b"u2" in cli("query", "profile", "u2", env=env).stdout
    assert cli("dlq", "list", "--json", env=env).stdout.count(b'"reason"') == 0


def test_a_sigterm_to_up_alone_stops_its_workers_and_api(tmp_path: Path) -> None:
    proc, out_path, _ = _start_up(tmp_path)
    children = _children(proc.pid)
    assert len(children) == 2  # one worker and the API
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "stopped; logs in" in out_path.read_text()
    assert "\nstopping: draining workers" in out_path.read_text()  # on a line of its own
    wait_until(lambda: all(_gone(pid) for pid in children), 15, "up's children to stop")


class _Exited:
    """A child process that has exited with `code` (as `Popen.poll` reports it)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def poll(self) -> int:
        return self.code


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "said"),
    [(0, []), (-signal.SIGINT, []), (-signal.SIGTERM, []), (1, ["a worker exited with code 1"])],
)
def test_a_child_stopped_by_a_signal_stops_up_without_an_error(code: int, said: list[str]) -> None:
    # Ctrl-C reaches the children too: one may exit (0) before `up` sees its own interrupt.
    stop, died = threading.Event(), []
    _watch([_Exited(code)], None, stop, died)  # type: ignore[list-item]
    assert stop.is_set() and died == said
