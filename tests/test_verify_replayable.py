"""`verify` offers to replay only the dead letters a replay would count: it judges them under
the worker's limits (BA_MAX_EVENT_AGE_DAYS, not the library's defaults), and a dead letter
refused for its time (`timestamp_too_old`) is shown as not replayable, since a replay keeps
the message's first receipt time and is refused again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event, Limits, parse_message
from behavioral_analytics.records import NewDeadLetter
from behavioral_analytics.replay_verdicts import replayable_dead_letters
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.conftest import cli

DAY = 86400.0


def _payload(event_id: str, timestamp: float) -> bytes:
    return json.dumps(
        {"event_id": event_id, "user_id": "u1", "event_type": "page_view", "timestamp": timestamp}
    ).encode()


def test_a_dead_letter_too_old_under_the_workers_limit_is_not_replayable(tmp_path: Path) -> None:
    now = time.time()
    store = SQLiteStore(tmp_path / "store.db")
    try:
        store.add_dead_letters(
            [
                # Ten days old at receipt: the worker's limit is seven days.
                NewDeadLetter(
                    "timestamp_too_old",
                    "",
                    _payload("old", now - 10 * DAY),
                    "m-old",
                    received_at=now,
                ),
                NewDeadLetter(
                    "timestamp_in_future",
                    "",
                    _payload("ahead", now + DAY),
                    "m-ahead",
                    received_at=now,
                ),
                # Given up on by the broker, but a valid event: a replay counts it.
                NewDeadLetter(
                    "store_down", "", _payload("fine", now - 60), "m-fine", received_at=now
                ),
            ]
        )
        ids = {d.message_id: d.id for d in store.dead_letters(10).items}
        limits = Limits(max_age_s=7 * DAY)
        found = replayable_dead_letters(store, limits=limits)
        assert found == ([ids["m-fine"]], {"timestamp_too_old": 1, "timestamp_in_future": 1})
        report = verify(store, Periods(), now=now, retention_s=None, limits=limits)
        assert report.valid_dead_letters == [ids["m-fine"]]
        assert report.unreplayable_dead_letters == {
            "timestamp_too_old": 1,
            "timestamp_in_future": 1,
        }
        assert report.to_dict()["unreplayable_dead_letters"] == report.unreplayable_dead_letters
    finally:
        store.close()


@pytest.mark.slow
def test_verify_cli_does_not_offer_to_replay_what_the_worker_refused_as_too_old() -> None:
    now = time.time()
    cli("publish", "-", input=_payload("old", now - 10 * DAY) + b"\n")
    cli("worker", "--until-idle")  # BA_MAX_EVENT_AGE_DAYS: 7 by default
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    assert letter["reason"] == "timestamp_too_old"

    report = json.loads(cli("verify", "--json").stdout)
    assert report["valid_dead_letters"] == []
    assert report["unreplayable_dead_letters"] == {"timestamp_too_old": 1}

    text = " ".join(cli("verify").stdout.decode().split())  # as one line, however wrapped
    assert "dlq replay" not in text
    assert "1 dead letter is an event outside the accepted time window" in text
    assert "not replayable" in text and "timestamp_too_old 1" in text


def test_a_reopened_letter_whose_event_is_stored_is_not_counted_nowhere(tmp_path: Path) -> None:
    """A letter replayed and counted under a wider BA_MAX_EVENT_AGE_DAYS, then replayed again
    where the worker refuses it, is open again; its event is counted all the same."""
    now = time.time()
    data = _payload("old", now - 10 * DAY)
    store = SQLiteStore(tmp_path / "store.db")
    try:
        store.add_dead_letters(
            [NewDeadLetter("timestamp_too_old", "", data, "m-old", received_at=now)]
        )
        wider = Limits(max_age_s=15 * DAY)
        event = parse_message(data, message_id="m-old", received_at=now, limits=wider)
        assert isinstance(event, Event)
        assert store.commit([event]).created == 1
        for limits in (Limits(max_age_s=7 * DAY), wider):
            assert replayable_dead_letters(store, limits=limits) == ([], {})
        other = _payload("other", now - 10 * DAY)
        store.add_dead_letters(
            [NewDeadLetter("timestamp_too_old", "", other, "m-other", received_at=now)]
        )
        (still,) = [d.id for d in store.dead_letters(10).items if d.message_id == "m-other"]
        assert replayable_dead_letters(store, limits=Limits(max_age_s=7 * DAY)) == (
            [],
            {"timestamp_too_old": 1},
        )
        assert replayable_dead_letters(store, limits=wider) == ([still], {})
    finally:
        store.close()


@pytest.mark.slow
def test_verify_offers_replay_all_for_more_valid_dead_letters_than_it_names(tmp_path: Path) -> None:
    """500 events given up on by the broker were offered as `dlq replay --id` of the first five
    alone; past five the line gives `--all`, which replays exactly those a replay counts."""
    now = time.time()
    cli("init")
    store = SQLiteStore(tmp_path / "data" / "store.db")
    try:
        store.add_dead_letters(
            [
                NewDeadLetter(
                    "lease_expired", "", _payload(f"e{i}", now - 60), f"m{i}", received_at=now
                )
                for i in range(7)
            ]
        )
    finally:
        store.close()
    text = " ".join(cli("verify").stdout.decode().split())
    assert (
        "7 dead letters are valid events counted nowhere: behavioral-analytics dlq replay --all"
        in text
    ), text
    assert "--id" not in text
