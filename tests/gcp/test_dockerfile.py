"""The image definition (Docker cannot run here): structure only."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_the_worker_as_non_root_with_runtime_deps_only() -> None:
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert all(arg.startswith("python:3.12-slim") for arg in froms)
    users = [arg for op, arg in steps if op == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "[gcp,api]" in runs
    assert "test" not in runs and "dev" not in runs
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["behavioral-analytics"]
    assert json.loads(dict(steps)["CMD"]) == ["worker"]
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "tests", ".env"} <= set(ignored)
