"""`up`: a port in use is refused before anything starts; the live view shows the demo
traffic as achieved (rate, errors) and the generator's parameters and seed; the demo traffic
looks like a real site (`live_traffic`)."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from behavioral_analytics.cli import up as up_module
from behavioral_analytics.cli.live_view import TrafficStats
from behavioral_analytics.live_traffic import describe, live_traffic, scheduled_events
from tests.conftest import FakeClock, cli, wait_until

UP_ARGS = ("--rate", "20", "--seed", "7", "--no-api", "--workers", "1")


def test_up_refuses_a_port_in_use_with_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "--port", str(port), "--rate", "0", "--workers", "1", check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 1, err
    assert f"127.0.0.1:{port} is already in use" in err and len(err.splitlines()) == 1, err
    # Nothing was started: no worker wrote a log, no traffic was published.
    assert not (tmp_path / "data" / "up.log").exists()


def test_api_refuses_a_port_in_use_with_one_line_and_exit_1(tmp_path: Path) -> None:
    """As `up` does: uvicorn printed a JSON log line and exited 3."""
    cli("init")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("api", "--port", str(port), check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 1, err
    assert err == (
        f"error: 127.0.0.1:{port} is already in use (another `up` or `api`?): stop it, or "
        "choose another port with --port"
    ), err
    assert not result.stdout.strip(), result.stdout


def test_up_help_documents_port_workers_and_seed() -> None:
    out = cli("up", "--help", env={"COLUMNS": "200"}).stdout.decode()
    assert "--port" in out and "Worker processes to start." in out and "--seed" in out


@pytest.mark.slow
def test_the_live_view_shows_achieved_rate_errors_and_the_seed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "up", *UP_ARGS],
        env={**os.environ, "BA_FLUSH_INTERVAL": "0.2", "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        log = tmp_path / "data" / "up.log"
        wait_until(lambda: log.exists() and '"worker started"' in log.read_text(), 60, "the worker")
        store_path = tmp_path / "data" / "store.db"
        from behavioral_analytics.stores.sqlite import SQLiteStore

        wait_until(store_path.exists, 30, "the store")
        store = SQLiteStore(store_path)
        wait_until(lambda: store.count_events() >= 40, 90, "demo events to be counted")
        store.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "events/s achieved (target 20)" in text and "publish errors 0" in text
    sent = int(text.split(" sent · ")[0].rsplit("· ", 1)[1])
    assert sent >= 40
    assert "seed 7;" in text
    assert f"data {tmp_path / 'data'}" in text


def test_traffic_stats_rate_is_over_the_last_window() -> None:
    clock = FakeClock(0.0)
    stats = TrafficStats(20.0, clock=clock)
    clock.advance(5)
    stats.published(100)
    assert stats.rate() == 20.0  # 100 events in the 5 s since the start
    clock.advance(20)
    assert stats.rate() == 0.0  # nothing in the last 10 s
    stats.failed(3, "broker down")
    assert "publish errors 3" in stats.line() and "broker down" in stats.line()


@pytest.mark.slow
def test_demo_traffic_has_minutes_long_sessions_and_plausible_conversion() -> None:
    plan = live_traffic(20.0, seed=11)
    assert "seed 11" in describe(plan) and f"{plan.config.users} simulated users" in describe(plan)
    horizon_s = 1800.0
    events = list(itertools.takewhile(lambda e: e[0] < horizon_s, scheduled_events(plan)))
    offsets = [offset for offset, _ in events]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    assert 15.0 < len(events) / horizon_s < 25.0  # the rate asked for, within sampling noise
    sessions: dict[str, list[float]] = defaultdict(list)
    reached: dict[str, set[str]] = defaultdict(set)
    for offset, payload in events:
        if payload.get("session_id"):
            sessions[payload["session_id"]].append(offset)
        if payload.get("user_id"):
            reached[payload["user_id"]].add(payload["event_type"])
    durations_s = [max(times) - min(times) for times in sessions.values()]
    assert statistics.fmean(durations_s) > 60.0  # minutes, not the instant of a burst
    assert statistics.fmean(len(times) for times in sessions.values()) < 15
    entered = [types for types in reached.values() if "page_view" in types]
    search = sum("search" in types for types in entered) / len(entered)
    purchase = sum("purchase" in types for types in entered) / len(entered)
    assert 0.3 < search < 0.8 and 0.01 < purchase < 0.25, (search, purchase)
    again = list(itertools.islice(scheduled_events(live_traffic(20.0, seed=11)), 50))
    assert again == events[:50]  # a seed repeats the run
    # Started again later, the same seed's sessions get ids of their own (a client session id
    # joins a person's events whatever the gap): the same moments, other session ids.
    later = list(itertools.islice(scheduled_events(plan, 1_796_000_000.0), 50))
    assert [o for o, _ in later] == pytest.approx([o for o, _ in events[:50]], abs=1e-3)
    ids = {p["session_id"] for _, p in events[:50] if p.get("session_id")}
    assert ids and not ids & {p["session_id"] for _, p in later if p.get("session_id")}


@pytest.mark.slow
def test_demo_users_do_not_share_ids_with_the_walkthrough() -> None:
    """`up`'s demo traffic names its users `demo_N`: the README's walkthrough and the recipe's
    scripts send `user_N` to the same data folder, and `query profile user_42` must show
    only what the walkthrough sent (issue #15, case 4)."""
    events = list(itertools.islice(scheduled_events(live_traffic(20.0, seed=3)), 500))
    users = {payload["user_id"] for _, payload in events if payload.get("user_id")}
    assert users and all(user.startswith("demo_") for user in users)


def test_a_second_up_on_the_same_data_folder_is_told_the_first_ones_pid(tmp_path: Path) -> None:
    """Two `up` on one folder (the second on another port) doubled the demo traffic unsaid."""
    first, none = up_module._claim(tmp_path)
    second, other = up_module._claim(tmp_path)
    try:
        assert none is None and other == os.getpid()
    finally:
        second.close()
        first.close()
    third, after = up_module._claim(tmp_path)  # the first one's lock went with its file
    third.close()
    assert after is None


def test_a_second_up_takes_over_the_claim_when_the_first_ends(tmp_path: Path) -> None:
    """A third `up`, started after the first ended, is told of the second."""
    first, _ = up_module._claim(tmp_path)
    second, other = up_module._claim(tmp_path)
    waiter = threading.Thread(target=up_module._take_over, args=(second,), daemon=True)
    waiter.start()
    try:
        assert other == os.getpid()
        first.close()
        waiter.join(10)
        assert not waiter.is_alive()
        third, after = up_module._claim(tmp_path)
        third.close()
        assert after == os.getpid()
    finally:
        second.close()
        first.close()
