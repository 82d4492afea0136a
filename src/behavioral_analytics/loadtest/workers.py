"""The processes a load test runs (`behavioral-analytics worker`) and what it reads back from
the store."""

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

from behavioral_analytics.store import Store, StoredEvent

READY_MARK = '"worker progress"'  # what a worker logs on its first pass through its loop


# -- workers --------------------------------------------------------------------------------


class WorkerProcesses:
    """`behavioral-analytics worker --workers N` in a child process, its output in a log file."""

    def __init__(self, count: int, env: dict[str, str] | None = None) -> None:
        self.count = count
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix="ba-loadtest-workers-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)

    def start(self) -> None:
        command = [
            sys.executable, "-m", "behavioral_analytics.cli", "worker", "--workers", str(self.count)
        ]  # fmt: skip
        env = {**(self.env if self.env is not None else os.environ), "BA_LOG_LEVEL": "INFO"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 20.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    def ready(self) -> bool:
        """Every worker process has entered its loop: each logs "worker progress" on its first
        pass (at INFO, which `start` asks for)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return False
        return text.count(READY_MARK) >= self.count

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def discard_log(self) -> None:
        self.log_path.unlink(missing_ok=True)


# -- reading the store ----------------------------------------------------------------------


class StoreProbe:
    """What the store holds of the expected events."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def total_events(self) -> int:
        # Bots' events are counted apart from the human totals.
        return sum(
            point.total_events + (point.bot_events or 0) for point in self.store.series("day")
        )

    def dead_letters(self) -> int:
        return self.store.count_dead_letters()

    def own_total(self, event_type: str) -> int:
        """Events of `event_type` in the daily aggregates (bots' are counted apart)."""
        return sum(point.events_by_type.get(event_type, 0) for point in self.store.series("day"))

    def own_dead_letters(self, bodies: Collection[bytes], since: float) -> int:
        """Dead letters recorded at or after `since` (epoch seconds) whose bytes are among
        `bodies` (a run's own rejected messages), read newest first."""
        if not bodies:
            return 0
        count, cursor = 0, None
        while True:
            page = self.store.dead_letters(500, cursor)
            for letter in page.items:
                if letter.recorded_at < since:
                    return count
                count += letter.data in bodies
            cursor = page.next_cursor
            if cursor is None:
                return count

    def find(self, keys: dict[str, str]) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            for item in self.store.get_events(wanted[start : start + 500]):
                found[item.event.key] = item
        return found
