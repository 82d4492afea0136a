"""A long recount says what it is doing: `verify` reports the raw events read as it reads them,
the recount starting, and a repair's rebuild; the command prints those reports on stderr once
it has run a while, and never on stdout (where `--json` goes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from behavioral_analytics import recount_reads
from behavioral_analytics.cli import shared
from behavioral_analytics.recount_reads import retained_events
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import FakeClock
from tests.contract.builders import NOW, ev


def _store(path: Path, events: int) -> SQLiteStore:
    store = SQLiteStore(path, clock=FakeClock(NOW))
    store.commit([ev(n, n * 10, user=f"u{n % 3}") for n in range(1, events + 1)])
    return store


def test_reading_reports_every_so_many_events_then_the_recount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recount_reads, "PROGRESS_EVERY_EVENTS", 2)
    store = _store(tmp_path / "store.db", 5)
    lines: list[tuple[str, bool]] = []
    events = list(retained_events(store, lambda line, step: lines.append((line, step))))
    assert len(events) == 5
    assert lines == [
        ("2 raw events read", False),
        ("4 raw events read", False),
        ("all 5 raw events read", True),
    ]
    store.close()


def test_a_repair_reports_its_rebuild_and_reads_again(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = _store(path, 3)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE buckets SET total_events = total_events + 7")
    db.close()
    lines: list[tuple[str, bool]] = []
    report = verify(
        store,
        store.periods,
        now=NOW,
        retention_s=None,
        repair=True,
        progress=lambda line, step: lines.append((line, step)),
    )
    assert report.repaired
    assert lines == [
        ("aggregates read; reading the raw events", True),
        ("all 3 raw events read", True),
        ("drift found: rebuilding the aggregates", True),
        ("all 3 raw events read", True),
    ]
    assert verify(store, store.periods, now=NOW, retention_s=None).ok
    store.close()


def test_the_command_prints_reports_on_stderr_once_it_has_run_a_while(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [100.0]
    report = shared.progress_lines("verify", clock=lambda: now[0])
    report("50,000 raw events read", False)  # in its first seconds: nothing
    now[0] += shared.PROGRESS_AFTER_S
    report("100,000 raw events read", False)
    now[0] += 1
    report("150,000 raw events read", False)  # a count a second after the last line: nothing
    report("all 160,000 raw events read", True)  # a new step: printed
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "verify: 100,000 raw events read (5 s)",
        "verify: all 160,000 raw events read (6 s)",
    ]


@pytest.mark.slow
def test_config_apply_reports_each_step_timed_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config apply` says what it does as `verify` does: the raw events its comparison reads,
    the breakdown dimensions it then recounts (a backfill with no count of its own), the
    rebuild; on stderr, its `--json` document alone on stdout."""
    from typer.testing import CliRunner

    from behavioral_analytics.cli import config as config_cli
    from tests.conftest import cli

    env = {"BA_DATA_DIR": str(tmp_path / "data")}
    cli("init", env=env)
    cli("generate", "--events", "200", "--seed", "4", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)
    monkeypatch.setattr(shared, "PROGRESS_AFTER_S", 0.0)
    fewer = {**env, "BA_BREAKDOWN_VALUES": "5", "BA_TIMEZONE": "Asia/Kolkata"}
    applied = CliRunner().invoke(config_cli.config_app, ["apply", "--yes", "--json"], env=fewer)
    assert applied.exit_code == 0, applied.output
    document = json.loads(applied.stdout)
    assert document["rebuilt"] is True
    lines = [line.rsplit(" (", 1)[0] for line in applied.stderr.splitlines()]
    read = lines[0]
    assert read.startswith("config apply: all ") and read.endswith(" raw events read")
    recounted = len(document["breakdowns_recounted"])
    assert lines == [
        read,
        f"config apply: recounting {recounted} breakdown dimensions from the raw events",
        "config apply: rebuilding the aggregates",
        read,
    ]
