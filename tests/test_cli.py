"""The command line: clear errors, documented JSON shapes, the whole local loop."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from behavioral_analytics.api.cursors import unbind as api_unbind
from behavioral_analytics.settings import ConfigError, load_settings
from tests.conftest import cli


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BA_BACKEND": "aws"}, "invalid BA_BACKEND"),
        ({"BA_TIMEZONE": "Mars/Olympus"}, "invalid BA_TIMEZONE: unknown IANA time zone"),
        ({"BA_TIMEZONE": "europe/london"}, "(did you mean Europe/London?)"),
        ({"BA_TIMEZONE": "localtime"}, "'localtime' is this machine's own zone"),
        ({"BA_TIMEZONE": "posixrules"}, "unknown IANA time zone 'posixrules'"),
        ({"BA_FLUSH_INTERVAL": "-1"}, "invalid BA_FLUSH_INTERVAL"),
        ({"BA_MAX_DELIVERY_ATTEMPTS": "3"}, "invalid BA_MAX_DELIVERY_ATTEMPTS"),
        ({"BA_RAW_RETENTION_DAYS": "3"}, "shorter than the message retention"),
        ({"BA_BACKEND": "gcp"}, "needs GOOGLE_CLOUD_PROJECT"),
        ({"BA_FUNNELS": '[{"name": "x", "steps": ["a"]}]'}, "needs at least two steps"),
        ({"BA_FUNNELS": "{"}, "invalid BA_FUNNELS"),
        ({"BA_HASHED_FIELDS": "email"}, "needs BA_HASH_SALT"),
        (
            {"BA_RAW_RETENTION_DAYS": "20", "BA_MAX_EVENT_AGE_DAYS": "20"},
            "plus how far sessions, funnels and identity links reach back",
        ),
    ],
)
def test_a_bad_setting_is_one_clear_line_and_exit_2(env: dict[str, str], message: str) -> None:
    result = cli("query", "series", env=env, check=False)
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_settings_defaults_follow_the_recipe(tmp_path: Path) -> None:
    s = load_settings()
    assert (s.backend, s.pubsub_topic, s.pubsub_subscription, s.firestore_database) == (
        "local",
        "user-events",
        "analytics-processor",
        "behavioral-analytics",
    )
    assert s.dead_letter_topic == "user-events-dead-letter"
    assert (
        load_settings(pubsub_subscription="projects/p/subscriptions/sub").dead_letter_subscription
        == "sub-dead-letter"
    )


def test_project_id_is_accepted_for_google_cloud_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECT_ID", "my-proj")
    monkeypatch.setenv("BA_BACKEND", "gcp")
    assert load_settings().project == "my-proj"


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PUBSUB_TOPIC=from-dotenv\n")
    assert load_settings().pubsub_topic == "from-dotenv"
    (tmp_path / ".env").write_text("BA_FLUSH_MAX_EVENTS=lots\n")
    with pytest.raises(ConfigError, match="BA_FLUSH_MAX_EVENTS"):
        load_settings()


@pytest.mark.slow
def test_publish_worker_query_verify_loop(tmp_path: Path) -> None:
    now = time.time()
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": "team/alice" if i % 2 else "bob",
                "event_type": "checkout.step_2" if i % 3 == 0 else "page_view",
                "timestamp": now - 600 + i,
            }
        ).encode()
        for i in range(30)
    ]
    lines += [b"{broken", lines[0]]  # a malformed line and a re-sent event
    published = cli("publish", "-", input=b"\n".join(lines) + b"\n")
    assert "published 32 messages" in published.stderr.decode()
    cli("worker", "--workers", "2", "--until-idle")

    profile = json.loads(cli("query", "profile", "team/alice", "--json").stdout)
    assert profile["user_id"] == "team/alice" and profile["total_events"] == 15
    assert set(profile) == {
        "user_id",
        "total_events",
        "events_by_type",
        "first_seen",
        "last_activity",
    }

    page = json.loads(cli("query", "timeline", "bob", "--limit", "10", "--json").stdout)
    assert len(page["items"]) == 10 and page["next_cursor"]
    rest = json.loads(
        cli("query", "timeline", "bob", "--cursor", page["next_cursor"], "--json").stdout
    )
    assert len(rest["items"]) == 5 and rest["next_cursor"] is None
    stamps = [e["timestamp"] for e in page["items"] + rest["items"]]
    assert stamps == sorted(stamps, reverse=True)
    # The API's listing of bob's timeline takes the CLI's cursor (`listing_cursors`).
    assert api_unbind(page["next_cursor"], ("timeline", "bob"))
    # A cursor continues only its listing: bob's timeline cursor pages nobody else's events.
    for other in (("query", "timeline", "team/alice"), ("query", "events", "--type", "x")):
        refused = cli(*other, "--cursor", page["next_cursor"], check=False, env={"COLUMNS": "300"})
        said = refused.stderr.decode().strip()
        assert refused.returncode == 2 and "continues another listing" in said, said
        assert len(said.splitlines()) == 1 and refused.stdout == b""

    events = json.loads(cli("query", "events", "--type", "checkout.step_2", "--json").stdout)
    assert len(events["items"]) == 10

    series = json.loads(cli("query", "series", "-g", "day", "--json").stdout)
    assert (series["from"], series["to"]) == (None, None)  # every stored period
    (day,) = series["points"]
    since = cli("query", "series", "-g", "day", "--from", day["period"], "--json").stdout
    ranged = json.loads(since)
    assert (ranged["from"], ranged["to"], ranged["points"]) == (day["period"], None, [day])
    assert day["total_events"] == 30 and day["unique_users"] == 2
    only = json.loads(cli("query", "series", "-g", "hour", "--type", "page_view", "--json").stdout)
    assert sum(p["total_events"] for p in only["points"]) == 20
    assert all(p["total_events"] and p["bot_events"] is None for p in only["points"])
    none = cli("query", "series", "-g", "hour", "--type", "nothing", "--json").stdout
    assert json.loads(none)["points"] == []

    dead = json.loads(cli("dlq", "list", "--json").stdout)
    assert dead["total"] == 1 and dead["items"][0]["reason"] == "not_json"
    assert dead["items"][0]["data"] == "{broken"

    report = json.loads(cli("verify", "--json").stdout)
    assert report["ok"] and report["raw_events"] == 30


@pytest.mark.slow
def test_verify_exits_1_on_drift_and_repair_fixes_it(tmp_path: Path) -> None:
    cli("publish", "-", input=json.dumps({"user_id": "u", "event_type": "x"}).encode())
    cli("worker", "--until-idle")
    db = sqlite3.connect(tmp_path / "data" / "store.db")
    db.execute("UPDATE buckets SET total_events = 99")
    db.commit()
    drifted = cli("verify", check=False)
    assert drifted.returncode == 1 and "drift" in drifted.stdout.decode()
    cli("verify", "--repair")
    assert cli("verify").returncode == 0


def test_missing_profile_is_a_clear_error() -> None:
    cli("init")
    result = cli("query", "profile", "nobody", check=False)
    assert result.returncode == 1 and "no profile for user 'nobody'" in result.stderr.decode()


def test_init_says_what_it_did() -> None:
    out = cli("init").stdout.decode()
    assert "user-events" in out and "analytics-processor" in out and "ready" in out


@pytest.mark.slow
def test_up_runs_the_stack_until_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from behavioral_analytics.stores.sqlite import SQLiteStore
    from tests.conftest import wait_until

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "behavioral_analytics.cli",
            "up",
            "--rate",
            "200",
            "--no-api",
            "--workers",
            "2",
        ],
        env={**os.environ, "BA_FLUSH_INTERVAL": "0.2", "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        store_path = tmp_path / "data" / "store.db"
        wait_until(store_path.exists, 30, "the store to appear")
        store = SQLiteStore(store_path)
        wait_until(lambda: store.count_events() >= 100, 60, "synthetic events to be counted")
        log_path = tmp_path / "data" / "up.log"
        # Both workers are past their start (their SIGTERM handlers installed).
        wait_until(lambda: log_path.read_text().count('"worker started"') == 2, 30, "2 workers")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "events today" in out.decode()
    assert "stopped; logs in" in err.decode()
    log = (tmp_path / "data" / "up.log").read_text()
    assert log.count('"message": "worker stopped"') == 2
