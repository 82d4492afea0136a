"""The growth run (`bench/pipeline.py --grow`): after every step a control on the first step's
first events, the last step against the first as measured and divided by its control, each
step's store check outside the timer, the first step again side by side with one more step on
the grown store, and `verify` on the grown store."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import pipeline


def test_the_last_step_is_printed_as_measured_and_divided_by_its_control() -> None:
    # The control ran at half its first speed by the last step; the grown store kept the
    # same share of its control as at the first step by events/s.
    line = pipeline.grown((4000.0, 4000.0), (2000.0, 3000.0), (5000.0, 5000.0), (2500.0, 5000.0))
    assert line == (
        "50% of its events/s, 75% by CPU; each against its control: "
        "100% of its events/s, 75% by CPU"
    )


def test_slices_are_whole_batches_but_the_last() -> None:
    assert pipeline.slice_bounds(200_000, 10, 5000) == [
        range(i, i + 20_000) for i in range(0, 200_000, 20_000)
    ]
    assert pipeline.slice_bounds(1100, 4, 100) == [
        range(0, 200),
        range(200, 400),
        range(400, 600),
        range(600, 800),
        range(800, 1000),
        range(1000, 1100),
    ]
    # Fewer events than a batch: one slice, never an empty one.
    assert pipeline.slice_bounds(300, 10, 5000) == [range(0, 300)]


def test_slices_combine_as_all_their_events_over_all_their_seconds() -> None:
    # 100 events in 1 s (2 CPU-s), then 300 in 1 s (3 CPU-s): 400 in 2 s, 5 CPU-s.
    assert pipeline.combined([(100, (100.0, 50.0)), (300, (300.0, 100.0))]) == (200.0, 80.0)


@pytest.mark.slow
def test_every_step_runs_the_control_on_the_first_steps_first_events_and_checks_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BA_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("BA_FLUSH_MAX_EVENTS", "100")
    monkeypatch.setenv("BA_FUNNELS", PURCHASE_FUNNEL)  # as `main` sets it
    chunks: list[list[bytes]] = []
    stores: list[Path] = []
    controls: list[list[bytes]] = []
    checks: list[Path] = []
    step = pipeline.worker_step
    check = SQLiteStore.check_files

    def worker_step(
        data_dir: Path, broker: object, store: SQLiteStore, chunk: list[bytes]
    ) -> pipeline.Rates:
        chunks.append(chunk)
        stores.append(store.path)
        return step(data_dir, broker, store, chunk)  # type: ignore[arg-type]  # the bench's own

    def control_step(data_dir: Path, lines: list[bytes]) -> tuple[pipeline.Rates, ...]:
        controls.append(list(lines))
        return (1000.0, 1000.0), (2000.0, 2000.0)

    def check_files(store: SQLiteStore) -> None:
        checks.append(store.path)
        check(store)

    monkeypatch.setattr(pipeline, "worker_step", worker_step)
    monkeypatch.setattr(pipeline, "control_step", control_step)
    monkeypatch.setattr(SQLiteStore, "check_files", check_files)
    args = argparse.Namespace(
        grow_to=1500,
        grow_steps=3,
        grow_control=200,
        grow_slices=5,
        users=300,
        seed=5,
        max_seconds=600.0,
    )
    pipeline.grow(args)
    printed = capsys.readouterr().out
    steps, paired = chunks[:3], chunks[3:]
    assert len(controls) == 3
    assert all(lines == steps[0][:200] for lines in controls)
    # One check per worker run, made before the timer; the worker's own start skips it.
    assert len(checks) == 13 and set(checks) == set(stores)
    # Side by side: five slices of 100 each way, the fresh store first in every other slice;
    # the fresh one takes the first step's events again, the grown one as many new events.
    grown = stores[0]
    assert len(paired) == 10 and all(len(lines) == 100 for lines in paired)
    fresh_first = [stores[3 + 2 * i] != grown for i in range(5)]
    assert fresh_first == [True, False, True, False, True]
    fresh = [p for p, where in zip(paired, stores[3:], strict=True) if where != grown]
    further = [p for p, where in zip(paired, stores[3:], strict=True) if where == grown]
    assert [line for lines in fresh for line in lines] == steps[0]
    seen = {line for lines in steps for line in lines}
    assert len({line for lines in further for line in lines} - seen) == 500
    assert "side by side, in 5 alternating slices: the first step's 500 events again" in printed
    assert "(1,500 to 2,000 events)" in printed
    assert "the grown store's step against the first step's, side by side: " in printed
    assert "verify on the grown store: ok" in printed


@pytest.mark.slow
def test_a_small_growth_run_prints_every_step_with_its_control_and_verifies(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "pipeline.py"),
            "--grow",
            "--grow-to",
            "2000",
            "--grow-steps",
            "2",
            "--grow-control",
            "300",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("stored events"))
    assert header.split()[-4:] == ["control", "ev/s", "control", "ev/CPU-s"]
    rows = [line.split() for line in lines if line.lstrip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1,000", "2,000"]
    assert all(len(row) == len(rows[0]) and float(row[-1].replace(",", "")) > 0 for row in rows)
    assert any(line.startswith("control: the first 300 events of the first step") for line in lines)
    assert any(
        line.startswith("last step against the first: ") and "each against its control: " in line
        for line in lines
    )
    assert any(
        line.startswith("the grown store's step against the first step's, side by side: ")
        for line in lines
    )
    assert "verify on the grown store: ok" in lines
