"""`dlq replay --all` replays only the dead letters the worker would take now, judged as
`verify` judges them: one refused for its time (a replay keeps its first receipt time), one
that is not JSON, or a collector's rejection (what the client sent) stays, not replayed, and
still counted, and the command says how many it left and why. `--id` replays what it names,
with a warning per dead letter the worker would refuse again. `dlq list` shows ids whole in
80 columns, to be pasted into `--id`."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from behavioral_analytics.broker import BrokerError
from behavioral_analytics.cli import dlq
from behavioral_analytics.records import DeadLetter, NewDeadLetter, Page
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import cli

DAY = 86400.0
WIDE = {"COLUMNS": "300"}


def _event(user: str, timestamp: float) -> bytes:
    return json.dumps(
        {"event_id": f"e-{user}", "user_id": user, "event_type": "signup", "timestamp": timestamp}
    ).encode()


def _record(tmp_path: Path, *letters: NewDeadLetter) -> dict[str, str]:
    """Add `letters` to the local store; their ids by message id."""
    store = SQLiteStore(tmp_path / "data" / "store.db")
    try:
        store.add_dead_letters(list(letters))
        return {d.message_id: d.id for d in store.dead_letters(100).items}
    finally:
        store.close()


def _replayed(env: dict[str, str] | None = None) -> dict[str, bool]:
    listed = json.loads(cli("dlq", "list", "--json", env=env).stdout)["items"]
    return {d["message_id"]: d["replayed_at"] is not None for d in listed}


def _err(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().strip().splitlines()


@pytest.mark.slow
def test_replay_all_replays_what_the_worker_takes_and_names_what_it_left(tmp_path: Path) -> None:
    now = time.time()
    cli("init")
    _record(
        tmp_path,
        NewDeadLetter(
            "timestamp_too_old", "", _event("old", now - 10 * DAY), "m-old", received_at=now
        ),
        NewDeadLetter(
            "timestamp_in_future", "", _event("ahead", now + DAY), "m-ahead", received_at=now
        ),
        NewDeadLetter("not_json", "", b"not json", "m-garbled", received_at=now),
        # The broker gave up on it (a store outage outlasted every attempt): a valid event.
        NewDeadLetter(
            "store outage", "", _event("fine", now - 60), "m-fine", source="broker", received_at=now
        ),
    )

    result = cli("dlq", "replay", "--all", env=WIDE)
    assert _err(result) == [
        "replayed 1 dead letter to user-events",
        "left 3 dead letters the worker would refuse again: not_json 1, timestamp_in_future 1, "
        "timestamp_too_old 1; `dlq replay --id ID` replays one anyway",
    ]
    assert _replayed() == {"m-old": False, "m-ahead": False, "m-garbled": False, "m-fine": True}
    report = json.loads(cli("verify", "--json").stdout)
    assert report["unreplayable_dead_letters"] == {"timestamp_too_old": 1, "timestamp_in_future": 1}

    cli("worker", "--until-idle")
    profile = json.loads(cli("query", "profile", "fine", "--json").stdout)
    assert profile["total_events"] == 1
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 4  # refused: none new


@pytest.mark.slow
def test_replay_all_judges_by_the_workers_limits_from_the_settings(tmp_path: Path) -> None:
    now = time.time()
    env = {**WIDE, "BA_MAX_EVENT_AGE_DAYS": "30", "BA_RAW_RETENTION_DAYS": "60"}
    cli("init", env=env)
    _record(
        tmp_path,
        # Refused under the default 7 days; the worker now takes 30.
        NewDeadLetter(
            "timestamp_too_old", "", _event("a", now - 10 * DAY), "m-10d", received_at=now
        ),
        NewDeadLetter(
            "timestamp_too_old", "", _event("b", now - 40 * DAY), "m-40d", received_at=now
        ),
    )
    result = cli("dlq", "replay", "--all", env=env)
    assert _err(result) == [
        "replayed 1 dead letter to user-events",
        "left 1 dead letter the worker would refuse again: timestamp_too_old 1; "
        "`dlq replay --id ID` replays one anyway",
    ]
    assert _replayed(env) == {"m-10d": True, "m-40d": False}


@pytest.mark.slow
def test_replay_all_with_nothing_the_worker_takes_says_so_and_leaves_the_collectors(
    tmp_path: Path,
) -> None:
    now = time.time()
    cli("init")
    segment_call = {"type": "track", "event": "", "userId": "u1", "messageId": "c-1"}
    _record(
        tmp_path,
        NewDeadLetter(
            "timestamp_too_old", "", _event("old", now - 10 * DAY), "m-old", received_at=now
        ),
        # The collector's rejection: the call as its client sent it.
        NewDeadLetter(
            "empty_field:event_type",
            "event is empty or only whitespace",
            json.dumps(segment_call).encode(),
            "c-1",
            source="collector",
            received_at=now,
            retry_fingerprint="f" * 32,
        ),
    )
    result = cli("dlq", "replay", "--all", env=WIDE)
    assert result.returncode == 0
    assert _err(result) == [
        "nothing to replay",
        "left 1 dead letter the worker would refuse again: timestamp_too_old 1; "
        "`dlq replay --id ID` replays one anyway",
        "left 1 dead letter the collector refused: each holds what its client sent, not an event "
        "the worker takes; the client sends it again",
    ]
    assert _replayed() == {"m-old": False, "c-1": False}


@pytest.mark.slow
def test_replay_id_replays_a_refused_one_with_a_warning(tmp_path: Path) -> None:
    now = time.time()
    cli("init")
    ids = _record(
        tmp_path,
        NewDeadLetter(
            "timestamp_too_old", "", _event("old", now - 10 * DAY), "m-old", received_at=now
        ),
        NewDeadLetter("store outage", "", _event("fine", now), "m-fine", received_at=now),
    )
    result = cli("dlq", "replay", "--id", ids["m-old"], "--id", ids["m-fine"], env=WIDE)
    assert _err(result) == [
        f"warning: dead letter {ids['m-old']}: the worker would refuse it again: "
        "timestamp_too_old; replaying it as asked",
        "replayed 2 dead letters to user-events",
    ]
    assert _replayed() == {"m-old": True, "m-fine": True}


@pytest.mark.slow
def test_a_replay_the_worker_refuses_again_shows_again_as_not_replayed(tmp_path: Path) -> None:
    # Judged under the shell's 30 days, refused by a worker keeping the default 7.
    now = time.time()
    cli("init")
    _record(
        tmp_path,
        NewDeadLetter(
            "timestamp_too_old", "", _event("old", now - 10 * DAY), "m-old", received_at=now
        ),
    )
    wider = {**WIDE, "BA_MAX_EVENT_AGE_DAYS": "30", "BA_RAW_RETENTION_DAYS": "60"}
    assert (
        _err(cli("dlq", "replay", "--all", env=wider))[0] == "replayed 1 dead letter to user-events"
    )
    assert _replayed() == {"m-old": True}
    cli("worker", "--until-idle")
    assert _replayed() == {"m-old": False}
    report = json.loads(cli("verify", "--json").stdout)
    assert report["unreplayable_dead_letters"] == {"timestamp_too_old": 1}
    assert json.loads(cli("dlq", "list", "--json").stdout)["total"] == 1


@pytest.mark.slow
def test_a_collectors_letter_replayed_by_id_and_refused_again_is_a_new_worker_letter(
    tmp_path: Path,
) -> None:
    """docs/cli.md: the collector's dead letter holds the call as sent, so the worker's refusal
    of it has the worker's reason and fingerprint: a new dead letter (source worker); the
    collector's stays replayed. Nothing is lost and the warning says where it goes."""
    now = time.time()
    cli("init")
    call = {"type": "track", "event": "no who", "messageId": "c-2"}
    ids = _record(
        tmp_path,
        NewDeadLetter(
            "missing_field:userId",
            "userId or anonymousId is required",
            json.dumps(call).encode(),
            "c-2",
            source="collector",
            received_at=now,
            retry_fingerprint="e" * 32,
        ),
    )
    result = cli("dlq", "replay", "--id", ids["c-2"], env=WIDE)
    assert _err(result) == [
        f"warning: dead letter {ids['c-2']}: the collector refused it: it holds the call as its "
        "client sent it, not an event (a refusal by the worker is a new dead letter, from source "
        "worker); replaying it as asked",
        "replayed 1 dead letter to user-events",
    ]
    cli("worker", "--until-idle")
    listed = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    by_source = {d["source"]: d for d in listed}
    assert sorted(by_source) == ["collector", "worker"], listed
    assert by_source["collector"]["replayed_at"] is not None
    assert by_source["worker"]["replayed_at"] is None
    assert by_source["worker"]["message_id"] == "c-2"


class _FirestoreLikeBox:
    """Dead letters with Firestore's ids: 32 hex characters (their fingerprints)."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        self.letters = letters

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        return Page(self.letters[:limit], None)

    def count_dead_letters(self) -> int:
        return len(self.letters)


def test_the_list_shows_each_id_whole_in_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    letters = [
        DeadLetter(
            "missing_field:user_id",
            "userId or anonymousId is required",
            json.dumps({"type": "track", "event": "Signed Up", "properties": {}}).encode(),
            f"m-{n}",
            source="collector",
            received_at=1_764_320_000.0,
            id=f"{n}3f9c2e1b7d64f0e9a8b7c6d5e4f3a2b"[:32],
            recorded_at=1_764_320_001.0,
        )
        for n in range(3)
    ]
    monkeypatch.setattr(dlq, "open_store", lambda config: _FirestoreLikeBox(letters))
    out = io.StringIO()
    monkeypatch.setattr(dlq, "console", Console(file=out, width=80))
    result = CliRunner().invoke(dlq.dlq_app, ["list"])
    assert result.exit_code == 0, result.output
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    for letter in letters:
        assert any(letter.id in line for line in lines), "\n".join(lines)


def test_a_letter_whose_parsing_raises_is_judged_unprocessable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from behavioral_analytics import replay_verdicts

    def raises(data: bytes, **_: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(replay_verdicts, "judged", raises)
    letter = DeadLetter("not_json", "", b"[[[[", "m-1", received_at=time.time(), id="1")
    assert replay_verdicts.replay_refusal(letter) == "unprocessable"


def test_replay_refuses_both_id_and_all_and_names_an_unknown_id() -> None:
    cli("init")
    both = cli("dlq", "replay", "--id", "1", "--all", check=False)
    assert both.returncode == 2 and b"not both" in both.stderr
    unknown = cli("dlq", "replay", "--id", "999", check=False)
    assert unknown.returncode == 1
    assert b"no dead letter with id '999': nothing replayed" in unknown.stderr


def test_replay_id_of_a_request_refused_unread_replays_nothing(tmp_path: Path) -> None:
    """It holds no byte of what was sent: a replay would only make an `empty_message`."""
    now = time.time()
    cli("init")
    unread = NewDeadLetter(
        "request:too_large",
        "the whole request to batch (not read): request body of 700,000 bytes > 512,000",
        b"",
        "m-unread",
        source="collector",
        received_at=now,
    )
    ids = _record(tmp_path, unread)
    result = cli("dlq", "replay", "--id", ids["m-unread"], env=WIDE)
    assert _err(result) == [
        f"warning: dead letter {ids['m-unread']} holds nothing (the collector refused the "
        "request before reading it: its detail says why and its size): not replayed",
        "nothing to replay",
    ]
    assert _replayed() == {"m-unread": False}


def test_letters_published_but_not_marked_replayed_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[object] = []

    class Broker:
        def publish(self, messages: list[object]) -> None:
            published.extend(messages)

    class Store:
        def mark_replayed(self, ids: list[str], at: float) -> None:
            raise sqlite3.OperationalError("database is locked")

    said = io.StringIO()
    monkeypatch.setattr(dlq, "err_console", Console(file=said, width=300))
    monkeypatch.setattr(
        "behavioral_analytics.cli.errors.err_console", Console(file=said, width=300)
    )
    letter = DeadLetter("store outage", "", b"{}", "m-1", id="7")
    with pytest.raises(typer.Exit) as exited:
        dlq._replay(Store(), Broker(), [letter])  # type: ignore[arg-type]
    assert exited.value.exit_code == 1 and len(published) == 1
    assert said.getvalue().startswith(
        "error: published 1 dead letter again, but could not mark it replayed (a file of the "
        "local data stayed locked (database is locked): another process holds its write lock"
    )
    assert "replaying again counts an event once" in said.getvalue()


def test_a_chunk_that_fails_to_publish_leaves_the_earlier_ones_marked_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marked: list[str] = []

    class Broker:
        calls = 0

        def publish(self, messages: list[object]) -> None:
            Broker.calls += 1
            if Broker.calls == 2:
                raise BrokerError("the broker is gone")

    class Store:
        def mark_replayed(self, ids: list[str], at: float) -> None:
            marked.extend(ids)

    said = io.StringIO()
    monkeypatch.setattr(dlq, "REPLAY_CHUNK", 2)
    monkeypatch.setattr(
        "behavioral_analytics.cli.errors.err_console", Console(file=said, width=300)
    )
    letters = [DeadLetter("x", "", b"{}", f"m-{i}", id=str(i)) for i in range(5)]
    with pytest.raises(typer.Exit) as exited:
        dlq._replay(Store(), Broker(), letters)  # type: ignore[arg-type]
    assert exited.value.exit_code == 1 and marked == ["0", "1"]
    assert said.getvalue().startswith(
        "error: replayed 2 of 5 dead letters; publishing the others failed (the broker is "
        "gone): they stay not replayed, where `dlq replay --all` finds them"
    )

    class Refusing(Store):
        def mark_replayed(self, ids: list[str], at: float) -> None:
            if ids != ["0", "1"]:
                raise sqlite3.DatabaseError("disk image is malformed")
            marked.extend(ids)

    Broker.calls, said = -10, io.StringIO()
    monkeypatch.setattr(
        "behavioral_analytics.cli.errors.err_console", Console(file=said, width=300)
    )
    with pytest.raises(typer.Exit):
        dlq._replay(Refusing(), Broker(), letters)  # type: ignore[arg-type]
    assert said.getvalue().startswith(
        "error: published 2 dead letters again, but could not mark them replayed (disk image "
        "is malformed); the 2 before them were marked; the 1 after them were not published: "
    )


def test_replay_id_of_an_empty_message_says_it_is_one(tmp_path: Path) -> None:
    cli("init")
    empty = NewDeadLetter("empty_message", "", b"", "m-empty", received_at=time.time())
    ids = _record(tmp_path, empty)
    result = cli("dlq", "replay", "--id", ids["m-empty"], env=WIDE)
    assert _err(result)[0] == (
        f"warning: dead letter {ids['m-empty']} holds nothing (an empty message): not replayed"
    )


def _offline_call() -> None:
    """A call dated 8 days ago through the collector (`init` first): refused for its age."""
    from fastapi.testclient import TestClient

    from behavioral_analytics.api.app import create_app
    from behavioral_analytics.settings import load_settings
    from behavioral_analytics.wiring import build_broker, build_store

    cli("init")
    sent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 8 * DAY))
    settings = load_settings(write_keys="wk", read_keys="rk", rate_limit=100_000)
    broker, store = build_broker(settings), build_store(settings)
    try:
        with TestClient(create_app(settings, broker, store, cache_ttl_s=0)) as client:
            call = {"messageId": "offline-1", "userId": "kim", "event": "Played", "timestamp": sent}
            answer = client.post("/v1/track", json=call, headers={"Authorization": "Basic d2s6"})
        assert answer.status_code == 200, answer.text
        assert [r["reason"] for r in answer.json()["rejected"]] == ["timestamp_too_old"]
    finally:
        broker.close()
        store.close()


@pytest.mark.slow
def test_a_call_refused_for_its_age_is_counted_once_the_bound_takes_it(tmp_path: Path) -> None:
    """A phone that was offline sends a week-old call: the collector answers 200 and refuses it
    (`timestamp_too_old`), so Segment's library never sends it again. Its dead letter held the
    call as sent, which the worker cannot take: raising `BA_MAX_EVENT_AGE_DAYS` recovered
    nothing, and `verify` counted it nowhere. It keeps the event now."""
    _offline_call()
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    assert letter["source"] == "collector" and letter["attributes"] == {"kept_as": "event"}
    report = json.loads(cli("verify", "--json", check=False).stdout)
    assert report["unreplayable_dead_letters"] == {"timestamp_too_old": 1}

    wider = {"BA_MAX_EVENT_AGE_DAYS": "10", **WIDE}
    assert _err(cli("dlq", "replay", "--all", env=wider)) == [
        "replayed 1 dead letter to user-events"
    ]
    cli("worker", "--until-idle", env=wider)
    profile = json.loads(cli("query", "profile", "kim", "--json", env=wider).stdout)
    assert profile["total_events"] == 1
    report = json.loads(cli("verify", "--json", env=wider).stdout)
    assert report["ok"] and report["unreplayable_dead_letters"] == {}


@pytest.mark.slow
def test_a_kept_collector_letter_replayed_again_warns_that_a_refusal_is_a_new_letter() -> None:
    _offline_call()
    (letter,) = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    assert "replayed already" not in " ".join(_err(cli("dlq", "replay", "--id", letter["id"])))
    cli("worker", "--until-idle")  # the bound still refuses it: a dead letter of the worker's
    again = _err(cli("dlq", "replay", "--id", letter["id"], env=WIDE))
    assert again[0].startswith(f"warning: dead letter {letter['id']} was replayed already (")
    assert again[0].endswith(
        "an event counted then is a duplicate now, and a refusal is a new dead letter, from "
        "source worker; replaying it as asked"
    )
    listed = json.loads(cli("dlq", "list", "--json").stdout)["items"]
    # The collector's letter stays replayed; the worker's refusal is a letter of its own.
    assert sorted((d["source"], d["replayed_at"] is None) for d in listed) == [
        ("collector", False),
        ("worker", True),
    ]
