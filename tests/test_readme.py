"""The README, run as a new user would: its walkthrough block, taken from README.md when the
test runs, executed verbatim on a fresh folder with each commented result checked; and the
recipe's three commands in the README's order, on a fresh folder, without and with `up`
running beside them. A README edit that adds a commented result this file does not check
fails here, so the two stay together."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, wait_until

pytestmark = pytest.mark.slow

README = REPO / "README.md"
MARK = "@@@readme-step"


def walkthrough() -> str:
    """The first bash block under the README's "Walkthrough" heading."""
    text = README.read_text()
    section = text[text.index("## Walkthrough") :]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README.md has no bash block under its Walkthrough heading"
    return match.group(1)


def recipe_commands() -> list[str]:
    """The recipe's commands, in the order the README gives them."""
    text = README.read_text()
    paragraph = text[text.index("The recipe's commands work as written") :].split("\n\n")[0]
    commands = re.findall(r"`(python3 [^`]+)`", paragraph)
    assert len(commands) == 3, paragraph
    return commands


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user: no BA_ settings, a wide terminal for unwrapped lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BA_")}
    env.pop("VIRTUAL_ENV", None)
    return {**env, "COLUMNS": "250", **extra}


class Step:
    def __init__(self, line: str) -> None:
        command, _, comment = line.partition(" # ")
        self.command = command.strip()
        self.comment = comment.strip()
        self.output = ""
        self.code: int | None = None


def run_block(block: str, folder: Path) -> list[Step]:
    """Run `block` with bash in `folder`, recording each top-level command's output and exit
    code (a here-document belongs to the command that opens it)."""
    steps: list[Step] = []
    script: list[str] = []
    heredoc_end: str | None = None
    for line in block.splitlines():
        if heredoc_end is not None:
            script.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
                script.append(f'echo "{MARK} rc $?"')
            continue
        if not line.strip():
            continue
        steps.append(Step(line))
        script.append(f'echo "{MARK} {len(steps) - 1}"')
        script.append(line)
        opened = re.search(r"<<-?\s*'?(\w+)'?", line)
        if opened:
            heredoc_end = opened.group(1)
        else:
            script.append(f'echo "{MARK} rc $?"')
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    current: Step | None = None
    for line in result.stdout.decode().splitlines():
        if line.startswith(MARK):
            word = line.split()[1]
            if word == "rc":
                assert current is not None
                current.code = int(line.split()[2])
            else:
                current = steps[int(word)]
            continue
        if current is not None:
            current.output += line + "\n"
    return steps


def fresh_clone(tmp_path: Path) -> Path:
    """A folder as a fresh clone leaves it, with the virtualenv `./dev` would create."""
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / ".venv").symlink_to(REPO / ".venv")
    return folder


def total_events_row(output: str) -> int:
    match = re.search(r"total events\s*│\s*(\d+)", output)
    assert match, output
    return int(match.group(1))


def test_the_walkthrough_runs_verbatim_on_a_fresh_folder(tmp_path: Path) -> None:
    folder = fresh_clone(tmp_path)
    steps = run_block(walkthrough(), folder)
    data = folder / ".behavioral-analytics"

    # What each commented result says, checked; quoted text must appear as printed.
    checks: dict[str, Callable[[Step], None]] = {
        "behavioral-analytics init": lambda step: (
            _expect(data.is_dir(), "init made ./.behavioral-analytics", step),
            _expect("topic user-events" in step.output, "the topic", step),
            _expect("subscription analytics-processor" in step.output, "the subscription", step),
        ),
        "behavioral-analytics publish events.ndjson": lambda step: None,
        "behavioral-analytics worker --until-idle": lambda step: None,
        "behavioral-analytics query profile user_42": lambda step: _expect(
            total_events_row(step.output) == 1, "total 1", step
        ),
        "behavioral-analytics dlq list": lambda step: _expect(
            "not_json" in step.output, "reason not_json", step
        ),
        "behavioral-analytics verify": lambda step: None,
    }
    for step in steps:
        assert step.code == 0, f"{step.command!r} exited {step.code}:\n{step.output}"
        for quoted in re.findall(r'"([^"]+)"', step.comment):
            assert quoted in step.output, f"{step.command!r}: {quoted!r} not in\n{step.output}"
        if step.comment:
            assert step.command in checks, f"README comment not checked here: {step.comment!r}"
            checks[step.command](step)
    timeline = next(s for s in steps if s.command.endswith("timeline team/alice --json"))
    items = json.loads(timeline.output)["items"]
    assert [item["event_type"] for item in items] == ["checkout.step_2"]


def _expect(condition: bool, what: str, step: Step) -> None:
    assert condition, f"{step.command!r}: expected {what}; got\n{step.output}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_recipe(data_dir: Path) -> list[tuple[str, int, str]]:
    """The recipe's commands as the README gives them, from the repository's root, with a
    plain `python3` (the scripts re-run themselves in .venv)."""
    results = []
    for command in recipe_commands():
        result = subprocess.run(
            command,
            shell=True,
            cwd=REPO,
            env=clean_env(BA_DATA_DIR=str(data_dir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=400,
        )
        results.append((command, result.returncode, result.stdout.decode()))
    return results


def _recorded_funnels(path: Path) -> bool:
    """Whether the store at `path` has recorded a configuration with a funnel."""
    if not path.exists():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT value FROM metadata WHERE name = 'config'").fetchone()
    except sqlite3.OperationalError:  # no table yet
        return False
    finally:
        db.close()
    return row is not None and bool(json.loads(row[0]).get("funnels"))


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The recipe's commands in the README's order on two fresh folders at once: one alone,
    one beside a running `up` (stopped with Ctrl-C afterwards)."""
    if shutil.which("python3") is None:
        pytest.skip("SKIPPED LOUDLY: no python3 on PATH to run the recipe's commands with")
    root = tmp_path_factory.mktemp("recipe")
    alone, beside_up = root / "alone", root / "beside-up"
    up = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "up", "--port", str(free_port())],
        env=clean_env(BA_DATA_DIR=str(beside_up)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    outcomes: dict[str, Any] = {}
    try:
        log = beside_up / "up.log"
        wait_until(lambda: log.exists() and '"worker started"' in log.read_text(), 60, "up")
        # A running `up`: its demo traffic committed, so the store has recorded its demo funnel.
        # Until then a worker the load test starts counts by a configuration without it, and
        # stops when `up`'s first commit adds it (README "Configuration that shapes stored
        # numbers"), as it would beside an `up` started a moment before.
        wait_until(lambda: _recorded_funnels(beside_up / "store.db"), 60, "up's first commit")
        # Both runs at once: each takes about as long as its paced load test.
        runner = threading.Thread(target=lambda: outcomes.update(alone=run_recipe(alone)))
        runner.start()
        outcomes["beside_up"] = run_recipe(beside_up)
        runner.join(500)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            _, err = up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            _, err = up.communicate()
    outcomes["up"] = (up.returncode, err.decode())
    return outcomes


@pytest.mark.parametrize("where", ["alone", "beside_up"])
def test_the_recipe_generators_run_as_the_readme_says(
    recipe_runs: dict[str, Any], where: str
) -> None:
    code, err = recipe_runs["up"]
    assert code == 0, err[-2000:]
    generators = recipe_runs[where][:2]
    assert [command for command, _, _ in generators] == recipe_commands()[:2]
    for command, code, output in generators:
        assert code == 0, f"{where}: {command!r} exited {code}:\n{output[-3000:]}"


@pytest.mark.parametrize("where", ["alone", "beside_up"])
def test_the_recipe_load_test_passes_after_the_generators(
    recipe_runs: dict[str, Any], where: str
) -> None:
    command, code, output = recipe_runs[where][2]
    assert command == recipe_commands()[2]
    assert code == 0, f"{where}: {command!r} exited {code}:\n{output[-3000:]}"
    assert "FAILED" not in output


def curl_example() -> str:
    """The README's curl call (its first bash block that runs curl), without its comments."""
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        if block.lstrip().startswith("curl "):
            return "\n".join(line for line in block.splitlines() if not line.startswith("#"))
    raise AssertionError("README.md has no curl example")


@pytest.mark.skipif(shutil.which("curl") is None, reason="SKIPPED LOUDLY: no curl")
def test_the_readme_curl_call_sent_twice_is_one_purchase(tmp_path: Path) -> None:
    port = free_port()
    command = curl_example()
    assert "http://127.0.0.1:8080/" in command
    command = command.replace("http://127.0.0.1:8080/", f"http://127.0.0.1:{port}/")
    env = clean_env(BA_DATA_DIR=str(tmp_path / "data"), WRITE_KEY="wk_readme_0001")
    env["BA_WRITE_KEYS"] = env["WRITE_KEY"]
    cli = [sys.executable, "-m", "behavioral_analytics.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=120)
    api = subprocess.Popen(
        [*cli, "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answered() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(answered, 60, "the API to listen")
        for _ in range(2):
            sent = subprocess.run(
                ["bash", "-c", command], env=env, capture_output=True, timeout=60, check=True
            )
            assert json.loads(sent.stdout) == {"accepted": ["m-1"], "rejected": []}
    finally:
        api.terminate()
        api.wait(30)
    subprocess.run(
        [*cli, "worker", "--until-idle"], env=env, check=True, capture_output=True, timeout=120
    )
    events = subprocess.run(
        [*cli, "query", "events", "-t", "purchase", "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert len(json.loads(events.stdout)["items"]) == 1
