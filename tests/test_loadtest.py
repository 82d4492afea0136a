"""The load test and the repository's scripts.

- pure pieces (percentiles, pacing, expected outcome) and the orchestration with in-memory fakes;
- the scripts' bootstrap: run with a plain interpreter, they re-run inside the project's
  environment, or say what to run first;
- a small real run on the local backend (worker processes, SQLite) in a temporary directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.events import DEFAULT_LIMITS, Event, parse_message
from behavioral_analytics.loadgen import GeneratorConfig, generate
from behavioral_analytics.loadtest import (
    LoadTestOptions,
    Pacer,
    expected_outcome,
    percentiles,
    run_loadtest,
)
from behavioral_analytics.store import DeadLetter, Page, SeriesPoint, StoredEvent

REPO = Path(__file__).resolve().parent.parent
START = 1_764_320_000.0


# -- pure pieces ----------------------------------------------------------------------------


def test_percentiles_use_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    result = percentiles(values)
    assert (result["p50"], result["p95"], result["p99"], result["max"]) == (50, 95, 99, 100)
    assert result["count"] == 100
    assert percentiles([]) == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacer_spaces_small_batches_at_the_rate():
    clock = FakeClock()
    pacer = Pacer(1000, 200.0, interval_s=0.05, clock=clock, sleep=clock.sleep)
    sizes = []
    for start, end in pacer.batches():
        sizes.append(end - start)
        # never ahead of schedule
        assert end / 200.0 <= clock.now - 100.0 + 1e-9
    assert sum(sizes) == 1000 and max(sizes) == 10
    assert clock.now - 100.0 == pytest.approx(5.0)


def test_pacer_catches_up_when_behind_and_is_unpaced_at_rate_zero():
    clock = FakeClock()
    pacer = Pacer(1000, 100.0, interval_s=0.05, max_batch=300, clock=clock, sleep=clock.sleep)
    batches = pacer.batches()
    assert next(batches) == (0, 5)
    clock.now += 3.0  # the sender stalled for 3 s: 300 messages are due
    start, end = next(batches)
    assert (start, end) == (5, 305)
    assert list(Pacer(2500, 0, max_batch=1000).batches()) == [(0, 1000), (1000, 2000), (2000, 2500)]


def test_expected_outcome_counts_distinct_events_duplicates_and_rejects():
    run = generate(GeneratorConfig(events=3000, seed=5, start=START))
    expected = expected_outcome([m.data for m in run.messages], DEFAULT_LIMITS, START + 10**6)
    counts = run.counts()
    assert len(expected.keys) == counts["events"]
    assert expected.duplicates == counts["duplicates"]
    truth = {}
    for m in run.messages:
        if m.kind == "malformed":
            truth[m.reason] = truth.get(m.reason, 0) + 1
    assert dict(expected.rejects) == truth


# -- orchestration with fakes ----------------------------------------------------------------


@dataclass
class FakeStore:
    """Just what the load test reads, held in memory."""

    events: dict[str, StoredEvent] = field(default_factory=dict)
    by_type: Counter[str] = field(default_factory=Counter)
    letters: list[DeadLetter] = field(default_factory=list)  # oldest first

    def series(self, granularity, start=None, end=None):
        total = sum(self.by_type.values())
        return [SeriesPoint("day", "2025-11-28", total, dict(self.by_type), 1)]

    def count_dead_letters(self) -> int:
        return len(self.letters)

    def dead_letters(self, limit=100, cursor=None):
        newest_first = self.letters[::-1]
        start = int(cursor or 0)
        more = start + limit < len(newest_first)
        return Page(newest_first[start : start + limit], str(start + limit) if more else None)

    def reject(self, data: bytes) -> None:
        self.letters.append(
            DeadLetter(
                "not_json", "", data, "m", recorded_at=time.time(), id=str(len(self.letters))
            )
        )

    def get_events(self, keys):
        return [self.events[key] for key in keys if key in self.events]


class InstantWorker:
    """A sink that processes each message at once, like a worker with no latency. `drop`
    loses every n-th event; `double` counts every n-th event twice in the aggregates;
    `others` adds that many events of another type, and as many rejected messages, per batch
    (live traffic beside the run, or a backlog); `lose_rejects` records none of the run's."""

    def __init__(
        self,
        store: FakeStore,
        drop: int = 0,
        double: int = 0,
        others: int = 0,
        lose_rejects: bool = False,
    ) -> None:
        self.store, self.drop, self.double, self.seen = store, drop, double, 0
        self.others, self.lose_rejects = others, lose_rejects

    def send(self, batch) -> int:
        now = time.time()
        self.store.by_type["page_view"] += self.others
        for n in range(self.others):
            self.store.reject(f"other garbage {n}".encode())
        for data in batch:
            result = parse_message(data, message_id="m", received_at=now)
            if not isinstance(result, Event):
                if not self.lose_rejects:
                    self.store.reject(data)
                continue
            if result.key in self.store.events:
                continue
            self.seen += 1
            if self.drop and self.seen % self.drop == 0:
                continue
            self.store.events[result.key] = StoredEvent(result, now + 0.01)
            twice = self.double and self.seen % self.double == 0
            self.store.by_type[result.event_type] += 2 if twice else 1
        return 0

    def close(self) -> None:
        pass


class Verified:
    ok = True

    def to_dict(self):
        return {"ok": True}


def _fake_run(sink_factory, events=800):
    store = FakeStore()
    sink = sink_factory(store)
    store = getattr(sink, "store", store)
    options = LoadTestOptions(
        events=events, rate=0, timeout_s=0.5, generator=GeneratorConfig(seed=9, users=50)
    )
    report = run_loadtest(
        options,
        backend="fake",
        store=store,  # type: ignore[arg-type]
        sink=sink,
        limits=DEFAULT_LIMITS,
        workers=None,
        verify=lambda _store: Verified(),
    )
    return report


def test_a_clean_run_reports_everything_found_with_latencies():
    report = _fake_run(InstantWorker)
    doc = report.to_dict()
    assert report.ok, report.problems
    assert report.missing == 0 and report.counted_extra == 0
    assert report.found == report.expected_events > 0
    assert report.duplicates_absorbed == report.duplicates_sent
    assert report.rejects_recorded == report.rejects_expected
    assert doc["latency_s"]["p50"] == pytest.approx(0.01, abs=0.005)
    assert doc["verify"] == {"ok": True}
    json.dumps(doc)


def test_missing_and_double_counted_events_fail_the_run():
    lost = _fake_run(lambda store: InstantWorker(store, drop=97))
    assert not lost.ok and lost.missing > 0
    assert any("not queryable" in p for p in lost.problems)
    doubled = _fake_run(lambda store: InstantWorker(store, double=101))
    assert not doubled.ok and doubled.counted_extra > 0
    assert any("counted twice" in p for p in doubled.problems)


def test_a_rerun_with_the_same_events_counts_them_as_already_stored():
    store = FakeStore()
    sink = InstantWorker(store)
    generator = GeneratorConfig(seed=9, users=50)
    start = time.time() - 3 * 86400  # a fixed start: the same events twice
    options = LoadTestOptions(
        events=300, rate=0, timeout_s=0.5, start=start, generator=generator, run_id="again"
    )
    common = dict(backend="fake", store=store, sink=sink, limits=DEFAULT_LIMITS, workers=None)
    first = run_loadtest(options, **common)  # type: ignore[arg-type]
    again = run_loadtest(options, **common)  # type: ignore[arg-type]
    assert first.ok and again.ok, again.problems
    assert again.already_stored == again.expected_events == again.found
    assert again.missing == 0


def test_each_run_marks_its_events_with_its_own_type_and_users():
    store = FakeStore()
    first = _fake_run(lambda _: InstantWorker(store), events=300)
    second = _fake_run(lambda _: InstantWorker(store), events=300)
    assert first.ok and second.ok, first.problems + second.problems
    assert first.event_type != second.event_type
    assert first.event_type == f"loadtest.{first.run_id}"
    mine = [s.event for s in store.events.values() if s.event.event_type == first.event_type]
    assert len(mine) == first.found
    assert all((e.user_id or e.anonymous_id or "").startswith(first.user_prefix) for e in mine)
    assert store.by_type[first.event_type] == first.found


def test_a_run_judges_itself_beside_other_traffic_and_a_backlog():
    report = _fake_run(lambda store: InstantWorker(store, others=7))
    assert report.ok, report.problems
    assert report.counted_extra == 0
    assert report.rejects_recorded == report.rejects_expected > 0
    doubled = _fake_run(lambda store: InstantWorker(store, double=101, others=7))
    assert not doubled.ok and doubled.counted_extra > 0
    lost = _fake_run(lambda store: InstantWorker(store, others=50, lose_rejects=True))
    assert lost.rejects_recorded == 0
    assert any("rejected messages not recorded" in p for p in lost.problems)


# -- the scripts' bootstrap ------------------------------------------------------------------

PLAIN = [sys.executable, "-I", "-S"]  # no site-packages: behavioral_analytics is not importable


def _plain_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BA_"))}
    env.update(extra)
    return env


def test_a_plain_interpreter_cannot_import_the_package():
    probe = subprocess.run([*PLAIN, "-c", "import behavioral_analytics"], capture_output=True)
    assert probe.returncode != 0


@pytest.mark.parametrize("script", ["scripts/generate_test_events.py", "generate_events.py"])
def test_scripts_re_run_themselves_in_the_project_environment(script, tmp_path):
    result = subprocess.run(
        [*PLAIN, str(REPO / script), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_plain_env(BA_VENV=sys.prefix),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--events" in result.stdout and "--via" in result.stdout


def test_script_generation_matches_the_package(tmp_path):
    args = ["--via", "ndjson", "--events", "25", "--seed", "4", "--start", str(START)]
    result = subprocess.run(
        [*PLAIN, str(REPO / "scripts/generate_test_events.py"), *args],
        capture_output=True,
        cwd=tmp_path,
        env=_plain_env(BA_VENV=sys.prefix),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expected = generate(GeneratorConfig(events=25, seed=4, start=START))
    assert result.stdout.splitlines() == [m.data for m in expected.messages]


def test_scripts_say_what_to_run_when_there_is_no_environment(tmp_path):
    result = subprocess.run(
        [*PLAIN, str(REPO / "scripts/load_test.py"), "--events=1000", "--rate=10"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_plain_env(BA_VENV=str(tmp_path / "no-venv")),
        timeout=60,
    )
    assert result.returncode == 2
    assert "./dev test" in result.stderr and "pip install -e ." in result.stderr


# -- a real run on the local backend ---------------------------------------------------------

needs_worker = pytest.mark.skipif(
    importlib.util.find_spec("behavioral_analytics.worker") is None,
    reason="behavioral_analytics.worker is not written yet: the load test needs real workers",
)


def _local_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BA_")}
    env.update(BA_BACKEND="local", BA_DATA_DIR=str(tmp_path / "data"), BA_LOG_LEVEL="WARNING")
    return env


@needs_worker
@pytest.mark.slow
def test_loadtest_on_the_local_backend(tmp_path):
    command = [
        sys.executable, "-m", "behavioral_analytics.cli", "loadtest",
        "--events", "500", "--rate", "5000", "--workers", "1", "--seed", "11", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=_local_env(tmp_path), timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["messages"] == 500
    assert report["events"]["missing"] == 0 and report["events"]["counted_extra"] == 0
    assert report["events"]["found"] == report["events"]["expected"]
    assert report["duplicates"]["absorbed"] == report["duplicates"]["sent"]
    assert report["rejects"]["recorded"] == report["rejects"]["expected"] > 0
    latency = report["latency_s"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"] < 60
    assert report["verify"]["ok"] is True


@needs_worker
@pytest.mark.slow
def test_the_recipes_load_test_script_runs_on_the_local_backend(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/load_test.py"), "--events=300", "--rate=3000"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_local_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout and "missing" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_worker
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None,
    reason="the HTTP collector needs the api extra: pip install '.[api]'",
)
def test_loadtest_through_the_http_collector(tmp_path):
    port = _free_port()
    env = _local_env(tmp_path)
    env.update(BA_WRITE_KEYS="loadtest-key", BA_WRITE_KEY="loadtest-key", BA_RATE_LIMIT="100000")
    api = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "api", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert api.poll() is None, api.stderr.read().decode() if api.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        command = [
            sys.executable, "-m", "behavioral_analytics.cli", "loadtest", "--via", "http",
            "--url", f"http://127.0.0.1:{port}", "--events", "400", "--rate", "2000",
            "--seed", "12", "--json",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
        )
    finally:
        api.terminate()
        api.wait(30)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["via"] == "http"
    assert report["events"]["missing"] == 0 and report["events"]["counted_extra"] == 0
    assert report["rejects"]["recorded"] == report["rejects"]["expected"]


def test_the_load_tests_verify_counts_by_what_is_recorded_when_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `up` beside the recipe's load test: the load test opened the store before `up`'s first
    # commit recorded the purchase funnel, and its verify recounted without it (drift).
    from behavioral_analytics.aggregation import Periods
    from behavioral_analytics.cli.loadgen import _verifier
    from behavioral_analytics.funnels import PURCHASE_FUNNEL
    from behavioral_analytics.settings import Settings
    from behavioral_analytics.wiring import open_configured
    from tests.faults import behavior_event

    monkeypatch.setenv("BA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BA_FUNNELS", raising=False)
    settings, early = open_configured(Settings())  # nothing recorded yet
    assert early.rules is not None and early.rules.funnels == ()
    monkeypatch.setenv("BA_FUNNELS", PURCHASE_FUNNEL)
    _, up = open_configured(Settings())
    steps = ["page_view", "search", "add_to_cart", "purchase"]
    now = time.time()
    events = [
        behavior_event(i, now - 600 + i, received_at=now, user="u1", kind=kind)
        for i, kind in enumerate(steps)
    ]
    assert up.commit(events).created == 4
    up.close()
    report = _verifier(settings, Periods())(early)
    assert report.ok, report.drift[:5]
    assert report.raw_events == 4 and report.not_checked == 0
    early.close()


def test_after_a_deployment_the_scripts_say_where_they_publish(tmp_path):
    """The recipe exports PROJECT_ID, deploys, then runs generate_test_events.py: it published
    to the local broker, and said only "(local)" (trial)."""
    args = ["--events", "2", "--seed", "4"]
    run = subprocess.run(
        [*PLAIN, str(REPO / "scripts/generate_test_events.py"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_plain_env(
            BA_VENV=sys.prefix,
            BA_DATA_DIR=str(tmp_path / "data"),
            PROJECT_ID="demo-project",
            COLUMNS="300",
        ),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == (
        "note: generate_test_events.py uses the local broker; PROJECT_ID is set: to send to "
        "that project's Pub/Sub, export BA_BACKEND=gcp GOOGLE_CLOUD_PROJECT=demo-project"
    )
    quiet = subprocess.run(
        [*PLAIN, str(REPO / "scripts/generate_test_events.py"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_plain_env(BA_VENV=sys.prefix, BA_DATA_DIR=str(tmp_path / "data")),
        timeout=120,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "PROJECT_ID" not in quiet.stderr


class _DeployedBroker:
    """A deployment's broker: what `loadtest` asks of it before it publishes."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def init(self) -> list[str]:
        self.asked.append("init")
        raise BrokerError("stopped here")

    def ping(self) -> None:
        self.asked.append("ping")
        raise BrokerError("topic t not found (run init)")


def test_loadtest_against_google_cloud_leaves_the_deployments_subscription_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`init` there set the deployed subscription's delivery settings to this shell's (five
    delivery attempts over Terraform's ten, say); the topic is checked instead."""
    from behavioral_analytics import wiring
    from behavioral_analytics.cli import loadgen
    from behavioral_analytics.loadtest import LoadTestOptions
    from behavioral_analytics.settings import load_settings

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    settings = load_settings(backend="gcp", project="demo-x")
    broker = _DeployedBroker()
    monkeypatch.setattr(wiring, "open_configured", lambda s: (s, object()))
    monkeypatch.setattr(loadgen, "build_broker", lambda s: broker)
    with pytest.raises(BrokerError, match="not found"):
        loadgen._run(settings, LoadTestOptions(events=10))
    assert broker.asked == ["ping"]
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")  # emulators start empty
    broker.asked.clear()
    with pytest.raises(BrokerError, match="stopped here"):
        loadgen._run(settings, LoadTestOptions(events=10))
    assert broker.asked == ["init"]
