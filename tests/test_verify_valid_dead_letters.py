"""`verify` names the dead letters the worker would now take as events, judged as the worker
judges them: a group call without a group id parses as an event but is refused by the group
rules, so replaying it would count nothing and `verify` does not suggest it."""

from __future__ import annotations

import time
from pathlib import Path

from behavioral_analytics.records import NewDeadLetter
from behavioral_analytics.replay_verdicts import valid_dead_letters
from behavioral_analytics.segment import Receipt, from_segment, prepare
from behavioral_analytics.stores.sqlite import SQLiteStore


def published(call: dict[str, object], now: float) -> bytes:
    """A Segment call's bytes as the collector publishes them."""
    payload = from_segment(call, receipt=Receipt(now))
    assert isinstance(payload, dict), payload
    ((_, _, data),) = prepare([(call, payload)], received_at=now).accepted
    return data


def test_a_group_call_the_group_rules_refuse_is_not_a_valid_dead_letter(tmp_path: Path) -> None:
    now = time.time()
    calls = {
        "g-0": {"type": "group", "messageId": "g-0", "userId": "u1"},  # no groupId
        "t-1": {"type": "track", "messageId": "t-1", "userId": "u1", "event": "search"},
    }
    store = SQLiteStore(tmp_path / "store.db")
    try:
        store.add_dead_letters(
            [
                NewDeadLetter("store_down", "", published(call, now), mid, received_at=now)
                for mid, call in calls.items()
            ]
        )
        ids = {d.message_id: d.id for d in store.dead_letters(10).items}
        assert valid_dead_letters(store) == [ids["t-1"]]
    finally:
        store.close()
