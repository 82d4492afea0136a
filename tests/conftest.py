from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.settings import Settings, load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore

# A shared, noisy 2-core machine: no timing-based health checks or deadlines.
hypothesis_settings.register_profile(
    "project", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
hypothesis_settings.load_profile("project")

REPO = Path(__file__).resolve().parent.parent

# Google's emulators, one pair for the whole session (tests/emulators.py); a run in which a
# selected test reported no outcome fails (tests/completeness.py).
pytest_plugins = ["tests.emulators", "tests.completeness"]


class FakeClock:
    def __init__(self, start: float = 1_764_320_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BA_") or name in (
            "PUBSUB_TOPIC",
            "PUBSUB_SUBSCRIPTION",
            "FIRESTORE_DATABASE",
            "GOOGLE_CLOUD_PROJECT",
            "PROJECT_ID",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BA_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "data" / "broker.db", min_backoff_s=0.0, max_backoff_s=0.0)
    yield b
    b.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "data" / "store.db")
    yield s
    s.close()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll with a deadline: never sleep on luck."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


def cli(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [sys.executable, "-m", "behavioral_analytics.cli", *args],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}\n{result.stdout.decode()}\n{result.stderr.decode()}"
        )
    return result


def processed(lines: bytes, env: dict[str, str] | None = None) -> None:
    """`init`, `publish` of the NDJSON `lines`, then a worker until the broker is idle."""
    cli("init", env=env)
    cli("publish", env=env, input=lines)
    cli("worker", "--until-idle", env=env)
