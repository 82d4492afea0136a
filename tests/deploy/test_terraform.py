"""The Terraform configurations: parse, match the seed, wire up correctly, fmt, checkov."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import MODULE, REPO, blocks, load_hcl, offline_terraform

TF_DIRS = [REPO / "terraform", REPO / "infrastructure-manager", MODULE]
ALL_TF = sorted(p for d in TF_DIRS for p in d.glob("*.tf"))

# The seed's Terraform table: name -> (type, default); None = required.
SEED_TERRAFORM = {
    "project_id": ("string", None),
    "region": ("string", "us-central1"),
    "zone": ("string", "us-central1-a"),
    "worker_pool_name": ("string", "behavioral-processor"),
    "firestore_database": ("string", "behavioral-analytics"),
    "pubsub_topic_name": ("string", "user-events"),
    "subscription_name": ("string", "analytics-processor"),
    "max_instances": ("number", 10),
    "min_instances": ("number", 1),
    "memory_limit": ("string", "1Gi"),
    "cpu_limit": ("string", "1"),
    "enable_monitoring": ("bool", True),
}
SEED_INFRA_MANAGER = {
    k: SEED_TERRAFORM[k]
    for k in (
        "project_id",
        "region",
        "worker_pool_name",
        "firestore_database",
        "max_instances",
        "memory_limit",
    )
}


def strip_expr(value) -> str:
    value = str(value)
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def variables(directory: Path) -> dict:
    return blocks(load_hcl(directory / "variables.tf"), "variable")


def test_every_tf_file_parses():
    assert len(ALL_TF) >= 15
    for path in ALL_TF:
        load_hcl(path)


@pytest.mark.parametrize(
    ("directory", "seed"),
    [
        (REPO / "terraform", SEED_TERRAFORM),
        (MODULE, SEED_TERRAFORM),
        (REPO / "infrastructure-manager", SEED_INFRA_MANAGER),
    ],
    ids=["terraform", "module", "infrastructure-manager"],
)
def test_variables_match_the_seed(directory, seed):
    declared = variables(directory)
    for name, (type_, default) in seed.items():
        assert name in declared, f"{directory.name}: variable {name} missing"
        body = declared[name]
        assert strip_expr(body["type"]) == type_, f"{name}: type {body['type']}"
        if default is None:
            assert "default" not in body, f"{name} must be required"
        else:
            assert body.get("default") == default, f"{name}: default {body.get('default')!r}"
    if directory.name == "infrastructure-manager":
        # The seed's inputs, plus what a first deployment and a teardown need to set, and
        # what makes the seed's max_instances bound anything (the autoscaler, off by default).
        assert set(declared) - set(seed) == {
            "container_image",
            "alert_email",
            "firestore_delete_protection",
            "allow_subscription_replacement",
            "min_instances",
            "enable_autoscaling",
        }


def test_every_variable_is_described_and_validated_where_it_has_a_domain():
    declared = variables(MODULE)
    free = {
        "enable_monitoring",
        "message_ordering",
        "firestore_delete_protection",
        "firestore_point_in_time_recovery",
        "cloud_run_deletion_protection",
        "enable_autoscaling",
        "deploy_api",
        "api_allow_unauthenticated",
        "allow_subscription_replacement",
        "crema_image",
        "crema_base_image",
    }
    for name, body in declared.items():
        assert body.get("description"), f"{name} has no description"
        if name not in free:
            assert body.get("validation"), f"{name} has no validation block"


def test_root_module_mirrors_the_module_variables():
    root, module = variables(REPO / "terraform"), variables(MODULE)
    assert root == module
    main = blocks(load_hcl(REPO / "terraform" / "main.tf"), "module")["behavioral_analytics"]
    assert main["source"] == "../infrastructure-manager/modules/behavioral-analytics"
    for name in module:
        assert strip_expr(main[name]) == f"var.{name}", f"terraform/main.tf does not pass {name}"


def test_infrastructure_manager_calls_the_module_from_inside_its_folder():
    main = blocks(load_hcl(REPO / "infrastructure-manager" / "main.tf"), "module")[
        "behavioral_analytics"
    ]
    # --local-source uploads only this folder: the module must be inside it.
    assert main["source"].startswith("./")
    assert (REPO / "infrastructure-manager" / main["source"]).resolve() == MODULE
    for name in SEED_INFRA_MANAGER:
        assert strip_expr(main[name]) == f"var.{name}"
    # No resource is written outside the module.
    for directory in (REPO / "terraform", REPO / "infrastructure-manager"):
        for path in directory.glob("*.tf"):
            assert not load_hcl(path).get("resource"), f"{path} defines resources"


def test_versions_accept_terraform_157_and_have_the_worker_pool():
    for directory in (REPO / "terraform", REPO / "infrastructure-manager", MODULE):
        terraform = load_hcl(directory / "versions.tf")["terraform"][0]
        assert terraform["required_version"] == ">= 1.5.0"
        google = terraform["required_providers"][0]["google"]
        assert google["source"] == "hashicorp/google"
        assert google["version"].startswith(">= 7.18.0")


def test_worker_pool(module_resources):
    pool = module_resources[("google_cloud_run_v2_worker_pool", "worker")]
    assert strip_expr(pool["name"]) == "var.worker_pool_name"
    assert strip_expr(pool["scaling"][0]["manual_instance_count"]) == "var.min_instances"
    template = pool["template"][0]
    assert "google_service_account.worker.email" in template["service_account"]
    container = template["containers"][0]
    assert strip_expr(container["resources"][0]["limits"]) == "module.worker_limits.limits"
    checked = blocks(load_hcl(MODULE / "worker.tf"), "module")["worker_limits"]
    assert strip_expr(checked["cpu"]) == "var.cpu_limit"
    assert strip_expr(checked["memory"]) == "var.memory_limit"
    assert "local.worker_env" in str(container["dynamic"])
    sa = module_resources[("google_service_account", "worker")]
    assert sa["account_id"] == "analytics-processor"


@pytest.mark.parametrize(
    ("cpu", "memory", "taken"),
    [
        ("1", "1Gi", True),  # the defaults
        ("1", "512Mi", True),
        ("1", "4096Mi", True),
        ("1", "4097Mi", False),
        ("2", "8Gi", True),
        ("2", "9Gi", False),
        ("4", "1Gi", False),  # more CPU with the default memory: Cloud Run refuses it
        ("4", "2Gi", True),
        ("6", "3Gi", False),
        ("6", "24Gi", True),
        ("8", "4Gi", True),
        ("8", "33Gi", False),
        ("1", "256Mi", False),
        ("3", "4Gi", False),
    ],
)
def test_worker_limits_are_checked_as_a_pair_at_plan_time(tmp_path, cpu, memory, taken):
    tf = offline_terraform(tmp_path, "the worker's CPU and memory check")
    (tmp_path / "main.tf").write_text(
        f'module "limits" {{\n  source = "{MODULE / "instance-limits"}"\n'
        f'  cpu = "{cpu}"\n  memory = "{memory}"\n}}\n'
        'output "limits" {\n  value = module.limits.limits\n}\n'
    )
    assert tf("init").returncode == 0
    plan = tf("plan")
    said = " ".join((plan.stdout + plan.stderr).split())
    assert plan.returncode == (0 if taken else 1), said
    if not taken:
        assert f"cpu_limit = {cpu} with memory_limit = {memory}" in said


def test_worker_environment_follows_the_application_contract():
    text = (MODULE / "main.tf").read_text()
    for name in (
        "BA_BACKEND",
        "GOOGLE_CLOUD_PROJECT",
        "PUBSUB_TOPIC",
        "PUBSUB_SUBSCRIPTION",
        "PUBSUB_DEAD_LETTER_TOPIC",
        "PUBSUB_DEAD_LETTER_SUBSCRIPTION",
        "FIRESTORE_DATABASE",
        "BA_TIMEZONE",
        "BA_FLUSH_INTERVAL",
        "BA_MAX_DELIVERY_ATTEMPTS",
        "BA_RAW_RETENTION_DAYS",
        "BA_METRICS_EXPORTER",
    ):
        assert f"{name} " in text or f"{name}=" in text, name


def test_least_privilege(module_resources):
    roles = {}
    for (type_, name), body in module_resources.items():
        if type_ == "google_project_iam_member":
            roles[name] = body
    text = (MODULE / "main.tf").read_text()
    assert "roles/pubsub.subscriber" not in text, (
        "the worker subscribes per subscription, not per project"
    )
    for role in (
        "roles/datastore.user",
        "roles/monitoring.metricWriter",
        "roles/logging.logWriter",
    ):
        assert role in text
    # The collector records rejected events in dead_letters itself (creates).
    api_roles = text.split("api_project_roles", 1)[1].split("])", 1)[0]
    assert "roles/datastore.user" in api_roles and "roles/datastore.viewer" not in api_roles
    # Only the worker exports to Cloud Monitoring (cli/pipeline.py); the API serves /metrics.
    assert "roles/monitoring.metricWriter" not in api_roles
    sub = module_resources[("google_pubsub_subscription_iam_member", "worker_subscriber")]
    assert sub["role"] == "roles/pubsub.subscriber"
    assert "google_pubsub_subscription.events.name" in str(sub["for_each"])
    api_pub = module_resources[("google_pubsub_topic_iam_member", "api_publisher")]
    assert api_pub["role"] == "roles/pubsub.publisher"
    assert "google_pubsub_topic.events.name" in api_pub["topic"]


def test_pubsub_and_dead_letter_wiring(module_resources):
    sub = module_resources[("google_pubsub_subscription", "events")]
    assert sub["ack_deadline_seconds"] == 60
    assert sub["message_retention_duration"] == "604800s"
    assert strip_expr(sub["enable_message_ordering"]) == "var.message_ordering"
    assert sub["retry_policy"][0]["minimum_backoff"]
    dlp = sub["dead_letter_policy"][0]
    assert strip_expr(dlp["dead_letter_topic"]) == "google_pubsub_topic.dead_letter.id"
    assert strip_expr(dlp["max_delivery_attempts"]) == "var.max_delivery_attempts"
    dl_sub = module_resources[("google_pubsub_subscription", "dead_letter")]
    assert strip_expr(dl_sub["topic"]) == "google_pubsub_topic.dead_letter.id"
    publisher = module_resources[
        ("google_pubsub_topic_iam_member", "dead_letter_publisher_service_agent")
    ]
    assert publisher["role"] == "roles/pubsub.publisher"
    assert "google_pubsub_topic.dead_letter.name" in publisher["topic"]
    assert "local.pubsub_service_agent" in publisher["member"]
    subscriber = module_resources[
        ("google_pubsub_subscription_iam_member", "source_subscriber_service_agent")
    ]
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert "google_pubsub_subscription.events.name" in subscriber["subscription"]
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in (MODULE / "main.tf").read_text()
    variables_ = variables(MODULE)
    assert variables_["message_ordering"]["default"] is False


def test_firestore_database_ttl_and_indexes_agree_with_firestore_indexes_json(module_resources):
    db = module_resources[("google_firestore_database", "analytics")]
    assert "var.firestore_delete_protection" in db["delete_protection_state"]
    assert "var.firestore_point_in_time_recovery" in db["point_in_time_recovery_enablement"]
    assert variables(MODULE)["firestore_delete_protection"]["default"] is True
    index = module_resources[("google_firestore_index", "composite")]
    assert "local.firestore_composite_indexes" in index["for_each"]
    field = module_resources[("google_firestore_field", "overrides")]
    assert "local.firestore_field_overrides" in field["for_each"]
    assert field["index_config"] == [{}]

    locals_ = {}
    for entry in load_hcl(MODULE / "firestore.tf")["locals"]:
        locals_.update(entry)
    tf_indexes = sorted(
        (i["collection"], tuple((f["field_path"], f["order"]) for f in i["fields"]))
        for i in locals_["firestore_composite_indexes"].values()
    )
    tf_overrides = sorted(
        (o["collection"], o["field"], o["ttl"])
        for o in locals_["firestore_field_overrides"].values()
    )
    spec = json.loads((REPO / "firestore.indexes.json").read_text())
    json_indexes = sorted(
        (i["collectionGroup"], tuple((f["fieldPath"], f["order"]) for f in i["fields"]))
        for i in spec["indexes"]
    )
    json_overrides = sorted(
        (o["collectionGroup"], o["fieldPath"], bool(o.get("ttl"))) for o in spec["fieldOverrides"]
    )
    assert tf_indexes == json_indexes
    assert tf_overrides == json_overrides
    assert ("user_events", (("user_id", "ASCENDING"), ("timestamp", "DESCENDING"))) in tf_indexes
    assert ("user_events", (("event_type", "ASCENDING"), ("timestamp", "DESCENDING"))) in tf_indexes
    for collection in ("user_events", "dead_letters"):
        assert (collection, "expire_at", True) in tf_overrides
    assert ("user_events", "properties", False) in tf_overrides


def test_monitoring_dashboard_and_alerts(module_resources):
    dashboard = module_resources[("google_monitoring_dashboard", "analytics")]
    assert "var.enable_monitoring" in str(dashboard["count"])
    assert "monitoring/dashboard.json.tftpl" in dashboard["dashboard_json"]
    alerts = module_resources[("google_monitoring_alert_policy", "alerts")]
    assert "local.alerting.alertPolicies" in alerts["for_each"]
    assert "local.alert_channels" in alerts["notification_channels"]
    # A log match, not a policy on the logs-based metric (404s while it propagates).
    assert "google_logging_metric" not in str(alerts.get("depends_on", ""))
    assert "lifecycle" not in dashboard, "ignore_changes would hide dashboard edits"

    render = {
        "project_id": "p",
        "region": "r",
        "worker_pool_name": "wp",
        "subscription_name": "sub",
        "dead_letter_subscription_name": "sub-dl",
        "dead_letter_topic_name": "top-dl",
        "worker_errors_metric": "errs",
        "dashboard_display_name": "dash",
        "backlog_threshold": "10",
        "oldest_unacked_threshold": "60",
    }
    from string import Template

    dash = json.loads(
        Template((MODULE / "monitoring" / "dashboard.json.tftpl").read_text()).substitute(render)
    )
    filters = " ".join(
        ds["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
        for tile in dash["mosaicLayout"]["tiles"]
        for ds in tile["widget"]["xyChart"]["dataSets"]
    )
    for metric in (
        "behavioral_analytics/events_processed",
        "behavioral_analytics/commit_latency",
        "subscription/num_undelivered_messages",
        "subscription/oldest_unacked_message_age",
        "subscription/dead_letter_message_count",
        "run.googleapis.com/container/instance_count",
        "logging.googleapis.com/user/errs",
    ):
        assert metric in filters, metric
    assert '"sub-dl"' in filters and 'resource.type="generic_task"' in filters

    alerting = json.loads(
        Template((MODULE / "monitoring" / "alerting.json.tftpl").read_text()).substitute(render)
    )
    keys = {p["key"]: p for p in alerting["alertPolicies"]}
    assert set(keys) == {"backlog", "oldest_unacked", "dead_letters", "worker_errors"}
    assert "num_undelivered_messages" in keys["backlog"]["filter"]
    assert "oldest_unacked_message_age" in keys["oldest_unacked"]["filter"]
    assert "dead_letter_message_count" in keys["dead_letters"]["filter"]
    assert "severity>=ERROR" in keys["worker_errors"]["logFilter"]
    assert "severity>=ERROR" in alerting["logMetrics"][0]["filter"]
    assert alerting["logMetrics"][0]["name"] == "errs"


def test_autoscaling_is_optional_and_scales_the_worker_pool(module_resources):
    assert variables(MODULE)["enable_autoscaling"]["default"] is False
    crema = module_resources[("google_cloud_run_v2_service", "autoscaler")]
    assert "var.enable_autoscaling" in str(crema["count"])
    assert "CREMA_CONFIG" in str(crema["template"])
    text = (MODULE / "autoscaling.tf").read_text()
    assert '"gcp-pubsub"' in text and "var.min_instances" in text and "var.max_instances" in text
    iam = module_resources[("google_cloud_run_v2_worker_pool_iam_member", "autoscaler_developer")]
    assert "google_cloud_run_v2_worker_pool.worker.name" in iam["name"]


def test_api_service(module_resources):
    api = module_resources[("google_cloud_run_v2_service", "api")]
    assert "var.deploy_api" in str(api["count"])
    container = api["template"][0]["containers"][0]
    assert container["command"].endswith(': ["behavioral-analytics"]}')
    assert container["args"].endswith(': ["api"]}')
    assert "var.api_allow_unauthenticated" in api["invoker_iam_disabled"]
    assert "local.image" in container["image"]
    assert module_resources[("google_service_account", "api")]["account_id"] == "analytics-api"
    assert variables(MODULE)["deploy_api"]["default"] is True
    assert "BA_WRITE_KEYS" in (MODULE / "api.tf").read_text()


def test_terraform_fmt_is_clean():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed: `terraform fmt -check -recursive` not run")
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _checkov() -> str | None:
    local = REPO / ".venv-tools" / "bin" / "checkov"
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("checkov")


def test_checkov_has_no_unjustified_failure(tmp_path):
    # terraform/ calls the module that infrastructure-manager/ calls too: one scan covers both.
    directory = "terraform"
    checkov = _checkov()
    if checkov is None:
        pytest.skip(
            "checkov is not installed (.venv-tools/bin/checkov or PATH): security scan not run"
        )
    proc = subprocess.run(
        [
            checkov,
            "-d",
            directory,
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert sum(r.get("summary", {}).get("resource_count", 0) for r in reports) > 30, (
        "checkov saw no module resources"
    )
    assert not failed, "checkov failures without a #checkov:skip justification:\n" + "\n".join(
        failed
    )
    for path in MODULE.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert line.split("checkov:skip=", 1)[1].split(":", 1)[1].strip(), (
                    f"unjustified skip: {line}"
                )
