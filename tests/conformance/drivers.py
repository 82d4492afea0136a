"""Running a scripted session through each library, and collecting what it left behind.

The Python libraries and analytics-node run as child processes (python_client.py,
node/node_client.mjs), so that a library that never finishes ends with a bounded wait, not a
hung test. analytics.js runs in a page of headless Chromium (browser_client.js, bundled by
esbuild from the npm package). Each driver returns the library's report per call; `collect`
then waits for the worker to drain and reads the store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conformance.checks import Outcome, Profile
from tests.conformance.fault_proxy import Exchange, FaultProxy
from tests.conformance.stack import WRITE_KEY, Stack, wait_for

__all__ = [
    "NODE_DIR",
    "bundle_browser_client",
    "collect",
    "node_missing",
    "run_node",
    "run_python",
    "settled",
]

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
ARTIFACTS = HERE.parents[1] / "test-artifacts" / "conformance"
CLIENT_TIMEOUT_S = 15


def node_missing() -> str | None:
    """Why the Node and browser sessions cannot run here (a loud skip reason), or None."""
    if shutil.which("node") is None:
        return "SKIPPED LOUDLY: node is not installed (apt-get install -y nodejs npm)"
    for needed in ("@segment/analytics-node", "@segment/analytics-next", ".bin/esbuild"):
        if not (NODE_DIR / "node_modules" / needed).exists():
            return (
                f"SKIPPED LOUDLY: {needed} is not installed "
                "(npm ci --prefix tests/conformance/node, which ./dev test runs)"
            )
    return None


def _run(command: list[str], config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    path = workdir / "client-config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    finished = subprocess.run(
        [*command, str(path)],
        capture_output=True,
        timeout=CLIENT_TIMEOUT_S * 3,
    )
    stderr = finished.stderr.decode(errors="replace")
    if finished.returncode != 0 or not finished.stdout:
        raise AssertionError(f"{command} exited {finished.returncode}\n{stderr[-3000:]}")
    report: dict[str, Any] = json.loads(finished.stdout)
    report["stderr"] = stderr[-3000:]
    return report


def run_python(
    library: str, proxy: FaultProxy, calls: list[dict[str, Any]], workdir: Path, *, sync: bool
) -> dict[str, Any]:
    """segment-analytics-python (`library="segment"`) or rudder-sdk-python (`"rudder"`)."""
    config = {
        "library": library,
        "host": proxy.url,
        "write_key": WRITE_KEY,
        "sync": sync,
        "upload_size": 3,
        "flush_timeout_s": CLIENT_TIMEOUT_S,
        "calls": calls,
    }
    return _run([sys.executable, str(HERE / "python_client.py")], config, workdir)


def run_node(proxy: FaultProxy, calls: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """@segment/analytics-node, batching three events per request."""
    node = shutil.which("node")
    assert node is not None
    config = {
        "host": proxy.url,
        "writeKey": WRITE_KEY,
        "flushAt": 3,
        "flushTimeoutMs": CLIENT_TIMEOUT_S * 1000,
        "calls": calls,
    }
    return _run([node, str(NODE_DIR / "node_client.mjs")], config, workdir)


def bundle_browser_client(out_file: Path) -> None:
    """browser_client.js and analytics-next as one script for the page (esbuild, from npm)."""
    subprocess.run(
        [
            str(NODE_DIR / "node_modules" / ".bin" / "esbuild"),
            "browser_client.js",
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=es2020",
            '--define:process.env.NODE_ENV="production"',
            f"--outfile={out_file}",
            "--log-level=warning",
        ],
        cwd=NODE_DIR,
        check=True,
        capture_output=True,
        timeout=120,
    )


def settled(proxy: FaultProxy, message_ids: list[str], profile: Profile, timeout_s: float) -> bool:
    """Wait until the library is done with every message: a request carrying it got a status
    the library counts as delivered or gives up on. False when the time ran out (the checks
    then say what is missing)."""

    def done() -> bool:
        exchanges = proxy.exchanges
        return all(_final(exchanges, message_id, profile) for message_id in message_ids)

    try:
        wait_for(done, timeout_s, "the library to finish")
    except AssertionError:
        return False
    return True


def _final(exchanges: list[Exchange], message_id: str, profile: Profile) -> bool:
    return any(
        e.status is not None and (profile.success(e.status) or profile.final(e.status))
        for e in exchanges
        if message_id in e.message_ids()
    )


def collect(
    name: str,
    stack: Stack,
    proxy: FaultProxy,
    profile: Profile,
    calls: list[dict[str, Any]],
    report: dict[str, Any],
    *,
    identified_user: str | None = None,
) -> Outcome:
    """The session's outcome once the worker has committed everything the collector took; its
    transcript (every request, answer and stored event) is left in test-artifacts/conformance/
    under `name`."""
    stack.drained()
    notes = []
    if report.get("flushed") is False:
        notes.append("the library had not finished: some message never got a final answer")
    for key in ("failed_batches", "errors", "failures", "page errors"):
        if report.get(key):
            notes.append(f"the library reported {key}: {report[key]}")
    outcome = Outcome(
        name=name,
        profile=profile,
        calls=calls,
        results=report["results"],
        exchanges=proxy.exchanges,
        faults=list(proxy.faults),
        events=stack.stored_events(),
        dead_letters=stack.dead_letters(),
        notes=notes,
        identified_user=identified_user,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stderr = report.get("stderr") or ""
    (ARTIFACTS / f"{name}.log").write_text(
        outcome.transcript() + (f"--- the library's stderr\n{stderr}" if stderr else ""),
        encoding="utf-8",
    )
    return outcome
