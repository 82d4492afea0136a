"""The collector and a worker as real processes on loopback, and what they stored.

Both run from the command line (`python -m behavioral_analytics.cli api|worker`) on the
embedded default, in a data folder of their own, with a write key, a read key and the browser
page's origin allowed by CORS. The stored events, dead letters and broker backlog are read
straight from that folder through the project's own adapters: no read cache between the commit
and the check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.events import Event
from behavioral_analytics.stores.sqlite import SQLiteStore

__all__ = ["WRITE_KEY", "Stack", "free_port", "wait_for"]

WRITE_KEY = "wk-conformance"
READ_KEY = "rk-conformance"
# Variables of the caller's environment that would point the processes elsewhere.
_FOREIGN = ("PUBSUB_", "FIRESTORE_", "GOOGLE_CLOUD_PROJECT", "PROJECT_ID", "PORT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout_s: float, what: Callable[[], str] | str) -> Any:
    """Poll `condition` every 50 ms until it is truthy (returned) or `timeout_s` passes
    (AssertionError naming `what`, a string or a function giving one at that moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {detail}")
        time.sleep(0.05)


@dataclass
class Stack:
    """`start()` the collector and one worker; `stop()` ends both (SIGTERM, then SIGKILL)."""

    data_dir: Path
    cors_origins: list[str] = field(default_factory=list)
    port: int = 0
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        base = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("BA_") and not name.startswith(_FOREIGN)
        }
        return {
            **base,
            "BA_BACKEND": "local",
            "BA_DATA_DIR": str(self.data_dir),
            "BA_WRITE_KEYS": WRITE_KEY,
            "BA_READ_KEYS": READ_KEY,
            "BA_CORS_ORIGINS": ",".join(self.cors_origins),
            "BA_API_HOST": "127.0.0.1",
            "BA_FLUSH_INTERVAL": "0.2",
            "BA_TRUNCATE_IPS": "false",
            "BA_METRICS_EXPORTER": "none",
            "BA_LOG_LEVEL": "WARNING",
        }

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = self.env()
        cli = [sys.executable, "-m", "behavioral_analytics.cli"]
        # `init` first, so that the worker and the collector never race to create the files.
        subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=120)
        for name, args in (("api", ["api", "--port", str(self.port)]), ("worker", ["worker"])):
            log = (self.data_dir / f"{name}.log").open("wb")
            self._logs.append(log)
            self._processes.append(
                subprocess.Popen([*cli, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        try:
            wait_for(self._ready, 60, lambda: f"the collector to be ready\n{self.logs()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited {process.returncode}\n{self.logs()}")
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for log in self._logs:
            log.close()

    def logs(self, tail_bytes: int = 4000) -> str:
        parts = []
        for path in sorted(self.data_dir.glob("*.log")):
            parts.append(
                f"--- {path.name}\n{path.read_bytes()[-tail_bytes:].decode(errors='replace')}"
            )
        return "\n".join(parts)

    def backlog(self) -> int:
        with contextlib.closing(LocalBroker(self.data_dir / "broker.db")) as broker:
            return broker.backlog()

    def stored_events(self) -> list[Event]:
        with contextlib.closing(SQLiteStore(self.data_dir / "store.db")) as store:
            return list(store.iter_raw_events())

    def dead_letters(self) -> list[Any]:
        letters: list[Any] = []
        with contextlib.closing(SQLiteStore(self.data_dir / "store.db")) as store:
            cursor = None
            while True:
                page = store.dead_letters(limit=500, cursor=cursor)
                letters.extend(page.items)
                cursor = page.next_cursor
                if not cursor:
                    return letters

    def drained(self, timeout_s: float = 30) -> None:
        """Wait until the worker has committed everything published so far."""
        wait_for(lambda: self.backlog() == 0, timeout_s, lambda: f"the backlog\n{self.logs()}")
