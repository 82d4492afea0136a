"""`verify`, `rebuild` (`verify --repair`) and `forget` on a Firestore that stops answering
after the store opened: each read of `verify` gives up within the store's admin read deadline
(`reach.ADMIN_READ_DEADLINE_S`), each request of `rebuild` and `forget` within its admin write
deadline (`reach.ADMIN_WRITE_DEADLINE_S`), with one line naming the database and the host (and,
for those that write, how to finish: run again), the command exiting 1 without a traceback;
not after the client library's 300 s of retries with a `RetryError` naming neither.

The store reaches the emulator through a `Relay` (tests/gcp/helpers.py) that the test makes
refuse or hang after the store opened and wrote; the deadlines are lowered to
`SHORT_DEADLINE_S` through the store's `admin_read_deadline_s` and `admin_write_deadline_s`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.cloud import firestore
from typer.testing import CliRunner

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli import behavior as behavior_cli
from behavioral_analytics.cli import verify as verify_cli
from behavioral_analytics.cli.root import app
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.keys import doc_id
from behavioral_analytics.stores.firestore.reach import (
    ADMIN_READ_DEADLINE_S,
    ADMIN_WRITE_DEADLINE_S,
    QUERY_DEADLINE_S,
)
from behavioral_analytics.stores.firestore.schema import AGGREGATES, FORGOTTEN_FIELD
from behavioral_analytics.verification import verify
from tests.contract.builders import without_copies
from tests.emulators import Emulators

from .helpers import Relay, event, gives_up_with_one_line, recipe_payload

SHORT_DEADLINE_S = 2.0
# Well under the library's 300 s: the client's reconnection, the relay's teardown, two cores
# shared with other tests. A request whose last attempt hangs may take the deadline twice.
LIMIT_S = 2 * SHORT_DEADLINE_S + 5.0
FORGOTTEN = "user_3"

pytestmark = pytest.mark.timeout(120)


@dataclass
class Opened:
    store: FirestoreStore
    relay: Relay
    database: str

    def where(self) -> str:
        return f"Firestore database {self.database!r} on the emulator at {self.relay.host}"


def _store(project: str, database: str) -> FirestoreStore:
    client = firestore.Client(project=project, database=database)
    return FirestoreStore(
        client,
        database=database,
        admin_read_deadline_s=SHORT_DEADLINE_S,
        admin_write_deadline_s=SHORT_DEADLINE_S,
    )


@pytest.fixture
def opened(
    emulators: Emulators, database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Opened]:
    """A store opened through a relay, holding the events of three users, the third forgotten
    (a tombstone: a document a rebuild must keep), its reads answered."""
    relay = Relay(emulators.firestore_host)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", relay.host)
    store = _store(emulators.project, database)
    result = store.commit([event(recipe_payload(n, user=n % 3 + 1)) for n in range(12)])
    assert result.created == 12
    assert store.forget(FORGOTTEN).raw_events == 4
    assert store.snapshot().profiles and list(store.iter_raw_events())
    try:
        yield Opened(store, relay, database)
    finally:
        relay.refuse()
        store.close()


def _verify_reads(store: FirestoreStore) -> dict[str, Callable[[], object]]:
    return {"aggregates": store.snapshot, "raw events": lambda: list(store.iter_raw_events())}


def test_verify_reads_give_up_within_their_deadline_when_the_host_refuses(opened: Opened) -> None:
    opened.relay.refuse()
    for read in _verify_reads(opened.store).values():
        gives_up_with_one_line(read, opened.where(), LIMIT_S)


@pytest.mark.parametrize("read", ["aggregates", "raw events"])
def test_verify_reads_give_up_within_their_deadline_when_the_host_hangs(
    opened: Opened, read: str
) -> None:
    opened.relay.hang()
    gives_up_with_one_line(_verify_reads(opened.store)[read], opened.where(), LIMIT_S)


def _run_cli(
    args: list[str], module: Any, name: str, opened: Opened, outage: str, monkeypatch: Any
) -> tuple[int, str, float]:
    """`behavioral-analytics ARGS` in this process on the fixture's store, the host made to
    `outage` ("refuse" or "hang") once the command opened it: exit code, output, seconds."""

    def open_then_outage(config: Any, **_: Any) -> Any:  # opened: the fixture's store
        getattr(opened.relay, outage)()
        return (config, opened.store) if name == "open_reader" else opened.store

    monkeypatch.setattr(module, name, open_then_outage)
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, time.monotonic() - started


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_the_verify_command_exits_1_with_one_line(
    opened: Opened, outage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output, took_s = _run_cli(
        ["verify"], verify_cli, "open_reader", opened, outage, monkeypatch
    )
    assert code == 1 and took_s < LIMIT_S, (code, took_s, output)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert opened.where() in output and "verify read" in output, output
    assert "Traceback" not in output and "RetryError:" not in output.split("): ")[0], output


def test_the_forget_command_exits_1_with_one_line_saying_to_run_it_again(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output, took_s = _run_cli(
        ["forget", "user_1", "--yes"], behavior_cli, "open_store", opened, "refuse", monkeypatch
    )
    assert code == 1 and took_s < LIMIT_S, (code, took_s, output)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and opened.where() in output, output
    assert "run the same forget again to finish" in output and "Traceback" not in output


def test_forget_gives_up_when_the_host_hangs_and_running_it_again_finishes(
    opened: Opened, emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.relay.hang()
    message = gives_up_with_one_line(lambda: opened.store.forget("user_1"), opened.where(), LIMIT_S)
    assert "forget of 'user_1'" in message and "run the same forget again" in message, message
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    again = _store(emulators.project, opened.database)
    try:
        again.forget("user_1")
        assert again.profile("user_1") is None
        assert not [e for e in again.iter_raw_events() if e.user_id == "user_1"]
        report = verify(again, Periods("UTC"), now=time.time(), retention_s=None)
        assert report.ok, report.drift
    finally:
        again.close()


def test_a_rebuild_cut_short_keeps_the_tombstones_and_verify_repair_finishes_it(
    opened: Opened, emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened.store
    before = store.snapshot()
    gateway = store.gateway
    delete_all = gateway.delete_all

    def delete_then_refuse(collection: str, **kwargs: Any) -> None:
        delete_all(collection, **kwargs)
        if collection == AGGREGATES:  # the aggregates deleted, none written yet
            opened.relay.refuse()

    monkeypatch.setattr(gateway, "delete_all", delete_then_refuse)
    message = gives_up_with_one_line(
        lambda: store.rebuild(store.iter_raw_events()), opened.where(), LIMIT_S
    )
    assert "nothing was lost" in message and "verify --repair" in message, message

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    again = _store(emulators.project, opened.database)
    try:
        tombstone = again.db.collection(AGGREGATES).document(doc_id("user_", FORGOTTEN)).get()
        assert tombstone.exists and tombstone.get(FORGOTTEN_FIELD) is not None
        periods = Periods("UTC")
        repaired = verify(again, periods, now=time.time(), retention_s=None, repair=True)
        assert repaired.repaired and not repaired.ok
        assert verify(again, periods, now=time.time(), retention_s=None).ok
        assert without_copies(again.snapshot()) == without_copies(before)  # a rebuild drops them
    finally:
        again.close()


def test_the_admin_deadlines_are_seconds() -> None:
    """A verify read waits no less than a query; a write step rides out a minute or so;
    both far below the library's 300 s."""
    assert QUERY_DEADLINE_S <= ADMIN_READ_DEADLINE_S <= 60.0
    assert 60.0 <= ADMIN_WRITE_DEADLINE_S <= 120.0
