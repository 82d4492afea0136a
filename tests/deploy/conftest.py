"""Fixtures of the deployment tests: repository paths, HCL parsing, a gcloud stand-in,
and the real gcloud's help (cached for the session) where gcloud is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "infrastructure-manager" / "modules" / "behavioral-analytics"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unquote(value):
    """python-hcl2 >= 5 keeps quotes around strings and keys; older versions do not."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {
            unquote(k): unquote(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    return value


def load_hcl(path: Path) -> dict:
    hcl2 = pytest.importorskip(
        "hcl2", reason="python-hcl2 is not installed (pip install python-hcl2)"
    )
    with path.open(encoding="utf-8") as fh:
        return unquote(hcl2.load(fh))


def offline_terraform(directory: Path, what: str):
    """A function running `terraform ARGS -input=false -no-color` in `directory` offline (no
    CLI configuration, no checkpoint call), with its completed process returned; skips the
    test (naming `what` was not run) where terraform is not installed."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip(f"TERRAFORM NOT INSTALLED: {what} was not run")
    env = dict(
        os.environ, TF_IN_AUTOMATION="1", TF_CLI_CONFIG_FILE=os.devnull, CHECKPOINT_DISABLE="1"
    )

    def tf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [terraform, *args, "-input=false", "-no-color"],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return tf


def blocks(parsed: dict, kind: str) -> dict:
    """{name: body} for variable/output/module blocks; {(type, name): body} for resources."""
    out = {}
    for entry in parsed.get(kind, []):
        for name, body in entry.items():
            if kind in ("resource", "data"):
                for rname, rbody in body.items():
                    out[(name, rname)] = rbody
            else:
                out[name] = body
    return out


@pytest.fixture(scope="session")
def module_resources() -> dict:
    resources = {}
    for path in sorted(MODULE.glob("*.tf")):
        resources.update(blocks(load_hcl(path), "resource"))
    return resources


# ---------------------------------------------------------------------------
# gcloud stand-in
# ---------------------------------------------------------------------------

STANDIN = r"""
import hashlib, json, os, sys

LOG = os.environ["STANDIN_LOG"]
STATE = os.environ["STANDIN_STATE"]
SCENARIO = os.environ.get("STANDIN_SCENARIO", "nothing")
INDEXES = os.environ["STANDIN_INDEXES"]
args = sys.argv[1:]
with open(LOG, "a") as fh:
    fh.write(json.dumps(args) + "\n")
if "--data-file=-" in args:
    sys.stdin.read()

state = json.load(open(STATE)) if os.path.exists(STATE) else {}
default = SCENARIO == "everything"
def exists(key): return state.get(key, default)
def mark(key, value):
    state[key] = value
    json.dump(state, open(STATE, "w"))

flags = {}
pos = []
for a in args:
    if a.startswith("--"):
        k, _, v = a.partition("=")
        flags[k] = v
    else:
        pos.append(a)
words = [w for w in pos if w not in ("alpha", "beta")]

def out(text=""):
    if text:
        print(text)
    sys.exit(0)
def missing():
    print("ERROR: NOT_FOUND", file=sys.stderr)
    sys.exit(1)

if words[:2] == ["auth", "list"]:
    out("" if SCENARIO == "noauth" else "tester@example.com")
if words[:2] == ["projects", "describe"]:
    out("123456789012")
if words[:2] == ["services", "list"]:
    out("\n".join(os.environ["STANDIN_APIS"].split(",")) if default else "")
if words[:2] == ["builds", "submit"]:
    tag = flags.get("--tag") or flags["--substitutions"].partition("_IMAGE=")[2].split(",")[0]
    mark("artifacts docker images/" + tag, True); out()
if words[:4] == ["firestore", "backups", "schedules", "list"]:
    out("projects/p/databases/d/backupSchedules/s1" if exists("backup schedule") else "")
if words[:4] == ["firestore", "backups", "schedules", "create"]:
    mark("backup schedule", True); out()
if words[:4] == ["firestore", "indexes", "composite", "create"]:
    configs = [a.split("=", 1)[1] for a in args if a.startswith("--field-config=")]
    fields = []
    for config in configs:
        parts = dict(p.split("=", 1) for p in config.split(","))
        fields.append({"fieldPath": parts["field-path"], "order": parts["order"].upper()})
    created = state.get("created indexes", [])
    created.append({"collectionGroup": flags["--collection-group"], "fields": fields})
    mark("created indexes", created); out()
if words[:4] == ["firestore", "indexes", "composite", "list"]:
    idx = json.load(open(INDEXES))["indexes"] if default else state.get("created indexes", [])
    listed = []
    for n, i in enumerate(idx):
        name = "projects/p/databases/d/collectionGroups/%s/indexes/i%d" % (i["collectionGroup"], n)
        tail = [{"fieldPath": "__name__", "order": "DESCENDING"}]
        listed.append({"name": name, "fields": i["fields"] + tail, "state": "READY"})
    out(json.dumps(listed))
if words[:4] == ["firestore", "indexes", "fields", "describe"]:
    if not default: missing()
    overrides = json.load(open(INDEXES))["fieldOverrides"]
    key = flags["--collection-group"] + "/" + words[4]
    listed = key in {o["collectionGroup"] + "/" + o["fieldPath"] for o in overrides}
    exempt = listed or state.get("exempted " + key, False)
    field = {"indexConfig": {"usesAncestorConfig": not exempt}, "ttlConfig": {"state": "ACTIVE"}}
    out(json.dumps(field))
if words[:4] == ["firestore", "indexes", "fields", "update"] and "--clear-exemption" in flags:
    mark("exempted " + flags["--collection-group"] + "/" + words[4], False); out()
if words[:2] == ["projects", "get-iam-policy"]:
    out("roles/monitoring.metricWriter" if state.get("api metricWriter") else "")
if words[:2] == ["projects", "remove-iam-policy-binding"]:
    mark("api metricWriter", False); out()
if words[:3] in (["monitoring", "dashboards", "list"], ["monitoring", "policies", "list"]):
    kind = " ".join(words[:2])
    display = flags.get("--filter", "").partition("=")[2].strip('"')
    key = kind + "/" + display
    out("projects/p/x/" + display.encode().hex() if exists(key) else "")
if words[:3] == ["monitoring", "dashboards", "create"]:
    data = json.load(open(flags["--config-from-file"]))
    mark("monitoring dashboards/" + data["displayName"], True); out()
if words[:3] == ["monitoring", "policies", "create"]:
    data = json.load(open(flags["--policy-from-file"]))
    mark("monitoring policies/" + data["displayName"], True); out()
if words[:3] in (["monitoring", "dashboards", "delete"], ["monitoring", "policies", "delete"]):
    display = bytes.fromhex(words[3].rsplit("/", 1)[1]).decode()
    mark(" ".join(words[:2]) + "/" + display, False); out()

verbs = ("describe", "create", "delete", "deploy")
for i, w in enumerate(words):
    if w in verbs:
        kind = " ".join(words[:i]) or "?"
        if kind == "run":
            kind = "run services"
        name = words[i + 1] if len(words) > i + 1 else flags.get("--database", "")
        if kind == "firestore databases":
            name = flags.get("--database", "")
        name = name.split("@")[0]
        key = kind + "/" + name
        if w == "describe":
            if exists(key): out("name: " + name)
            missing()
        mark(key, w != "delete")
        out()
out()
"""


class GcloudStandIn:
    def __init__(self, tmp_path: Path, scenario: str):
        self.dir = tmp_path / "standin"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "calls.jsonl"
        self.state = self.dir / "state.json"
        self.scenario = scenario
        script = self.dir / "gcloud"
        script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(STANDIN))
        script.chmod(0o755)
        self.build = tmp_path / "src"
        self.build.mkdir(exist_ok=True)
        (self.build / "Dockerfile").write_text("FROM scratch\n")

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK")}
        env.update(
            PATH=f"{self.dir}{os.pathsep}{env.get('PATH', '')}",
            PROJECT_ID="demo-project",
            STANDIN_LOG=str(self.log),
            STANDIN_STATE=str(self.state),
            STANDIN_SCENARIO=self.scenario,
            STANDIN_INDEXES=str(REPO / "firestore.indexes.json"),
            STANDIN_APIS=",".join(DEPLOY_APIS),
            BUILD_SOURCE=str(self.build),
        )
        for key in ("REGION", "ZONE", "WORKER_POOL_NAME", "FIRESTORE_DATABASE", "PUBSUB_TOPIC"):
            env.pop(key, None)
        env.update(extra)
        return env

    def run(self, script: str, *args: str, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(REPO / "scripts" / script), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset_log(self) -> None:
        if self.log.exists():
            self.log.unlink()


DEPLOY_APIS = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
]


@pytest.fixture
def standin(tmp_path):
    def make(scenario: str) -> GcloudStandIn:
        return GcloudStandIn(tmp_path, scenario)

    return make


# ---------------------------------------------------------------------------
# The real gcloud: command tree and help text (cached for the session)
# ---------------------------------------------------------------------------


class RealGcloud:
    def __init__(self, exe: str, config_dir: Path):
        self.exe = exe
        self.env = dict(
            os.environ,
            CLOUDSDK_CONFIG=str(config_dir),
            CLOUDSDK_CORE_DISABLE_PROMPTS="1",
            # No update check, usage report or metadata-server probe: faster, and offline.
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
            CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
            CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
        )
        self._help: dict[tuple[str, ...], str] = {}
        self._tree = None

    def _sdk_tree(self):
        if self._tree is None:
            sdk = Path(os.path.realpath(self.exe)).parents[1]
            path = sdk / "data" / "cli" / "gcloud_completions.py"
            if not path.exists():
                root = subprocess.run(
                    [self.exe, "info", "--format=value(installation.sdk_root)"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout.strip()
                path = Path(root) / "data" / "cli" / "gcloud_completions.py"
            self._tree = {}
            if path.exists():
                namespace: dict = {}
                exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
                self._tree = namespace["STATIC_COMPLETION_CLI_TREE"]
        return self._tree

    def command_path(self, args: list[str]) -> tuple[str, ...]:
        """The command path (groups and command) that a gcloud invocation names."""
        node = self._sdk_tree()
        path: list[str] = []
        for word in args:
            if word.startswith("-") or not node or word not in node.get("commands", {}):
                break
            path.append(word)
            node = node["commands"][word]
        return tuple(path)

    def help(self, path: tuple[str, ...]) -> str:
        if path not in self._help:
            proc = subprocess.run(
                [self.exe, *path, "--help"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            self._help[path] = ANSI.sub("", proc.stdout) if proc.returncode == 0 else ""
        return self._help[path]

    def prefetch(self, paths) -> None:
        todo = [p for p in set(paths) if p not in self._help]
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            list(pool.map(self.help, todo))

    def is_command(self, path: tuple[str, ...]) -> bool:
        """A runnable command (not a group) whose --help names it."""
        node = self._sdk_tree()
        for word in path:
            node = (node or {}).get("commands", {}).get(word)
        if node is not None and node.get("commands"):
            return False  # a group, not a command
        text = self.help(path)
        return bool(path) and bool(text) and f"gcloud {' '.join(path)} -" in " ".join(text.split())

    def flag_documented(self, path: tuple[str, ...], flag: str) -> bool:
        text = self.help(path)
        name = flag.split("=", 1)[0]
        candidates = {name}
        if name.startswith("--no-"):
            candidates.add("--[no-]" + name[5:])
        else:
            candidates.add("--[no-]" + name[2:])
        return any(re.search(re.escape(c) + r"(?![a-z0-9-])", text) for c in candidates)


@pytest.fixture(scope="session")
def real_gcloud(tmp_path_factory):
    exe = shutil.which("gcloud")
    if exe is None:
        pytest.skip(
            "the real gcloud is not installed: "
            "commands and flags cannot be checked against its --help"
        )
    return RealGcloud(exe, tmp_path_factory.mktemp("gcloud-config"))


@pytest.fixture(scope="session")
def recorded_calls():
    """Every gcloud invocation the stand-in recorded during the session, for flag checks."""
    return []
