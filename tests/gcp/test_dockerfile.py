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


# Dockerfile syntax that the classic builder (what `gcloud builds submit --tag` runs) rejects:
# "the --mount option requires BuildKit", and the like.
BUILDKIT_ONLY = (
    ("RUN", "--mount"),
    ("RUN", "--network"),
    ("RUN", "--security"),
    ("COPY", "--link"),
    ("ADD", "--link"),
    ("COPY", "--parents"),
    ("COPY", "--exclude"),
    ("ADD", "--keep-git-dir"),
    ("ADD", "--checksum"),
)


def test_dockerfile_builds_with_the_classic_builder() -> None:
    text = (ROOT / "Dockerfile").read_text()
    first = next(line for line in text.splitlines() if line.strip())
    assert not first.lower().startswith("# syntax="), "a syntax directive implies BuildKit"
    problems = [
        f"{op} {flag}"
        for op, arg in _instructions()
        for kind, flag in BUILDKIT_ONLY
        if op == kind and any(word.split("=", 1)[0] == flag for word in arg.split())
    ]
    problems += [f"{op} heredoc" for op, arg in _instructions() if "<<" in arg]
    assert not problems, f"BuildKit-only syntax: {problems}"


def test_cloudbuild_config_builds_and_pushes_the_image() -> None:
    yaml = __import__("yaml")
    config = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    [step] = config["steps"]
    assert step["name"] == "gcr.io/cloud-builders/docker"
    assert step["args"][:3] == ["build", "--tag", "${_IMAGE}"]
    assert config["images"] == ["${_IMAGE}"]
    # Required when a build runs as a user-specified service account.
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_every_documented_build_builds_this_dockerfile() -> None:
    """Each `gcloud builds submit` in the docs and scripts uses the shipped build config or a
    plain --tag build, both of which the Dockerfile supports (checked above)."""
    sources = [ROOT / "docs" / "deploy.md", ROOT / "infrastructure-manager" / "README.md"]
    sources += sorted((ROOT / "scripts").glob("*.sh"))
    found = 0
    for path in sources:
        text = path.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip().startswith(("gcloud builds submit", "run gcloud builds submit")):
                found += 1
                assert "--config" in line or "--tag" in line, f"{path.name}: {line.strip()}"
                if "--config" in line:
                    assert "cloudbuild.yaml" in line, f"{path.name}: {line.strip()}"
    assert found >= 2
