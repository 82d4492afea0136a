"""The infrastructure tied to what the code does, so that a deployment that parses, formats
and lints cleanly cannot still fail on its first run:

- the image a first apply deploys exists before that apply (no image from the repository the
  same apply creates), on both Terraform roots;
- the provider floor, the CREMA release, the subscription's replacement guard (run for real
  with Terraform's built-in provider, offline);
- every metric and label the dashboard reads is one the exporter writes, with the job label
  the worker pool's environment gives it;
- from the emulator-backed tests, recorded by tests/gcp/rpc_record.py: every Google API call
  each process makes is allowed by a role Terraform grants its service account
  (tests/deploy/iam_permissions.py), every TTL policy is on a timestamp the code writes, every
  collection the code gives an `expire_at` has one, every query the code runs has an
  index in production, and every field keyed by breakdown values has its indexes exempted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from string import Template
from typing import Any

import pytest

from .conftest import MODULE, REPO, blocks, load_hcl, offline_terraform
from .iam_permissions import METHOD_PERMISSIONS, ROLE_PERMISSIONS, WRITE_PERMISSIONS

ROOTS = [REPO / "terraform", REPO / "infrastructure-manager"]
RECORDED_TESTS = ["tests/gcp/test_pipeline.py", "tests/gcp/test_process_roles.py"]


def _locals(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in load_hcl(path).get("locals", []):
        out.update(entry)
    return out


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


# ---------------------------------------------------------------------------
# Images, provider, CREMA, replacement guard
# ---------------------------------------------------------------------------


def test_first_apply_runs_an_image_that_exists_before_it() -> None:
    """Defect: the first apply pointed Cloud Run at the repository it was creating."""
    image = _locals(MODULE / "main.tf")["image"]
    assert "google_artifact_registry_repository" not in image, (
        f"local.image refers to the repository the same apply creates: {image}"
    )
    placeholder = _locals(MODULE / "main.tf")["placeholder_image"]
    assert placeholder.startswith("us-docker.pkg.dev/cloudrun/container/"), placeholder
    for root in (REPO / "terraform", MODULE):
        default = blocks(load_hcl(root / "variables.tf"), "variable")["container_image"]
        assert default["default"] == ""
    # The placeholder has its own command: the API must not force ours on it.
    api = blocks(load_hcl(MODULE / "api.tf"), "resource")[("google_cloud_run_v2_service", "api")]
    container = api["template"][0]["containers"][0]
    assert "local.runs_placeholder" in str(container["command"])
    assert "local.runs_placeholder" in str(container["args"])


def test_both_roots_take_the_image() -> None:
    for root in ROOTS:
        declared = blocks(load_hcl(root / "variables.tf"), "variable")
        assert "container_image" in declared, f"{root.name} cannot set the image"
        main = blocks(load_hcl(root / "main.tf"), "module")["behavioral_analytics"]
        assert main["container_image"] == "${var.container_image}"


def test_infrastructure_manager_extra_inputs_have_the_module_definitions() -> None:
    from .test_terraform import SEED_INFRA_MANAGER

    module = blocks(load_hcl(MODULE / "variables.tf"), "variable")
    declared = blocks(load_hcl(REPO / "infrastructure-manager" / "variables.tf"), "variable")
    for name, body in declared.items():
        if name not in SEED_INFRA_MANAGER:
            assert body == module[name], f"variable {name} differs from the module's"


def test_provider_floor_has_the_worker_pool_fixes() -> None:
    """manual_instance_count = 0 is dropped before 6.47.0; scaling_mode diffs before 7.18.0."""
    for root in (*ROOTS, MODULE):
        terraform = load_hcl(root / "versions.tf")["terraform"][0]
        constraint = terraform["required_providers"][0]["google"]["version"]
        floor = re.search(r">=\s*([0-9.]+)", constraint)
        assert floor and _version_tuple(floor.group(1)) >= (7, 18, 0), f"{root}: {constraint}"
        assert "< 8.0.0" in constraint
    deploy = (REPO / "docs" / "deploy.md").read_text()
    section = deploy.split("## Provider versions", 1)[1].split("\n## ", 1)[0]
    used = set()
    for path in MODULE.rglob("*.tf"):
        used.update(t for t, _ in blocks(load_hcl(path), "resource"))
        used.update(f"data.{t}" for t, _ in blocks(load_hcl(path), "data"))
    used.discard("terraform_data")
    missing = sorted(t for t in used if f"`{t.removeprefix('data.')}`" not in section)
    assert not missing, f"docs/deploy.md does not list these as checked against 7.0: {missing}"


def test_crema_is_the_preferred_release() -> None:
    """CREMA's README prefers 1.2; 1.0 is a legacy release with a documented memory leak."""
    for root in (REPO / "terraform", MODULE):
        image = blocks(load_hcl(root / "variables.tf"), "variable")["crema_image"]["default"]
        repository, _, tag = image.rpartition(":")
        assert repository.endswith("/crema-v1/autoscaler")
        assert tag == "1.2", image


def test_subscription_is_named_through_its_replacement_guard() -> None:
    resources = blocks(load_hcl(MODULE / "pubsub.tf"), "resource")
    sub = resources[("google_pubsub_subscription", "events")]
    assert "module.subscription_guard" in sub["name"]
    guard = blocks(load_hcl(MODULE / "pubsub.tf"), "module")["subscription_guard"]
    identity = str(guard["identity"])
    for name in ("var.pubsub_topic_name", "var.subscription_name", "var.message_ordering"):
        assert name in identity
    assert guard["allow"] == "${var.allow_subscription_replacement}"
    default = blocks(load_hcl(MODULE / "variables.tf"), "variable")[
        "allow_subscription_replacement"
    ]["default"]
    assert default is False


def test_replacement_guard_refuses_a_replacement_and_lets_teardown_through(tmp_path) -> None:
    tf = offline_terraform(tmp_path, "the replacement guard")
    guard = MODULE / "replacement-guard"
    (tmp_path / "main.tf").write_text(
        f'module "g" {{\n  source = "{guard}"\n  identity = {{ name = var.name }}\n'
        '  allow = var.allow\n  what = "the subscription"\n}\n'
        'variable "name" {\n  type = string\n}\n'
        'variable "allow" {\n  type = bool\n  default = false\n}\n'
    )
    steps = [
        (("init",), 0),
        (("apply", "-auto-approve", "-var=name=a"), 0),
        (("apply", "-auto-approve", "-var=name=a"), 0),  # no change: passes
        (("plan", "-var=name=b"), 1),  # a replacement: refused
        (("apply", "-auto-approve", "-var=name=b", "-var=allow=true"), 0),
        (("apply", "-auto-approve", "-var=name=b"), 0),  # allowed once, then quiet again
        (("plan", "-var=name=c"), 1),
        (("destroy", "-auto-approve", "-var=name=c"), 0),  # teardown is never blocked
    ]
    for args, expected in steps:
        proc = tf(*args)
        assert proc.returncode == expected, (
            f"terraform {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        )
        if expected == 1:
            said = " ".join((proc.stdout + proc.stderr).split())
            assert "Its undelivered messages would be lost" in said


# ---------------------------------------------------------------------------
# Metrics: the dashboard reads what the exporter writes
# ---------------------------------------------------------------------------


def _render(name: str, worker_pool_name: str) -> dict[str, Any]:
    values = {
        "project_id": "p",
        "region": "us-central1",
        "worker_pool_name": worker_pool_name,
        "subscription_name": "sub",
        "dead_letter_subscription_name": "sub-dl",
        "dead_letter_topic_name": "top-dl",
        "worker_errors_metric": "errs",
        "dashboard_display_name": "dash",
        "backlog_threshold": "10",
        "oldest_unacked_threshold": "60",
    }
    return json.loads(Template((MODULE / "monitoring" / name).read_text()).substitute(values))


def _exported_series(instance: str) -> list[dict[str, Any]]:
    from behavioral_analytics.exporters.cloud_monitoring import build_time_series
    from behavioral_analytics.telemetry import LATENCY_BUCKETS, MetricsSnapshot

    snapshot = MetricsSnapshot(
        processed_by_type={"page_view": 3},
        rejected_by_reason={"not_json": 1},
        duplicates=1,
        batches=2,
        commit_failures=0,
        dead_letters_drained=0,
        commit_latency_buckets=[1] * (len(LATENCY_BUCKETS) + 1),
        commit_latency_sum_s=0.5,
        commit_latency_count=len(LATENCY_BUCKETS) + 1,
        lag_s=1.5,
    )
    return build_time_series(snapshot, instance, 0.0, 60.0)


def test_dashboard_reads_only_metrics_and_labels_the_exporter_writes() -> None:
    pytest.importorskip("google.cloud.monitoring_v3", reason="the gcp extra is not installed")
    from behavioral_analytics.exporters.cloud_monitoring import CloudMonitoringExporter

    written: dict[str, set[str]] = defaultdict(set)
    for series in _exported_series("i-1"):
        written[series["metric"]["type"]].update(series["metric"]["labels"])
    exporter = CloudMonitoringExporter("p", client=object(), job="wp", location="us-central1")
    resource = exporter.resource

    dashboard = _render("dashboard.json.tftpl", "wp")
    problems = []
    for tile in dashboard["mosaicLayout"]["tiles"]:
        for dataset in tile["widget"]["xyChart"]["dataSets"]:
            query = dataset["timeSeriesQuery"]["timeSeriesFilter"]
            metric = re.search(r'metric\.type="([^"]+)"', query["filter"]).group(1)
            if not metric.startswith("custom.googleapis.com/"):
                continue
            if metric not in written:
                problems.append(f"{tile['widget']['title']}: {metric} is never written")
                continue
            if f'resource.type="{resource["type"]}"' not in query["filter"]:
                problems.append(f"{metric}: resource type is not {resource['type']}")
            for label, value in re.findall(
                r'resource\.label\."([^"]+)"="([^"]+)"', query["filter"]
            ):
                if resource["labels"].get(label) != value:
                    problems.append(f"{metric}: resource.label.{label}={value!r} never written")
            for field in query["aggregation"].get("groupByFields", []):
                label = re.fullmatch(r'metric\.label\."([^"]+)"', field)
                if label and label.group(1) not in written[metric]:
                    problems.append(f"{metric}: grouped by metric label {label.group(1)}")
    assert not problems, "\n".join(problems)


def _worker_env_keys() -> dict[str, str]:
    text = (MODULE / "main.tf").read_text()
    env: dict[str, str] = {}
    for block in ("common_env", "worker_env"):
        body = text.split(f"{block} =", 1)[1].split("\n  }", 1)[0]
        env.update(re.findall(r"^\s+([A-Z_]+)\s+=\s+(\S+)", body, re.MULTILINE))
    return env


@pytest.mark.parametrize("pool", ["behavioral-processor", "clicks-eu"])
def test_worker_pool_processes_label_their_metrics_with_the_dashboards_job(pool: str) -> None:
    """Worker pools inject CLOUD_RUN_WORKER_POOL (not K_SERVICE); Terraform also sets
    WORKER_POOL_NAME and REGION. Either way the job must be the pool's name."""
    from behavioral_analytics.exporters.cloud_monitoring import labels_from_env

    env_expressions = _worker_env_keys()
    assert env_expressions.get("WORKER_POOL_NAME") == "var.worker_pool_name"
    assert env_expressions.get("REGION") == "var.region"
    terraform_env = {"WORKER_POOL_NAME": pool, "REGION": "europe-west1"}
    for env in (terraform_env, {"CLOUD_RUN_WORKER_POOL": pool}):
        _location, job = labels_from_env(env)
        dashboard = json.dumps(_render("dashboard.json.tftpl", pool))
        assert f'resource.label.\\"job\\"=\\"{job}\\"' in dashboard, (env, job)
    assert labels_from_env(terraform_env)[0] == "europe-west1"
    deploy = (REPO / "scripts" / "deploy.sh").read_text()
    assert "WORKER_POOL_NAME=$WORKER_POOL_NAME" in deploy and "REGION=$REGION" in deploy


def test_instances_of_one_pool_report_distinct_series() -> None:
    from behavioral_analytics.exporters.cloud_monitoring import instance_id

    # Two Cloud Run instances: both "localhost", both PID 1; their metadata ids differ.
    assert instance_id("00f1a2", pid=1) != instance_id("00f1a3", pid=1)
    assert instance_id(pid=1) != instance_id("00f1a2", pid=1)
    assert instance_id(pid=1) != instance_id(pid=2)


# ---------------------------------------------------------------------------
# What the code does against the emulators, recorded
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the emulator-backed tests that exercise each production process, recording."""
    out = tmp_path_factory.mktemp("rpc") / "record.json"
    command = [sys.executable, "-m", "pytest", "-p", "tests.gcp.rpc_record"]
    command += ["-p", "no:cacheprovider", "-q", "-rs", *RECORDED_TESTS]
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, BA_RPC_RECORD=str(out)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    tail = (proc.stdout + proc.stderr)[-3000:]
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if " passed" not in summary and "skipped" in summary:
        pytest.skip(f"RPC RECORDING NOT RUN (emulator tests skipped): {tail}")
    assert proc.returncode == 0, f"the recorded emulator tests failed:\n{tail}"
    record = json.loads(out.read_text())["roles"]
    for role in ("worker", "api"):
        assert record.get(role, {}).get("methods"), f"nothing recorded for the {role}: {tail}"
    return record


def _granted_roles() -> dict[str, set[str]]:
    """Roles Terraform grants each service account (project- and resource-level)."""
    module_locals = _locals(MODULE / "main.tf")
    granted: dict[str, set[str]] = {"worker": set(), "api": set()}
    for path in MODULE.glob("*.tf"):
        for (kind, _name), body in blocks(load_hcl(path), "resource").items():
            if not kind.endswith("_iam_member"):
                continue
            member = str(body.get("member", ""))
            role_of = "worker" if "service_account.worker" in member else None
            role_of = "api" if "service_account.api" in member else role_of
            if role_of is None:
                continue
            role = str(body["role"])
            if role.startswith("${each"):
                source = re.search(r"local\.(\w+)", str(body["for_each"])).group(1)
                granted[role_of].update(re.findall(r"roles/[\w.]+", module_locals[source]))
            else:
                granted[role_of].add(role)
    return granted


@pytest.mark.slow
def test_every_call_of_each_process_is_allowed_by_its_roles(recording: dict[str, Any]) -> None:
    granted = _granted_roles()
    problems = []
    for role in ("worker", "api"):
        allowed: set[str] = set()
        for name in granted[role]:
            if name not in ROLE_PERMISSIONS:
                problems.append(f"{role}: role {name} is not in tests/deploy/iam_permissions.py")
            allowed |= ROLE_PERMISSIONS.get(name, frozenset())
        needed: dict[str, set[str]] = defaultdict(set)
        for method in recording[role]["methods"]:
            if method not in METHOD_PERMISSIONS:
                problems.append(f"{role}: no permission known for {method}: add it, with source")
                continue
            for permission in METHOD_PERMISSIONS[method]:
                needed[permission].add(method)
        for collection, _field, _kind, precondition in recording[role]["writes"]:
            for permission in WRITE_PERMISSIONS[precondition]:
                needed[permission].add(f"Commit ({precondition} in {collection})")
        for permission, why in sorted(needed.items()):
            if permission not in allowed:
                problems.append(
                    f"{role} ({sorted(granted[role])}) lacks {permission}, needed by {sorted(why)}"
                )
    assert not problems, "\n".join(problems)


def _field_overrides() -> list[dict[str, Any]]:
    return json.loads((REPO / "firestore.indexes.json").read_text())["fieldOverrides"]


def _exempt_fields(overrides: list[dict[str, Any]], collection: str) -> set[str]:
    """The `collection` fields whose single-field indexes `overrides` turns off."""
    return {
        o["fieldPath"]
        for o in overrides
        if o["collectionGroup"] == collection and o.get("indexes") == []
    }


# Fields the code does not write yet, with the change that will write them. An entry here
# turns its failure into an expected one; once the code writes the field the test fails
# again until the entry is removed.
PENDING_CODE_CHANGES: dict[tuple[str, str], str] = {}


@pytest.mark.slow
def test_every_ttl_policy_is_on_a_timestamp_the_code_writes(recording: dict[str, Any]) -> None:
    written = {
        (collection, field): kind
        for role in recording.values()
        for collection, field, kind, _ in role["writes"]
    }
    failing = {}
    for override in _field_overrides():
        if not override.get("ttl"):
            continue
        key = (override["collectionGroup"], override["fieldPath"])
        if written.get(key) != "timestamp_value":
            failing[key] = f"TTL on {key[0]}.{key[1]}, which the code writes as {written.get(key)}"
    obsolete = [k for k in PENDING_CODE_CHANGES if k not in failing]
    assert not obsolete, f"now written by the code: remove from PENDING_CODE_CHANGES: {obsolete}"
    unexpected = {k: v for k, v in failing.items() if k not in PENDING_CODE_CHANGES}
    assert not unexpected, "\n".join(unexpected.values())
    if failing:
        pytest.xfail("; ".join(PENDING_CODE_CHANGES[k] for k in failing))


@pytest.mark.slow
def test_every_expiring_collection_has_a_ttl_and_no_index_on_it(recording: dict[str, Any]) -> None:
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in _field_overrides()}
    expiring = {
        collection
        for role in recording.values()
        for collection, field, kind, _ in role["writes"]
        if field == "expire_at" and kind == "timestamp_value"
    }
    assert "user_events" in expiring
    problems = []
    for collection in sorted(expiring):
        override = overrides.get((collection, "expire_at"))
        if override is None or not override.get("ttl"):
            problems.append(f"{collection}.expire_at is written but has no TTL policy")
        elif override.get("indexes") != []:
            problems.append(f"{collection}.expire_at keeps its single-field index (hot-spots)")
    assert not problems, "\n".join(problems)


# Fields keyed or filled by breakdown values (page paths, referrers, property values: up to K
# per document, a dozen per person and day), and an hour's minutes (60 maps of counts per
# type), read by document id and never queried: each has its single-field indexes exempted,
# or every value would be an index entry.
VALUE_FIELDS = {
    ("analytics_aggregates", "minutes"),
    ("analytics_aggregates", "breakdowns"),
    ("breakdowns", "admitted"),
    ("breakdowns", "events"),
    ("breakdowns", "users"),
    ("breakdowns", "sessions"),
    ("analytics_aggregates", "breakdown_days"),
    ("analytics_aggregates", "session_values"),
}
# Sessions per value (and each session's values in the profile) are written by commits that
# count sessions in breakdowns, which the recorded run may not make; and the breakdowns
# collection's documents (a period's counts past its bucket's transforms, a set outgrowing its
# bucket, `forget`'s counts, a store written before breakdowns moved into the buckets) by
# commits it does not make either. Exempted all the same.
MAYBE_UNWRITTEN = {
    ("breakdowns", "admitted"),
    ("breakdowns", "events"),
    ("breakdowns", "users"),
    ("breakdowns", "sessions"),
    ("analytics_aggregates", "session_values"),
}
BREAKDOWN_LABELS = {"kind", "granularity", "period", "dimension", "last_updated"}


def test_fields_keyed_by_breakdown_values_are_exempt_from_indexing(
    recording: dict[str, Any],
) -> None:
    written = {
        (collection, field)
        for role in recording.values()
        for collection, field, _kind, _ in role["writes"]
    }
    missing = VALUE_FIELDS - MAYBE_UNWRITTEN - written
    assert not missing, f"not written by the recorded run: {missing}"
    unclassified = {
        field
        for collection, field in written
        if collection == "breakdowns" and (collection, field) not in VALUE_FIELDS
    } - BREAKDOWN_LABELS
    assert not unclassified, f"breakdowns fields neither labels nor values: {unclassified}"
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in _field_overrides()}
    indexed = [key for key in sorted(VALUE_FIELDS) if overrides.get(key, {}).get("indexes") != []]
    assert not indexed, f"value-keyed fields keep their single-field indexes: {indexed}"


# The fields a query filters or orders on, per collection holding one document per event or
# per person: raw events (people, forget, groups, the timeline and per-type pages, retention,
# identity's anonymous events) and aggregates (retention's cohorts, the active-user count,
# forget's linked users), and the buckets' `period`, which the recipe's readers query
# (`where('period', '>=', …)`, docs/gcp.md). Every other field they hold has its single-field
# indexes exempted:
# each indexed field costs an ascending and a descending index entry per document (a map, one
# pair per key), billed as storage, for queries nobody makes.
QUERIED_FIELDS = {
    "user_events": {"person", "who", "user_id", "anonymous_id", "event_type", "timestamp"},
    "analytics_aggregates": {"first_seen", "last_activity", "linked_users", "period"},
}


@pytest.mark.parametrize("collection", sorted(QUERIED_FIELDS))
def test_fields_no_query_names_are_exempt_from_indexing(
    recording: dict[str, Any], collection: str
) -> None:
    written = {
        field
        for role in recording.values()
        for written_to, field, _kind, _ in role["writes"]
        if written_to == collection and field
    }
    queried = {
        field
        for role in recording.values()
        for query in role["queries"]
        if query["collections"][0][0] == collection
        for field, _ in [*query["filters"], *query["orders"]]
    } - {"__name__"}
    listed = QUERIED_FIELDS[collection]
    assert queried <= listed, f"queries name {collection} fields not listed: {queried - listed}"
    assert len(written) > len(listed), f"the recorded run wrote few {collection} fields: {written}"
    exempt = _exempt_fields(_field_overrides(), collection)
    indexed = sorted(written - listed - exempt)
    assert not indexed, f"{collection} fields no query names keep their indexes: {indexed}"
    assert not (exempt & (listed - {"timestamp"})), f"a queried {collection} field is exempted"


def _query_served(query: dict[str, Any], spec: dict[str, Any]) -> str | None:
    """Why production Firestore would refuse this query, or None when an index serves it."""
    [(collection, all_descendants)] = query["collections"]
    scope = "COLLECTION_GROUP" if all_descendants else "COLLECTION"
    equality = {f for f, op in query["filters"] if op in ("EQUAL", "UNARY")}
    others = {f for f, op in query["filters"] if op not in ("EQUAL", "UNARY")}
    orders = [(f, d) for f, d in query["orders"] if f != "__name__"]
    fields = equality | others | {f for f, _ in orders}
    exempt = _exempt_fields(spec["fieldOverrides"], collection)
    if not others and not orders and scope == "COLLECTION":
        blocked = sorted(equality & exempt)  # equality filters merge single-field indexes
        return f"equality on unindexed {blocked}" if blocked else None
    if len(fields) == 1 and scope == "COLLECTION":
        [field] = fields
        return f"single-field index on {field} is exempted" if field in exempt else None
    for index in spec["indexes"]:
        if index["collectionGroup"] != collection or index["queryScope"] != scope:
            continue
        paths = {f["fieldPath"]: f.get("order") for f in index["fields"]}
        if set(paths) - {"__name__"} != fields:
            continue
        if all(paths.get(f) == d for f, d in orders):
            return None
    return f"no composite index on {collection} ({scope}) for {sorted(fields)} ordered {orders}"


@pytest.mark.slow
def test_every_query_the_code_runs_has_an_index_in_production(recording: dict[str, Any]) -> None:
    spec = json.loads((REPO / "firestore.indexes.json").read_text())
    problems = []
    seen = 0
    for role, recorded in recording.items():
        for query in recorded["queries"]:
            seen += 1
            why = _query_served(query, spec)
            if why:
                problems.append(f"{role}: {json.dumps(query)}: {why}")
    assert not problems, "\n".join(problems)
    assert seen or not any(r["queries"] for r in recording.values())


def test_the_recipes_period_query_has_an_index_in_production() -> None:
    """docs/gcp.md gives the recipe's readers `collection('analytics_aggregates')
    .where('period', '>=', day)`; with `period` exempted production Firestore refused it
    (the emulator, which needs no index, took it: tests/gcp/test_pipeline.py)."""
    spec = json.loads((REPO / "firestore.indexes.json").read_text())
    query = {
        "collections": [["analytics_aggregates", False]],
        "filters": [["period", "GREATER_THAN_OR_EQUAL"]],
        "orders": [],
    }
    assert _query_served(query, spec) is None
