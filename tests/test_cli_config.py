"""The configuration recorded with the data, from the command line: what `up` turns on in its
own processes (the purchase funnel) is what `verify`, `verify --repair` and `query` count by
afterwards in a plain shell; a funnel added later is recorded by a worker (never by a command
that only reads) and counted from the raw events; a different time zone is refused until
`config apply` recomputes (another name of the same zone is none); commands that read, in a
folder without data, create nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from behavioral_analytics.cli import config as config_cli
from behavioral_analytics.cli import verify as verify_cli
from behavioral_analytics.events import DEFAULT_LIMITS
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from tests.conftest import cli

SKEW_S = DEFAULT_LIMITS.max_future_skew_s  # BA_MAX_FUTURE_SKEW's default
CLICKS = '[{"name": "clicks", "steps": ["page_view", "button_click"], "window_s": 86400}]'


@pytest.mark.slow
def test_a_plain_shell_counts_by_what_the_workers_recorded(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "1500", "--seed", "3", "--via", "broker", env=env)
    # As `up` runs its workers: with the purchase funnel on in their own environment.
    cli("worker", "--until-idle", env={**env, "BA_FUNNELS": PURCHASE_FUNNEL})

    report = json.loads(cli("verify", "--json", env=env).stdout)
    assert report["ok"] is True, report["drift"][:3]
    stored = _users_per_step(env)
    assert stored[0] > stored[-1] > 0

    cli("publish", env=env, input=b'{"user_id": "x", "event_type": "page_view"}\n')
    cli("worker", "--until-idle", env=env)  # a plain worker keeps the funnel
    repaired = json.loads(cli("verify", "--repair", "--json", env=env).stdout)
    assert repaired["ok"] is True
    after = _users_per_step(env)  # the new user's day may be a later one (near midnight)
    assert after == [stored[0] + 1, *stored[1:]]


def _users_per_step(env: dict[str, str]) -> list[int]:
    """The purchase funnel's users per step, summed over its days."""
    funnel = json.loads(cli("query", "funnel", "purchase", "--json", env=env).stdout)
    return [sum(step) for step in zip(*(day["users"] for day in funnel["days"]), strict=True)]


@pytest.mark.slow
def test_an_added_funnel_is_counted_from_the_raw_events(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "1000", "--seed", "4", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    recorded = json.loads(cli("config", "show", "--json", env=env).stdout)["recorded"]
    # A command that only reads records nothing: the workers running would stop committing.
    for read in (["query", "funnel", "clicks"], ["verify"], ["query", "series"]):
        shell = cli(*read, env={**env, "BA_FUNNELS": CLICKS}, check=False)
        assert "funnel 'clicks' not recorded in the store" in shell.stderr.decode(), read
    assert json.loads(cli("config", "show", "--json", env=env).stdout)["recorded"] == recorded
    # A worker started with it records it and counts it from the raw events.
    added = cli("worker", "--until-idle", env={**env, "BA_FUNNELS": CLICKS})
    assert "funnel 'clicks' added" in added.stdout.decode()  # in the worker's JSON log
    days = json.loads(cli("query", "funnel", "clicks", "--json", env=env).stdout)["days"]
    assert sum(d["users"][0] for d in days) >= sum(d["users"][1] for d in days) > 0
    assert json.loads(cli("verify", "--json", env=env).stdout)["ok"] is True
    shown = json.loads(cli("config", "show", "--json", env=env).stdout)
    assert [f["name"] for f in shown["recorded"]["funnels"]] == ["clicks"]


@pytest.mark.slow
def test_a_changed_zone_is_refused_until_config_apply(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "500", "--seed", "5", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    # Another name of the recorded zone (a link in the tz database) is no change.
    etc_utc = {**env, "BA_TIMEZONE": "Etc/UTC"}
    assert json.loads(cli("verify", "--json", env=etc_utc).stdout)["ok"] is True
    same = json.loads(cli("config", "apply", "--json", "--yes", env=etc_utc).stdout)
    assert (same["changes"], same["applied"]) == ([], False)
    paris = {**env, "BA_TIMEZONE": "Asia/Kolkata"}
    refused = cli("verify", env=paris, check=False)
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 2
    assert "BA_TIMEZONE=Asia/Kolkata" in lines[0] and "config apply" in lines[-1]
    assert cli("query", "series", "--granularity", "hour", env=paris, check=False).returncode == 2
    before = _hours(env)

    asked = cli("config", "apply", env=paris, input=b"n\n", check=False)
    assert asked.returncode == 1 and "timezone: UTC -> Asia/Kolkata" in asked.stdout.decode()
    unanswered = cli("config", "apply", "--json", env=paris, input=b"", check=False)
    assert unanswered.returncode == 1 and unanswered.stdout == b"", unanswered.stdout
    assert "no answer was given (--yes goes ahead" in unanswered.stderr.decode()
    cli("config", "apply", "--yes", env=paris)
    after = _hours(env)  # the same events, in hours of UTC+05:30
    assert sum(after.values()) == sum(before.values()) and after != before
    assert json.loads(cli("verify", "--json", env=env).stdout)["ok"] is True
    assert json.loads(cli("verify", "--json", env=paris).stdout)["ok"] is True
    calcutta = {**env, "BA_TIMEZONE": "Asia/Calcutta"}
    assert _hours(calcutta) == after


def _hours(env: dict[str, str]) -> dict[str, int]:
    series = json.loads(cli("query", "series", "--granularity", "hour", "--json", env=env).stdout)
    return {p["period"]: p["total_events"] for p in series["points"]}


@pytest.mark.slow
def test_breakdown_dimensions_are_shown_narrowed_by_config_apply_and_dropped_to_none(
    tmp_path: Path,
) -> None:
    """The path a user takes with BA_BREAKDOWN_DIMENSIONS: a store that keeps two dimensions
    says so, refuses a third in one line that says how to add it, announces what an omitting
    environment still keeps, and `config apply` narrows it, to none at last, with `verify` ok."""
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "BA_BREAKDOWN_DIMENSIONS": "page,device"}
    cli("init", env=env)
    cli("generate", "--events", "600", "--seed", "5", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    shown = cli("config", "show", env=env).stdout.decode()
    assert "breakdowns: page, device · 100 values admitted" in shown
    refused = cli("query", "breakdown", "referrer", env=env, check=False)
    assert refused.returncode == 2
    assert "this store keeps page, device, entry_page, exit_page" in refused.stderr.decode()
    assert "BA_BREAKDOWN_DIMENSIONS" in refused.stderr.decode()
    typo = cli("query", "breakdown", "referer", env=env, check=False).stderr.decode()
    assert "no dimension 'referer'" in typo
    page_only = {**env, "BA_BREAKDOWN_DIMENSIONS": "page"}
    kept = cli("query", "breakdown", "device", env=page_only)
    assert "breakdown dimension 'device' still kept though this environment omits it" in (
        kept.stderr.decode()
    )
    asked = cli("config", "apply", env=page_only, input=b"n\n", check=False)
    lines = " ".join(asked.stdout.decode().split())  # as the console wraps them
    assert lines.endswith("breakdown dimension 'device': kept -> removed (deletes its breakdowns)")
    # The question goes to stderr: stdout is for --json's document.
    assert asked.stderr.decode().startswith("Record these values and recompute?")
    cli("config", "apply", "--yes", env=page_only)
    assert json.loads(cli("verify", "--json", env=page_only).stdout)["ok"] is True
    none = {**env, "BA_BREAKDOWN_DIMENSIONS": "none"}
    cli("config", "apply", "--yes", env=none)
    assert "breakdowns: none" in cli("config", "show", env=none).stdout.decode()
    assert json.loads(cli("verify", "--json", env=none).stdout)["ok"] is True


def test_reading_commands_in_a_folder_without_data_create_nothing(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "nothing-here")}
    for read in (["verify"], ["config", "show"], ["config", "apply", "--yes"]):
        refused = cli(*read, env=env, check=False)
        assert refused.returncode == 1, read
        assert f"no data at {tmp_path / 'nothing-here'}" in refused.stderr.decode(), read
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.slow
def test_past_the_retention_a_recomputation_waits_for_drop_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "300", "--seed", "6", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    before = _hours(env)
    # 30 days after the middle event, less the hour an event may be dated ahead of its receipt
    # (BA_MAX_FUTURE_SKEW: `horizon_of`): the older half of the figures is past the retention,
    # where a recount could miss expired raw events.
    db = sqlite3.connect(tmp_path / "data" / "store.db")
    (middle,) = db.execute(
        "SELECT timestamp FROM events ORDER BY timestamp LIMIT 1 OFFSET 150"
    ).fetchone()
    db.close()
    later = middle + 30 * 86400.0 - SKEW_S
    monkeypatch.setattr(config_cli.time, "time", lambda: later)
    monkeypatch.setattr(verify_cli.time, "time", lambda: later)
    paris = {**env, "BA_TIMEZONE": "Asia/Kolkata"}
    refused = CliRunner().invoke(config_cli.config_app, ["apply"], env=paris, input="y\n")
    assert refused.exit_code == 1
    assert "Record these values" not in refused.output  # refused before asking
    assert "older than the raw-event retention" in refused.output
    assert "--drop-older" in refused.output
    assert _hours(env) == before  # nothing was changed
    # A new count of values per breakdown recounts every breakdown, older ones included.
    fewer = {**env, "BA_BREAKDOWN_VALUES": "2"}
    values = CliRunner().invoke(config_cli.config_app, ["apply", "--yes", "--json"], env=fewer)
    assert values.exit_code == 1 and "--drop-older" in values.output
    applied = CliRunner().invoke(
        config_cli.config_app, ["apply", "--yes", "--drop-older"], env=paris
    )
    assert applied.exit_code == 0, applied.output
    after = _hours(paris)
    assert sum(after.values()) == sum(before.values()) and after != before
    assert json.loads(cli("verify", "--json", env=paris).stdout)["ok"] is True
    checked = CliRunner().invoke(verify_cli_app(), ["verify"], env=paris)
    assert checked.exit_code == 0, checked.output
    assert "aggregates older than the raw-event retention (30 days)" in " ".join(
        checked.output.split()
    )
    alone = CliRunner().invoke(verify_cli_app(), ["verify", "--drop-older"], env=paris)
    assert alone.exit_code == 2 and "--drop-older goes with --repair" in alone.output
    # Once every figure is past the retention, nothing can be recounted: they stay as counted.
    monkeypatch.setattr(config_cli.time, "time", lambda: later + 40 * 86400.0)
    utc = {**env, "BA_TIMEZONE": "UTC"}
    back = CliRunner().invoke(config_cli.config_app, ["apply", "--yes"], env=utc)
    assert back.exit_code == 0, back.output
    assert "keep the figures counted under the previous values" in back.output
    assert _hours(env) == after


@pytest.mark.slow
def test_a_rule_change_recomputes_sessions_near_the_retentions_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session figures within the rules' reach of the retention's start go unchecked by
    `verify`, but `config apply` must still recompute them under a new session rule."""
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "300", "--seed", "7", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    db = sqlite3.connect(tmp_path / "data" / "store.db")
    ((first,),) = db.execute("SELECT min(timestamp) FROM events").fetchall()
    db.close()
    # The horizon (the retention's start plus BA_MAX_FUTURE_SKEW) is 23:00 UTC the day before
    # the first event's: every figure is in a period after it (nothing older) and within the
    # rules' reach of it.
    start = first - first % 86400.0 - 3600.0
    monkeypatch.setattr(config_cli.time, "time", lambda: start + 30 * 86400.0 - SKEW_S)
    before = _session_days(env)
    short = {**env, "BA_SESSION_MAX": "0.01"}  # 36 s: cuts client sessions too
    applied = CliRunner().invoke(config_cli.config_app, ["apply", "--yes", "--json"], env=short)
    assert applied.exit_code == 0, applied.output
    document = json.loads(applied.output)
    assert document["rebuilt"] is True and document["older_recounted"] == 0
    assert _session_days(short) > before  # a shorter cap cuts more sessions


def _session_days(env: dict[str, str]) -> int:
    series = json.loads(cli("query", "sessions", "-g", "day", "--json", env=env).stdout)
    return sum(p["sessions"] for p in series["points"])


def verify_cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(verify_cli.verify)
    app.command("noop")(lambda: None)  # two commands: the first is named on the command line
    return app


@pytest.mark.slow
def test_apply_says_which_breakdowns_it_recounted(tmp_path: Path) -> None:
    """A new BA_BREAKDOWN_VALUES recounts every breakdown; apply said `rebuilt: false`,
    `recomputed: 0` ("0 aggregates recomputed"), as if nothing had changed."""
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "200", "--seed", "4", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    fewer = {**env, "BA_BREAKDOWN_VALUES": "5"}
    document = json.loads(cli("config", "apply", "--yes", "--json", env=fewer).stdout)
    assert document["applied"] is True
    assert document["breakdowns_recounted"] == [
        "page", "referrer", "utm_source", "utm_medium", "utm_campaign", "device", "browser",
        "os", "country", "event_type", "entry_page", "exit_page",
    ]  # fmt: skip
    back = cli("config", "apply", "--yes", env={**env, "BA_BREAKDOWN_VALUES": "100"})
    back = back.stdout.decode()
    assert "breakdowns recounted from the raw events: page, referrer," in " ".join(back.split())
    assert json.loads(cli("verify", "--json", env=env).stdout)["ok"] is True


@pytest.mark.slow
def test_apply_of_the_relink_rule_re_decides_the_links(tmp_path: Path) -> None:
    """Turning relinking on recorded the rule and kept carol's sign-in refused: bob kept the
    anonymous events, and verify said "no drift" (trial)."""
    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    stamp = time.time() - 7200
    lines = [
        {"event_id": "r1", "anonymous_id": "dev-A", "event_type": "page_view", "timestamp": 0},
        {"event_id": "r2", "user_id": "bob", "anonymous_id": "dev-A", "event_type": "identify",
         "timestamp": 60},
        {"event_id": "r3", "user_id": "carol", "anonymous_id": "dev-A",
         "event_type": "identify", "timestamp": 120},
        {"event_id": "r4", "anonymous_id": "dev-A", "event_type": "page_view", "timestamp": 180},
    ]  # fmt: skip
    body = "".join(json.dumps({**e, "timestamp": stamp + e["timestamp"]}) + "\n" for e in lines)
    cli("init", env=env)
    cli("publish", env=env, input=body.encode())
    cli("worker", "--until-idle", env=env)
    relink = {**env, "BA_IDENTITY_ALLOW_RELINK": "true"}
    document = json.loads(cli("config", "apply", "--yes", "--json", env=relink).stdout)
    assert document["links_changed"] == 1 and document["rebuilt"] is True
    assert document["changes"][0].startswith("allow_relink: false -> true (")  # as set
    links = json.loads(cli("query", "links", "anonymous:dev-A", "--json", env=relink).stdout)
    assert sorted((link["user_id"], link["status"]) for link in links) == [
        ("bob", "active"),
        ("carol", "active"),
    ]
    carol = json.loads(cli("query", "profile", "carol", "--json", env=relink).stdout)
    assert carol["total_events"] == 2
    assert json.loads(cli("verify", "--json", env=relink).stdout)["ok"] is True
