"""scripts/: shellcheck, and the command sequences of deploy.sh / destroy.sh run against a
gcloud stand-in, with every recorded command and flag checked against the real gcloud."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
READS = {"describe", "list", "auth", "get-value", "get-iam-policy"}


def mutations(calls):
    """Invocations that change something (not describe/list/queries)."""
    out = []
    for args in calls:
        words = [a for a in args if not a.startswith("-")]
        if any(w in READS for w in words[:5]) or words[:2] == ["projects", "describe"]:
            continue
        out.append(args)
    return out


def joined(calls):
    return [" ".join(a for a in args) for args in calls]


def index_of(lines, prefix, start=0):
    for i in range(start, len(lines)):
        if lines[i].startswith(prefix):
            return i
    raise AssertionError(
        f"no command starting with {prefix!r} after position {start}:\n" + "\n".join(lines)
    )


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck): scripts not linted")
    proc = subprocess.run(
        [shellcheck, "-x", *[p.name for p in SCRIPTS]],
        cwd=REPO / "scripts",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def deployed(gc, recorded_calls):
    """Runs deploy.sh on the stand-in: its run, and the commands that changed something."""
    proc = gc.run("deploy.sh")
    assert proc.returncode == 0, proc.stderr
    calls = gc.calls()
    recorded_calls.extend(calls)
    return proc, joined(mutations(calls))


@pytest.mark.slow
def test_fresh_deploy_creates_everything_in_order(standin, recorded_calls):
    gc = standin("nothing")
    _, lines = deployed(gc, recorded_calls)
    order = [
        "services enable",
        "artifacts repositories create behavioral-analytics",
        "iam service-accounts create analytics-processor",
        "iam service-accounts create analytics-api",
        "projects add-iam-policy-binding demo-project",
        "firestore databases create",
        "firestore indexes composite create",
        "firestore indexes composite create",
        "firestore backups schedules create",
        "firestore indexes fields update expire_at",
        "firestore fields ttls update expire_at",
        "pubsub topics create user-events",
        "pubsub topics create user-events-dead-letter",
        "pubsub topics add-iam-policy-binding user-events-dead-letter",
        "pubsub subscriptions create analytics-processor-dead-letter",
        "pubsub subscriptions create analytics-processor",
        "pubsub subscriptions add-iam-policy-binding analytics-processor",
        "builds submit",
        "beta run worker-pools deploy behavioral-processor",
        "secrets create behavioral-analytics-write-keys",
        "secrets create behavioral-analytics-read-keys",
        "run deploy behavioral-analytics-api",
        "logging metrics create",
        "monitoring dashboards create",
        "alpha monitoring policies create",
    ]
    position = 0
    for prefix in order:
        position = index_of(lines, prefix, position) + 1
    assert sum(line.startswith("alpha monitoring policies create") for line in lines) == 4
    assert sum(line.startswith("firestore indexes composite create") for line in lines) == 5
    assert sum(line.startswith("firestore fields ttls update") for line in lines) == 3

    creates = {line.split(" --")[0]: line for line in lines}
    sub = next(
        line
        for line in lines
        if line.startswith("pubsub subscriptions create analytics-processor ")
    )
    for flag in (
        "--topic=user-events",
        "--ack-deadline=60",
        "--message-retention-duration=7d",
        "--dead-letter-topic=user-events-dead-letter",
        "--max-delivery-attempts=5",
        "--min-retry-delay=10s",
        "--max-retry-delay=600s",
        "--project=demo-project",
    ):
        assert flag in sub.split(), flag
    assert "--enable-message-ordering" not in sub
    assert "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com" in " ".join(lines)
    build = next(line for line in lines if line.startswith("builds submit"))
    assert f"--config={REPO}/cloudbuild.yaml" in build.split()
    assert (
        "--substitutions=_IMAGE=us-central1-docker.pkg.dev/demo-project/behavioral-analytics/"
        "processor:latest" in build.split()
    )
    pool = next(line for line in lines if line.startswith("beta run worker-pools deploy"))
    for flag in (
        "--region=us-central1",
        "--scaling=1",
        "--cpu=1",
        "--memory=1Gi",
        "--service-account=analytics-processor@demo-project.iam.gserviceaccount.com",
    ):
        assert flag in pool.split(), flag
    assert "BA_BACKEND=gcp" in pool and "PUBSUB_SUBSCRIPTION=analytics-processor" in pool
    # The exporter's labels: the dashboard filters on the pool's name.
    assert "WORKER_POOL_NAME=behavioral-processor" in pool and "REGION=us-central1" in pool
    api = next(line for line in lines if line.startswith("run deploy"))
    assert "--command=behavioral-analytics" in api and "--args=api" in api
    assert "BA_WRITE_KEYS=behavioral-analytics-write-keys:latest" in api
    # Public without an allUsers binding (refused under domain-restricted sharing).
    assert "--no-invoker-iam-check" in api.split() and "--allow-unauthenticated" not in api
    api_sa = "serviceAccount:analytics-api@demo-project.iam.gserviceaccount.com"
    api_roles = {
        line.split("--role=")[1].split()[0]
        for line in lines
        if f"--member={api_sa}" in line.split() and "--role=" in line
    }
    # The collector writes dead letters; /readyz reads the topic.
    assert {"roles/datastore.user", "roles/pubsub.publisher", "roles/pubsub.viewer"} <= api_roles
    assert "roles/datastore.viewer" not in api_roles
    assert "PROJECT_NUMBER" not in " ".join(lines)
    assert creates  # keep the mapping for debugging output


@pytest.mark.slow
def test_rerun_skips_what_exists(standin, recorded_calls):
    gc = standin("everything")
    proc, lines = deployed(gc, recorded_calls)
    for line in lines:
        words = line.split()
        assert not {"create", "deploy", "submit", "enable"} & set(words[:5]), (
            f"re-run created: {line}"
        )
        assert "ttls" not in words and "fields update" not in line, (
            f"re-run changed a field: {line}"
        )
    assert "exists, skipped" in proc.stderr
    # What remains are idempotent IAM bindings.
    assert all("add-iam-policy-binding" in line for line in lines)


@pytest.mark.slow
def test_rerun_undoes_what_an_earlier_version_set(standin, recorded_calls):
    """Earlier versions exempted the buckets' `period` from indexing (the recipe's readers'
    query was refused) and gave the API's account `monitoring.metricWriter`."""
    gc = standin("everything")
    gc.state.write_text(
        json.dumps({"exempted analytics_aggregates/period": True, "api metricWriter": True})
    )
    _, lines = deployed(gc, recorded_calls)
    undone = [
        ("firestore indexes fields update period", "--collection-group=analytics_aggregates"),
        ("projects remove-iam-policy-binding", "--role=roles/monitoring.metricWriter"),
    ]
    for start, flag in undone:
        assert any(line.startswith(start) and flag in line for line in lines), (start, lines)
    assert any("--clear-exemption" in line for line in lines)
    assert any("analytics-api@" in line for line in lines if "remove-iam" in line)
    gc.reset_log()
    assert gc.run("deploy.sh").returncode == 0
    again = joined(mutations(gc.calls()))
    assert not [line for line in again if "clear-exemption" in line or "remove-iam" in line]


@pytest.mark.slow
def test_update_rebuilds_and_redeploys(standin, recorded_calls):
    gc = standin("everything")
    proc = gc.run("deploy.sh", "--update")
    assert proc.returncode == 0, proc.stderr
    recorded_calls.extend(gc.calls())
    lines = joined(mutations(gc.calls()))
    index_of(lines, "builds submit")
    index_of(lines, "beta run worker-pools deploy")
    index_of(lines, "run deploy")


@pytest.mark.slow
def test_dry_run_prints_every_command_and_runs_none(standin):
    gc = standin("nothing")
    proc = gc.run("deploy.sh", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert gc.calls() == [], "--dry-run must not run gcloud"
    printed = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ gcloud ")]
    for prefix in (
        "gcloud services enable",
        "gcloud builds submit",
        "gcloud beta run worker-pools deploy",
        "gcloud firestore indexes composite create",
        "gcloud pubsub subscriptions create",
        "gcloud alpha monitoring policies create",
    ):
        assert any(line.startswith(prefix) for line in printed), prefix
    proc = gc.run("destroy.sh", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert gc.calls() == []
    assert "gcloud beta run worker-pools delete behavioral-processor" in proc.stdout


@pytest.mark.slow
def test_seed_environment_variables_are_honoured(standin):
    gc = standin("nothing")
    proc = gc.run(
        "deploy.sh",
        REGION="europe-west1",
        WORKER_POOL_NAME="wp",
        FIRESTORE_DATABASE="analytics-db",
        PUBSUB_TOPIC="clicks",
        ZONE="europe-west1-b",
    )
    assert proc.returncode == 0, proc.stderr
    text = "\n".join(joined(gc.calls()))
    assert (
        "beta run worker-pools deploy wp --image=europe-west1-docker.pkg.dev/demo-project/" in text
    )
    assert "--database=analytics-db" in text
    assert (
        "pubsub topics create clicks " in text
        and "pubsub topics create clicks-dead-letter " in text
    )
    assert "--location=europe-west1" in text


def test_destroy_deletes_everything_and_verifies(standin, recorded_calls):
    gc = standin("everything")
    proc = gc.run("destroy.sh", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = gc.calls()
    recorded_calls.extend(calls)
    lines = joined(mutations(calls))
    position = 0
    for prefix in (
        "run services delete behavioral-analytics-api",
        "beta run worker-pools delete behavioral-processor",
        "pubsub subscriptions delete analytics-processor",
        "pubsub topics delete user-events",
        "alpha monitoring policies delete",
        "monitoring dashboards delete",
        "logging metrics delete",
        "secrets delete",
        "projects remove-iam-policy-binding",
        "iam service-accounts delete analytics-processor@demo-project.iam.gserviceaccount.com",
        "firestore databases update --database=behavioral-analytics --no-delete-protection",
        "firestore databases delete --database=behavioral-analytics",
        "artifacts repositories delete behavioral-analytics",
    ):
        position = index_of(lines, prefix, position) + 1
    assert "everything is gone" in proc.stderr
    # The verification ran describes after the deletes.
    last_delete = max(i for i, c in enumerate(calls) if "delete" in c)
    assert any("describe" in c for c in calls[last_delete + 1 :])


def test_destroy_reports_what_survives(standin):
    gc = standin("everything")
    # A gcloud whose deletes do nothing: the verification must catch it.
    script = gc.dir / "gcloud"
    script.write_text(script.read_text().replace('mark(key, w != "delete")', "mark(key, True)"))
    proc = gc.run("destroy.sh", "--yes")
    assert proc.returncode == 1
    assert "still present after destroy" in proc.stderr
    assert "worker pool behavioral-processor" in proc.stderr


def test_destroy_of_nothing_deletes_nothing(standin):
    gc = standin("nothing")
    proc = gc.run("destroy.sh", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in gc.calls() if "delete" in c]


def test_destroy_asks_before_deleting_data(standin):
    gc = standin("everything")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "destroy.sh")],
        env=gc.env(),
        input="wrong\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "nothing deleted" in proc.stderr
    assert not [c for c in gc.calls() if "delete" in c]


@pytest.mark.parametrize("script", ["deploy.sh", "destroy.sh", "smoke_test.sh"])
def test_missing_project_id_is_a_clear_error(standin, script):
    gc = standin("nothing")
    env = gc.env()
    env.pop("PROJECT_ID")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "PROJECT_ID is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_gcloud_is_a_clear_error(standin, tmp_path):
    gc = standin("nothing")
    # A PATH with every usual tool but gcloud.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            target = bin_dir / entry
            if entry != "gcloud" and not target.exists():
                target.symlink_to(os.path.join(directory, entry))
    python_dir = Path(shutil.which("python3") or "/usr/bin/python3").parent
    env = gc.env(PATH=f"{bin_dir}{os.pathsep}{python_dir}")
    if shutil.which("gcloud", path=env["PATH"]):
        pytest.skip("cannot build a PATH without gcloud here")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "deploy.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "gcloud is not installed" in proc.stderr


def test_unauthenticated_gcloud_is_a_clear_error(standin):
    gc = standin("noauth")
    proc = gc.run("deploy.sh")
    assert proc.returncode == 2
    assert "gcloud is not authenticated" in proc.stderr
    assert [c[:2] for c in gc.calls()] == [["auth", "list"]]


@pytest.mark.slow
def test_hashed_fields_reach_the_worker_with_a_key_made_once(standin, recorded_calls):
    gc = standin("nothing")
    fields = "email,context.traits.email"
    proc = gc.run("deploy.sh", HASHED_FIELDS=fields)
    assert proc.returncode == 0, proc.stderr
    calls = gc.calls()
    recorded_calls.extend(calls)
    lines = joined(mutations(calls))
    position = index_of(lines, "secrets create behavioral-analytics-hash-salt")
    grant = lines[index_of(lines, "secrets add-iam-policy-binding behavioral-analytics-hash-salt")]
    assert "--member=serviceAccount:analytics-processor@demo-project.iam.gserviceaccount.com" in (
        grant.split()
    )
    assert "--role=roles/secretmanager.secretAccessor" in grant.split()
    index_of(lines, "beta run worker-pools deploy", position)  # after the key is made
    pool = next(c for c in calls if "worker-pools" in c and "deploy" in c)
    assert "--set-secrets=BA_HASH_SALT=behavioral-analytics-hash-salt:latest" in pool
    env = next(a for a in pool if a.startswith("--set-env-vars="))
    delimiter = env[len("--set-env-vars=") :][1]  # gcloud's ^DELIM^ escaping
    pairs = dict(p.split("=", 1) for p in env.split("^", 2)[2].split(delimiter))
    assert pairs["BA_HASHED_FIELDS"] == fields
    assert pairs["BA_BACKEND"] == "gcp" and pairs["BA_MAX_DELIVERY_ATTEMPTS"] == "5"

    again = standin("everything").run("deploy.sh", HASHED_FIELDS=fields)
    assert again.returncode == 0, again.stderr
    assert "secret behavioral-analytics-hash-salt (kept" in again.stderr

    wrong = standin("nothing").run("deploy.sh", HASHED_FIELDS="email, phone")
    assert wrong.returncode == 2
    assert "HASHED_FIELDS=email, phone: give comma-separated property paths" in wrong.stderr


@pytest.mark.slow
def test_recorded_commands_and_flags_exist_in_the_real_gcloud(real_gcloud, recorded_calls):
    if not recorded_calls:
        pytest.skip(
            "no recorded calls: run the whole module (the deploy/destroy tests record them)"
        )
    paths = {}
    for args in recorded_calls:
        path = real_gcloud.command_path(args)
        paths.setdefault(path, set()).update(a for a in args if a.startswith("--"))
    real_gcloud.prefetch(paths)
    problems = []
    for path, flags in sorted(paths.items()):
        if not real_gcloud.is_command(path):
            problems.append(f"gcloud {' '.join(path)}: not a gcloud command")
            continue
        for flag in sorted(flags):
            if not real_gcloud.flag_documented(path, flag):
                problems.append(
                    f"gcloud {' '.join(path)}: flag {flag.split('=')[0]} is not in its --help"
                )
    assert len(paths) >= 30
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_worker_is_deployed_once_the_indexes_are_ready(standin):
    gc = standin("nothing")
    proc = gc.run("deploy.sh")
    assert proc.returncode == 0, proc.stderr
    lines = joined(gc.calls())
    last_create = max(i for i, line in enumerate(lines) if "composite create" in line)
    pool = index_of(lines, "beta run worker-pools deploy")
    assert any("composite list" in line for line in lines[last_create:pool])


@pytest.mark.slow
def test_worker_deploy_waits_while_indexes_build(standin):
    gc = standin("nothing")
    # A gcloud whose indexes stay CREATING: the script must stop at its deadline, not deploy.
    script = gc.dir / "gcloud"
    script.write_text(script.read_text().replace('"state": "READY"', '"state": "CREATING"'))
    proc = gc.run("deploy.sh", INDEX_WAIT_SECONDS="0")
    assert proc.returncode == 2
    assert "still building" in proc.stderr
    assert not [c for c in gc.calls() if "worker-pools" in c]


@pytest.mark.slow
def test_dry_run_says_nothing_ran_and_keeps_what_it_names(standin):
    gc = standin("nothing")
    proc = gc.run("deploy.sh", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "nothing was created or changed" in proc.stderr
    assert "==> done" not in proc.stderr
    assert "PROJECT_NUMBER below is the project's number" in proc.stderr
    named = {
        word.split("=", 1)[1]
        for line in proc.stdout.splitlines()
        for word in line.split()
        if word.startswith(("--config-from-file=", "--policy-from-file="))
    }
    assert named
    missing = [path for path in named if not Path(path).exists()]
    for path in named:
        Path(path).unlink(missing_ok=True)
    assert not missing, f"--dry-run printed files it deleted: {missing}"


@pytest.mark.parametrize("script", ["deploy.sh", "destroy.sh", "smoke_test.sh"])
def test_help_prints_the_usage_only(standin, script):
    gc = standin("nothing")
    proc = gc.run(script, "--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert "PROJECT_ID" in text
    header = []
    for line in (REPO / "scripts" / script).read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    assert text.splitlines() == header
    assert "set -euo" not in text and "shellcheck" not in text
