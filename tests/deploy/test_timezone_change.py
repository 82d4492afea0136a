"""The deployed reporting time zone: Terraform's rule on `timezone` refuses what the worker
refuses (`localtime`, each machine's own zone, and the zone folder's other non-zones), and
docs/deploy.md changes a deployed zone the one way the store lets it: the workers stopped,
`config apply` against the production database, then the new revision."""

from __future__ import annotations

import json
import re
from pathlib import Path
from zoneinfo import available_timezones

import pytest

from behavioral_analytics.time_zones import timezone_problem

from .conftest import MODULE, REPO, offline_terraform

ROOTS = [REPO / "terraform", MODULE, REPO / "infrastructure-manager"]
# Names of the zone database's folder that are no reporting zone to the code.
REFUSED = [
    "localtime",
    "posixrules",
    "leapseconds",
    "right/UTC",
    "right/Europe/Paris",
    "posix/UTC",
    "posix/Europe/Paris",
]
BLOCK = re.compile(r'^variable "timezone" \{\n.*?^\}\n', re.M | re.S)


def timezone_blocks() -> list[tuple[Path, str]]:
    found = []
    for root in ROOTS:
        text = (root / "variables.tf").read_text()
        found += [(root, block) for block in BLOCK.findall(text)]
    return found


def test_every_root_that_takes_a_time_zone_was_found() -> None:
    roots = {root for root, _ in timezone_blocks()}
    assert {REPO / "terraform", MODULE} <= roots


def test_the_code_refuses_these_names() -> None:
    assert [name for name in REFUSED if timezone_problem(name) is None] == []


def plan_zones(tmp_path: Path, block: str, names: list[str]):
    """A plan of the `timezone` variable's block alone (a module without providers), one
    instance per name: its completed process."""
    tf = offline_terraform(tmp_path, "the timezone variable's rule")
    module = tmp_path / "tz"
    module.mkdir(exist_ok=True)
    (module / "variables.tf").write_text(block)
    (tmp_path / "main.tf").write_text(
        'module "tz" {\n  source   = "./tz"\n'
        f"  for_each = toset({json.dumps(names)})\n  timezone = each.value\n}}\n"
    )
    init = tf("init")
    assert init.returncode == 0, init.stdout + init.stderr
    return tf("plan")


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize(
    "block", [b for _, b in timezone_blocks()], ids=[str(r.name) for r, _ in timezone_blocks()]
)
def test_a_plan_refuses_what_the_worker_refuses(tmp_path, block, name) -> None:
    plan = plan_zones(tmp_path, block, [name])
    said = " ".join((plan.stdout + plan.stderr).split())
    assert plan.returncode == 1, said
    assert "Invalid value for variable" in said and "localtime" in said, said


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", [b for _, b in timezone_blocks()], ids=[str(r.name) for r, _ in timezone_blocks()]
)
def test_a_plan_takes_every_zone_the_worker_takes(tmp_path, block) -> None:
    names = sorted(n for n in available_timezones() if timezone_problem(n) is None)
    assert {"UTC", "Europe/Paris", "GMT+0", "America/Argentina/Buenos_Aires"} <= set(names)
    plan = plan_zones(tmp_path, block, names)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]


def test_the_docs_change_a_deployed_zone_through_config_apply() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    costs = text.split("### What a change costs", 1)[1].split("\n### ", 1)[0]
    rows = {
        line.split("|")[1].strip(): line for line in costs.splitlines() if line.startswith("| `")
    }
    assert "`timezone`" in rows, "the time zone has a row of its own"
    assert "config apply" in rows["`timezone`"] and "exits 2" in rows["`timezone`"]
    in_place = [key for key, line in rows.items() if "in place" in line]
    assert not [key for key in in_place if "`timezone`" in key], in_place

    steps = " ".join(text.split("### Changing the time zone", 1)[1].split("\n### ", 1)[0].split())
    order = [
        "`min_instances = 0`",
        "BA_BACKEND=gcp",
        "FIRESTORE_DATABASE=behavioral-analytics",
        "BA_TIMEZONE=Europe/Paris",
        "behavioral-analytics config apply",
        '`timezone = "Europe/Paris"`',
        "`terraform apply`",
    ]
    position = 0
    for part in order:  # each after the one before
        found = steps.find(part, position)
        assert found >= 0, f"{part} does not follow the step before it: {steps}"
        position = found + len(part)
