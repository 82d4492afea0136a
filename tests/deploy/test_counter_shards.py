"""Counter shards on every deployment path: docs/gcp.md advises `BA_FIRESTORE_COUNTER_SHARDS`
past one worker per second of flush interval, and autoscaling defaults to ten workers at a 1 s
flush, but no path could set it. Terraform takes `firestore_counter_shards` (both services get
it: the API's reads sum the shards) and a plan warns when the workers outrun the shards; the
script takes `FIRESTORE_COUNTER_SHARDS`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import MODULE, REPO, load_hcl, offline_terraform
from .test_deployed_settings import _deploys, _flag, _gcloud_env
from .test_scripts import mutations
from .test_terraform import strip_expr

VARIABLES = ("enable_autoscaling", "max_instances", "min_instances", "flush_interval_seconds")
CHECK = re.compile(r'^check "bucket_documents_keep_up_with_the_workers" \{\n.*?^\}\n', re.M | re.S)


def _variable(name: str) -> str:
    text = (MODULE / "variables.tf").read_text()
    (block,) = re.findall(rf'^variable "{name}" \{{\n.*?^\}}\n', text, re.M | re.S)
    return block


def test_both_services_get_the_shards_from_one_variable() -> None:
    env = {k: v for entry in load_hcl(MODULE / "main.tf")["locals"] for k, v in entry.items()}
    shards = strip_expr(env["common_env"]["BA_FIRESTORE_COUNTER_SHARDS"])
    assert shards == "tostring(var.firestore_counter_shards)"
    root = (REPO / "terraform" / "main.tf").read_text()
    assert re.search(r"firestore_counter_shards\s*=\s*var\.firestore_counter_shards", root)
    root_variables = (REPO / "terraform" / "variables.tf").read_text()
    assert _variable("firestore_counter_shards") in root_variables


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        ({}, False),  # one worker at 1 s
        ({"enable_autoscaling": "true"}, True),  # up to ten workers at 1 s
        ({"enable_autoscaling": "true", "firestore_counter_shards": "10"}, False),
        ({"enable_autoscaling": "true", "flush_interval_seconds": "10"}, False),
        ({"min_instances": "3", "firestore_counter_shards": "2"}, True),
    ],
)
def test_a_plan_warns_when_the_workers_outrun_the_shards(
    tmp_path: Path, values: dict[str, str], warned: bool
) -> None:
    tf = offline_terraform(tmp_path, "the counter shards check")
    blocks = [_variable(name) for name in (*VARIABLES, "firestore_counter_shards")]
    (check,) = CHECK.findall((MODULE / "main.tf").read_text())
    (tmp_path / "main.tf").write_text("\n".join([*blocks, check]))
    assert tf("init").returncode == 0
    plan = tf("plan", *(f"-var={name}={value}" for name, value in values.items()))
    said = " ".join((plan.stdout + plan.stderr).split())
    assert plan.returncode == 0, said
    assert ("set firestore_counter_shards to at least" in said) == warned, said


@pytest.mark.slow
def test_the_script_passes_the_shards_to_both_services(standin) -> None:
    pool, api = _deploys(standin, FIRESTORE_COUNTER_SHARDS="4")
    for line in (pool, api):
        assert _gcloud_env(_flag(line, "--set-env-vars"))["BA_FIRESTORE_COUNTER_SHARDS"] == "4"


@pytest.mark.parametrize("value", ["-1", "101", "two", "1.5"])
def test_the_script_refuses_a_shard_count_the_code_refuses(standin, value: str) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", FIRESTORE_COUNTER_SHARDS=value)
    assert proc.returncode != 0 and "FIRESTORE_COUNTER_SHARDS" in proc.stderr
    assert mutations(gc.calls()) == []
