"""Hashed fields in the Terraform deployment: `hashed_fields` reaches the worker as
BA_HASHED_FIELDS, in the form the settings read, and its key BA_HASH_SALT comes from a Secret
Manager secret only the worker's service account may read."""

from __future__ import annotations

import re

import pytest

from behavioral_analytics.settings import ConfigError, load_settings

from .conftest import MODULE, load_hcl, offline_terraform
from .test_terraform import strip_expr


def _variable_block(name: str) -> str:
    text = (MODULE / "variables.tf").read_text()
    match = re.search(rf'^variable "{name}" {{\n.*?^}}\n', text, re.MULTILINE | re.DOTALL)
    assert match, f"variable {name} not in {MODULE / 'variables.tf'}"
    return match.group(0)


def test_the_worker_reads_the_key_from_secret_manager(module_resources) -> None:
    worker_env = (MODULE / "main.tf").read_text().split("worker_env = merge(", 1)[1]
    worker_env = worker_env.split("required_apis", 1)[0]
    assert 'BA_HASHED_FIELDS = join(",", var.hashed_fields)' in worker_env
    assert "length(var.hashed_fields) > 0" in worker_env
    secrets = load_hcl(MODULE / "secrets.tf")
    local = secrets["locals"][0]
    assert "BA_HASH_SALT" in str(local["worker_secrets"])
    assert strip_expr(local["generated_secrets"]) == (
        "merge(local.api_secrets, local.worker_secrets)"
    )
    # Each secret readable by the account that runs with it: the hash key by the worker's.
    readers = str(local["secret_readers"])
    assert "keys(local.worker_secrets) : name => google_service_account.worker.member" in readers
    assert "keys(local.api_secrets) : name => google_service_account.api[0].member" in readers
    for type_, name in (
        ("google_secret_manager_secret", "generated"),
        ("random_password", "generated"),
        ("google_secret_manager_secret_version", "generated"),
        ("google_secret_manager_secret_iam_member", "generated_accessor"),
    ):
        assert strip_expr(module_resources[(type_, name)]["for_each"]) == (
            "local.generated_secrets"
        )
    access = module_resources[("google_secret_manager_secret_iam_member", "generated_accessor")]
    assert access["role"] == "roles/secretmanager.secretAccessor"
    assert strip_expr(access["member"]) == "local.secret_readers[each.key]"
    # At least the 16 characters the settings require of BA_HASH_SALT.
    assert module_resources[("random_password", "generated")]["length"] >= 16
    pool = module_resources[("google_cloud_run_v2_worker_pool", "worker")]
    assert "google_secret_manager_secret_version.generated" in str(pool["depends_on"])
    worker = (MODULE / "worker.tf").read_text()
    assert "for_each = local.worker_secrets" in worker
    assert "google_secret_manager_secret.generated[env.key].secret_id" in worker
    # The API's keys of earlier releases are moved in the state, not made anew.
    moves = {(strip_expr(m["from"]), strip_expr(m["to"])) for m in secrets["moved"]}
    assert ("google_secret_manager_secret.api_keys", "google_secret_manager_secret.generated") in (
        moves
    )
    assert len(moves) == 4


def test_the_fields_terraform_joins_are_the_fields_the_worker_hashes() -> None:
    joined = ",".join(["email", "context.traits.email"])
    settings = load_settings(hashed_fields=joined, hash_salt="k" * 40)
    assert settings.behavior_rules().hashed_fields == ("context.traits.email", "email")
    with pytest.raises(ConfigError):
        load_settings(hashed_fields=joined, hash_salt="k" * 15)


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ('["email", "context.traits.email"]', True),
        ("[]", True),
        ('["a b"]', False),
        ('["a,b"]', False),
        ('[""]', False),
    ],
)
def test_hashed_fields_are_checked_at_plan_time(tmp_path, value: str, taken: bool) -> None:
    tf = offline_terraform(tmp_path, "the hashed_fields check")
    (tmp_path / "main.tf").write_text(
        _variable_block("hashed_fields")
        + 'output "joined" {\n  value = join(",", var.hashed_fields)\n}\n'
    )
    assert tf("init").returncode == 0
    plan = tf("plan", f"-var=hashed_fields={value}")
    said = " ".join((plan.stdout + plan.stderr).split())
    assert plan.returncode == (0 if taken else 1), said
    if not taken:
        assert "each path must be non-empty, without commas or spaces" in said
