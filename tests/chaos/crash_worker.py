"""A worker process that dies by SIGKILL when it commits a given event (as an out-of-memory
kill or a native crash would): `python -m tests.chaos.crash_worker DATA_DIR EVENT_ID`.

It runs the real worker loop until the subscription is idle, on a local broker whose leases
last `LEASE_S`, so that the test can run the crash loop in seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.events import Event
from behavioral_analytics.store import CommitResult, NewDeadLetter
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.worker import Worker, WorkerOptions

LEASE_S = 2.0


def open_broker(data: Path) -> LocalBroker:
    return LocalBroker(
        data / "broker.db", ack_deadline_s=LEASE_S, min_backoff_s=0.0, max_backoff_s=0.0
    )


class KillingStore(SQLiteStore):
    """Dies with SIGKILL before committing a batch that holds the deadly event."""

    deadly = ""

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        if any(e.event_id == self.deadly for e in events):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().commit(events, dead_letters, give_up=give_up)


def main() -> None:
    data, deadly = Path(sys.argv[1]), sys.argv[2]
    store = KillingStore(data / "store.db")
    store.deadly = deadly
    options = WorkerOptions(
        flush_max_events=5000, flush_interval_s=0.2, ack_deadline_s=LEASE_S, idle_after_s=0.5
    )
    Worker(open_broker(data), store, options=options).run(threading.Event(), until_idle=True)


if __name__ == "__main__":
    main()
