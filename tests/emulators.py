"""Google's Pub/Sub and Firestore emulators, started once per test session on free loopback
ports, for every test that asks for them (tests/gcp, the Firestore legs of tests/contract and
tests/reference, tests/chaos). A pytest plugin (`tests/conftest.py` loads it), so that the
whole session shares one pair. Where gcloud, Java or an emulator is missing, every test that
needs them skips with the reason."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = "demo-behavioral-analytics"
_START_DEADLINE_S = 90.0


@dataclass(frozen=True)
class Emulators:
    project: str
    pubsub_host: str
    firestore_host: str

    def env(self) -> dict[str, str]:
        return {
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def wipe_firestore(self, database: str) -> None:
        url = (
            f"http://{self.firestore_host}/emulator/v1/projects/{self.project}"
            f"/databases/{database}/documents"
        )
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).read()


def _sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("GCP EMULATORS NOT RUN: Google Cloud SDK emulator not found: no gcloud on PATH")
    if shutil.which("java") is None:
        pytest.skip("GCP EMULATORS NOT RUN: emulator not found: no java on PATH (needs Java 17)")
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"GCP EMULATORS NOT RUN: emulator not found: gcloud info failed: {exc}")
    return Path(out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # The emulators run Java under a shell script: end the whole process group we made.
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    sdk = _sdk_root()
    pubsub_bin = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    firestore_bin = sdk / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    for binary in (pubsub_bin, firestore_bin):
        if not binary.exists():
            pytest.skip(
                f"GCP EMULATORS NOT RUN: emulator not found: {binary.name} is missing under the "
                "SDK (install the pubsub-emulator and cloud-firestore-emulator components)"
            )
    logs = tmp_path_factory.mktemp("emulators")
    pubsub_host = f"127.0.0.1:{_free_port()}"
    firestore_host = f"127.0.0.1:{_free_port()}"
    processes = [
        _start(
            [str(pubsub_bin), "--host=127.0.0.1", f"--port={pubsub_host.split(':')[1]}"],
            logs / "pubsub.log",
        ),
        _start(
            [
                str(firestore_bin),
                "start",
                "--host=127.0.0.1",
                f"--port={firestore_host.split(':')[1]}",
            ],
            logs / "firestore.log",
        ),
    ]
    try:
        deadline = time.monotonic() + _START_DEADLINE_S
        for host, process, name in zip(
            (pubsub_host, firestore_host), processes, ("pubsub", "firestore"), strict=True
        ):
            while not _ready(host):
                if process.poll() is not None or time.monotonic() > deadline:
                    text = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"the {name} emulator did not start:\n{text}")
                time.sleep(0.25)
        emu = Emulators(PROJECT, pubsub_host, firestore_host)
        saved = {k: os.environ.get(k) for k in emu.env()}
        os.environ.update(emu.env())
        yield emu
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        for process in processes:
            _stop(process)


@pytest.fixture
def database(emulators: Emulators) -> Iterator[str]:
    """A Firestore database of its own for the test, wiped afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    emulators.wipe_firestore(name)
