"""docs/deploy.md: the three ways, costs, teardown, and the seed's commands mapped to real ones."""

from __future__ import annotations

import re

import pytest

from .conftest import REPO

DOC = REPO / "docs" / "deploy.md"


def mapping_rows():
    text = DOC.read_text()
    section = text.split("## The seed's commands and the real ones", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`gcloud"):
            rows.append((cells[0].strip("`"), cells[1]))
    return rows


def test_sections_and_cost_assumptions():
    text = DOC.read_text()
    assert text.startswith("# Deploy to Google Cloud")
    for heading in (
        "## 1. Terraform",
        "## 2. Infrastructure Manager",
        "## 3. Scripts",
        "## Cost per million events",
        "## Teardown",
        "## The seed's commands and the real ones",
    ):
        assert heading in text, heading
    cost = text.split("## Cost per million events", 1)[1].split("## Teardown", 1)[0]
    for assumption in (
        "per 100,000 document",
        "writes",
        "Pub/Sub",
        "vCPU-second",
        "GiB-second",
        "2.06 writes per event",
        "per 100,000 reads",
        "Firestore reads",
    ):
        assert assumption in cost, assumption
    assert "./scripts/destroy.sh" in text and "terraform destroy" in text
    assert "gcloud infra-manager deployments delete" in text


def test_mapping_covers_the_seed_commands_that_do_not_exist():
    seeds = " ".join(seed for seed, _ in mapping_rows())
    for missing in (
        "gcloud run workers list",
        "gcloud run workers describe",
        "gcloud run workers replace-service",
        "gcloud logs read",
        "gcloud firestore documents list",
        "gcloud monitoring metrics list",
        "gcloud alpha monitoring policies list",
    ):
        assert missing in seeds, missing


@pytest.mark.slow
def test_mapping_against_the_real_gcloud(real_gcloud):
    problems = []
    rows = mapping_rows()
    paths = {}
    for seed, real in rows:
        seed_args = seed.split()[1:]
        paths[("seed", seed)] = seed_args
        for command in re.findall(r"`(gcloud [^`]+)`", real):
            paths[("real", command)] = command.split()[1:]
    resolved = {key: real_gcloud.command_path(args) for key, args in paths.items()}
    real_gcloud.prefetch(resolved.values())
    for (side, command), path in resolved.items():
        words = [w for w in paths[(side, command)] if not w.startswith("-")]
        is_real = bool(path) and real_gcloud.is_command(path) and words[: len(path)] == list(path)
        # The seed's command is either real (the row says "exists") or mapped to something else.
        seed_row = next((r for s, r in rows if s == command), "")
        if side == "real" and not is_real:
            problems.append(f"mapped command does not exist: {command}")
        if (
            side == "seed"
            and is_real
            and "exists" not in seed_row
            and "--database=" not in seed_row
        ):
            problems.append(f"seed command exists but is mapped as missing: {command}")
        if side == "seed" and not is_real and "exists" in seed_row:
            problems.append(f"seed command said to exist but does not: {command}")
        if side == "real" and is_real:
            for flag in (a for a in paths[(side, command)] if a.startswith("--")):
                if not real_gcloud.flag_documented(path, flag):
                    problems.append(f"{command}: flag {flag} not in --help")
    assert not problems, "\n".join(problems)
