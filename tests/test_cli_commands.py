"""The command line has every command, and a broken import fails loudly instead of losing one:
only `api` may lack its extra (fastapi, uvicorn), and then it says how to install it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import cli

COMMANDS = (
    "init",
    "publish",
    "worker",
    "verify",
    "up",
    "forget",
    "api",
    "generate",
    "loadtest",
    "query",
    "dlq",
)


def cli_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where importing any of `modules` raises ImportError."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    program = (
        f"import sys\n{blocked}"
        "from behavioral_analytics.cli import main\n"
        "sys.argv[0] = 'behavioral-analytics'\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def listed_commands(help_text: str) -> set[str]:
    return set(re.findall(r"^│ (\w+) ", help_text, flags=re.MULTILINE))


def test_help_lists_every_command():
    result = cli("--help", env={"COLUMNS": "200"})
    assert listed_commands(result.stdout.decode()) >= set(COMMANDS)


def test_a_broken_import_in_a_command_module_fails_loudly():
    result = cli_without(["behavioral_analytics.loadtest"], "generate", "--help")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "No such command" not in output
    assert "ModuleNotFoundError" in result.stderr
    assert "behavioral_analytics.loadtest" in result.stderr


def test_api_without_its_extra_says_how_to_install_it():
    listed = cli_without(["fastapi", "uvicorn"], "--help")
    assert listed.returncode == 0, listed.stderr
    assert listed_commands(listed.stdout) >= set(COMMANDS)

    result = cli_without(["fastapi", "uvicorn"], "api")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "uvicorn" in lines[0]
    assert "pip install 'behavioral-analytics[api]'" in lines[0]


def test_api_surfaces_any_other_import_error():
    result = cli_without(["behavioral_analytics.api.server"], "api")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "behavioral_analytics.api.server" in result.stderr
    assert "pip install" not in result.stderr
