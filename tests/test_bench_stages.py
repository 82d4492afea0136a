"""bench/stages.py's clocks on the shipped worker (`bench/pipeline.py`'s (a)): every stage and
the write lock timed, the commit's transaction taken as the store calls it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import pipeline
import stages


def test_a_timed_batch_times_every_stage_and_the_lock(tmp_path: Path) -> None:
    now = time.time()
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": f"u{i % 7}",
                "event_type": "page_view",
                "timestamp": now - 600 + i,
            }
        ).encode()
        for i in range(300)
    ]
    broker = pipeline.publish_all(tmp_path, lines)
    store = pipeline.shipped_store(tmp_path / "store.db")
    worker = pipeline.shipped_worker(broker, store)
    timings = stages.Timings()
    timings.attach(broker, worker, store)
    result = worker.process(broker.pull(300, 1.0))
    assert result is not None and result.created == 300  # the timed transaction took the call
    figures = timings.as_result()
    assert figures["lock_held_s"] > 0
    for stage in stages.STAGES:
        assert figures[f"cpu_{stage}"] > 0, stage
    store.close()
    broker.close()
