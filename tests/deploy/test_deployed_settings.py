"""The environment each deployment path gives the worker and the API, read by the application's
own `Settings`: every `BA_` name is one the code reads, and the settings that only matter in
production (the caller's address behind Cloud Run's front end, browsers' origins, ordering) are
set as the code needs them."""

from __future__ import annotations

import re
from zoneinfo import available_timezones

import pytest

from behavioral_analytics.settings import load_settings, unknown_names

from .conftest import MODULE, REPO, load_hcl
from .test_scripts import joined, mutations
from .test_terraform import strip_expr


def _gcloud_env(value: str) -> dict[str, str]:
    """A `--set-env-vars` value as gcloud reads it: comma-separated, or split on the
    delimiter an `^D^` prefix names (`gcloud topic escaping`)."""
    delimiter = ","
    if value.startswith("^"):
        delimiter, value = value[1:].split("^", 1)
    return dict(item.split("=", 1) for item in value.split(delimiter))


def _flag(line: str, name: str) -> str:
    (value,) = [word.split("=", 1)[1] for word in line.split(" ") if word.startswith(f"{name}=")]
    return value


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> object:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# -- Terraform and Infrastructure Manager (one module) ---------------------------------------


def test_every_name_the_module_sets_is_a_setting() -> None:
    text = "\n".join(path.read_text() for path in sorted(MODULE.glob("*.tf")))
    names = set(re.findall(r"\b(BA_[A-Z0-9_]+)\s*=", text))
    names |= set(re.findall(r'name\s*=\s*"(BA_[A-Z0-9_]+)"', text))
    names |= set(re.findall(r"\{\s*(BA_[A-Z0-9_]+)\s*=", text))
    assert {"BA_ORDERING", "BA_TRUSTED_PROXY_HOPS", "BA_CORS_ORIGINS"} <= names
    assert unknown_names(dict.fromkeys(names, "")) == []


def test_both_services_publish_and_pull_as_the_subscription_is_made() -> None:
    """With `message_ordering` the subscription delivers in order, but only `BA_ORDERING`
    makes the API publish with ordering keys: one variable drives both."""
    env = {k: v for entry in load_hcl(MODULE / "main.tf")["locals"] for k, v in entry.items()}
    assert strip_expr(env["common_env"]["BA_ORDERING"]) == "tostring(var.message_ordering)"
    assert "local.common_env" in str(env["worker_env"])


@pytest.mark.slow
def test_the_api_is_probed_on_its_health_route(module_resources, standin) -> None:
    """A route the API serves without a key; not on the placeholder, which has none."""
    from fastapi.testclient import TestClient

    from behavioral_analytics.api.app import create_app

    service = module_resources[("google_cloud_run_v2_service", "api")]
    dynamic = service["template"][0]["containers"][0]["dynamic"]
    probes = {k: v for block in dynamic for k, v in block.items() if k.endswith("_probe")}
    assert set(probes) == {"startup_probe", "liveness_probe"}
    for probe in probes.values():
        assert "local.runs_placeholder ? [] : [1]" in str(probe["for_each"])
        assert probe["content"][0]["http_get"][0]["path"] == "/healthz"
    _, api = _deploys(standin)
    assert "--startup-probe=httpGet.path=/healthz," in api
    assert "--liveness-probe=httpGet.path=/healthz," in api
    app = create_app(
        load_settings(write_keys="wk", read_keys="rk", backend="local"), _Down(), _Down()
    )
    assert TestClient(app).get("/healthz").status_code == 200


class _Down:
    """A broker or store the health route never touches."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"/healthz used the {name!r} of a port")


def test_the_api_trusts_one_proxy_and_takes_its_origins_from_a_variable(module_resources):
    service = module_resources[("google_cloud_run_v2_service", "api")]
    container = service["template"][0]["containers"][0]
    static = {e["name"]: e["value"] for e in container["env"]}
    assert static["BA_TRUSTED_PROXY_HOPS"] == "1"
    assert static["BA_API_HOST"] == "0.0.0.0"
    dynamic = str(container["dynamic"])
    assert "BA_CORS_ORIGINS" in dynamic and "var.api_cors_origins" in dynamic


# -- deploy.sh -----------------------------------------------------------------------------------


def _deploys(standin, **env: str) -> tuple[str, str]:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", **env)
    assert proc.returncode == 0, proc.stderr
    lines = joined(mutations(gc.calls()))
    pool = next(line for line in lines if line.startswith("beta run worker-pools deploy"))
    api = next(line for line in lines if line.startswith("run deploy"))
    return pool, api


@pytest.mark.slow
def test_the_script_gives_the_code_what_it_reads(standin, monkeypatch) -> None:
    pool, api = _deploys(
        standin,
        CORS_ORIGINS="https://www.example.com,https://shop.example.com:8443",
        MESSAGE_ORDERING="true",
    )
    worker_env = _gcloud_env(_flag(pool, "--set-env-vars"))
    api_env = _gcloud_env(_flag(api, "--set-env-vars"))
    assert unknown_names(worker_env) == [] and unknown_names(api_env) == []
    assert worker_env["BA_ORDERING"] == "true"
    settings = _settings(api_env, monkeypatch)
    assert settings.ordering is True  # type: ignore[attr-defined]
    assert settings.trusted_proxy_hops == 1  # type: ignore[attr-defined]
    assert settings.cors_origins == (  # type: ignore[attr-defined]
        "https://www.example.com,https://shop.example.com:8443"
    )


@pytest.mark.slow
def test_without_origins_the_api_env_stays_comma_separated(standin) -> None:
    _, api = _deploys(standin)
    value = _flag(api, "--set-env-vars")
    assert not value.startswith("^")
    env = _gcloud_env(value)
    assert env["BA_TRUSTED_PROXY_HOPS"] == "1" and "BA_CORS_ORIGINS" not in env
    assert env["BA_ORDERING"] == "false"


@pytest.mark.slow
def test_more_cpu_goes_with_the_memory_it_needs(standin) -> None:
    pool, _ = _deploys(standin, CPU_LIMIT="4", MEMORY_LIMIT="2048Mi")
    assert _flag(pool, "--cpu") == "4" and _flag(pool, "--memory") == "2048Mi"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CORS_ORIGINS", "www.example.com"),
        ("CORS_ORIGINS", "https://www.example.com/app"),
        ("CORS_ORIGINS", "https://www.example.com?x=1"),
        ("MESSAGE_ORDERING", "yes"),
        ("CPU_LIMIT", "4"),  # with the default 1Gi: Cloud Run takes 2Gi to 16Gi with 4 CPUs
        ("CPU_LIMIT", "3"),
        ("MEMORY_LIMIT", "9Gi"),  # with the default 1 CPU: at most 4Gi
        ("MEMORY_LIMIT", "256Mi"),
        ("MEMORY_LIMIT", "1.5Gi"),
        ("MEMORY_LIMIT", "010Gi"),
        ("MEMORY_LIMIT", "2G"),
    ],
)
def test_a_wrong_value_stops_the_script_before_anything_runs(standin, name, value) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", **{name: value})
    assert proc.returncode != 0
    assert name in proc.stderr
    assert mutations(gc.calls()) == []


@pytest.mark.slow
@pytest.mark.parametrize("root", ["terraform", str(MODULE.relative_to(REPO))])
def test_every_time_zone_the_code_takes_passes_the_variables_rule(root: str) -> None:
    """Terraform's rule on `timezone` refuses no name of the IANA database, which `BA_TIMEZONE`
    takes (legacy ones such as GMT+0 and CST6CDT too): a plan must not refuse what the worker
    runs."""
    (block,) = [
        entry["timezone"]
        for entry in load_hcl(REPO / root / "variables.tf")["variable"]
        if "timezone" in entry
    ]
    (pattern,) = re.findall(r'regex\("(.+?)", var\.timezone\)', str(block["validation"]))
    names = sorted(available_timezones() - {"localtime"})  # each machine's own: refused
    assert {"GMT+0", "CST6CDT", "America/Argentina/Buenos_Aires"} <= set(names)
    assert all(load_settings(timezone=name).timezone == name for name in names)
    assert [name for name in names if not re.fullmatch(pattern, name)] == []
