"""20,000 events, 5 % duplicates, 1 % malformed, two workers, three `kill -9`s: exact counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.faults import assert_exact, make_workload, run_with_kills

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [20_000])
def test_exact_under_kill_9(tmp_path: Path, seed: int) -> None:
    data = tmp_path / "data"
    env = {
        "BA_DATA_DIR": str(data),
        "BA_ACK_DEADLINE": "10",  # the shortest Pub/Sub allows: a killed lease returns soon
        "BA_FLUSH_MAX_EVENTS": "500",
        "BA_FLUSH_INTERVAL": "0.5",
        "BA_RETRY_MIN_BACKOFF": "0",
        "BA_FUNNELS": PURCHASE_FUNNEL,
    }
    now = time.time()
    workload = make_workload(20_000, seed, now, behavior=True)
    assert workload.duplicates > 400 and len(workload.malformed) > 80
    broker = LocalBroker(data / "broker.db", ack_deadline_s=10)
    store = SQLiteStore(
        data / "store.db", rules=BehaviorRules(funnels=parse_funnels(PURCHASE_FUNNEL))
    )

    def publish(lines: list[bytes]) -> None:
        broker.publish([OutgoingMessage(line) for line in lines])

    killed_at = run_with_kills(env, publish, workload, store.count_events, seed)
    assert len(killed_at) == 3

    assert broker.backlog() == 0
    snapshot = store.snapshot()
    assert sum(s.sessions for (g, _), s in snapshot.session_stats.items() if g == "day") > 1000
    assert any(step == 4 for _, _, step in snapshot.funnel_users)
    assert sum(snapshot.bot_events.values()) > 0
    assert {link.status for link in store.stored_links()} >= {"active", "refused"}
    assert_exact(store, workload, Periods())
    report = verify(store, Periods(), now=time.time(), retention_s=30 * 86400)
    assert report.ok, report.drift[:5]
    assert report.raw_events == len(workload.distinct)
    dead = {}
    recorded = 0
    cursor = None
    while True:
        page = store.dead_letters(1000, cursor)
        dead.update({d.data: d.reason for d in page.items})
        recorded += len(page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert set(dead) == set(workload.malformed)
    # Once per message sent (a re-sent malformed line is a message of its own), not once more
    # per redelivery after a kill between commit and ack.
    assert recorded == sum(1 for line in workload.lines if line in dead)
    assert all(dead[line] for line in workload.malformed)
    assert {"not_json", "missing_field:user_id", "invalid_timestamp", "not_an_object"} == set(
        dead.values()
    )
