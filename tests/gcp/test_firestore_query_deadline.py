"""Reads at query time on a Firestore that stops answering after the store opened: a query, an
API request (the dashboard's), the dead-letter reads and writes of `dlq` give up within the
store's query deadline (`reach.QUERY_DEADLINE_S`) with one line naming the database and the
host, a `TransientStoreError` (the API's 503), not after the client library's 300 s of retries
with a `RetryError`.

The store reaches the emulator through a relay on a loopback port of its own, so the test can
make that host stop answering after the store opened and wrote, while the session's emulator
goes on serving the other tests: `refuse` closes the relay and the connections through it (the
host then refuses connections, as a stopped emulator's does), `hang` keeps them open and
forwards nothing more (a host that no longer answers). The deadline is lowered to
`SHORT_DEADLINE_S` through the store's `query_deadline_s`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from behavioral_analytics.api.app import create_app
from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.records import NewDeadLetter
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.reach import OPEN_DEADLINE_S, QUERY_DEADLINE_S
from tests.emulators import Emulators

from .helpers import Relay, event, gives_up_with_one_line, recipe_payload

SHORT_DEADLINE_S = 2.0
# Well under the library's 300 s: a start of the client's reconnection, the relay's teardown,
# two cores shared with other tests. A read that hangs may take the deadline twice (reach.py).
LIMIT_S = 2 * SHORT_DEADLINE_S + 5.0
READ_KEY = "rk_query_deadline"


@dataclass
class Opened:
    store: FirestoreStore
    relay: Relay
    database: str
    dead_letter_id: str


@pytest.fixture
def opened(
    emulators: Emulators, database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Opened]:
    """A store opened through a relay, holding a few events and a dead letter, its reads
    answered."""
    relay = Relay(emulators.firestore_host)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", relay.host)
    client = firestore.Client(project=emulators.project, database=database)
    store = FirestoreStore(client, database=database, query_deadline_s=SHORT_DEADLINE_S)
    dead_letter = NewDeadLetter("invalid_json", "not JSON", b"{", "msg-dead")
    result = store.commit([event(recipe_payload(n, user=1)) for n in range(5)], [dead_letter])
    assert result.created == 5 and result.dead_letters == 1
    assert store.series("hour") and store.profile("user_1") is not None
    (letter,) = store.dead_letters().items
    try:
        yield Opened(store, relay, database, letter.id)
    finally:
        relay.refuse()
        store.close()


def _reads(opened: Opened) -> dict[str, Callable[[], object]]:
    store = opened.store
    return {
        "series": lambda: store.series("hour"),
        "profile": lambda: store.profile("user_1"),
        "timeline": lambda: store.timeline("user_1"),
        "dead letters": lambda: store.dead_letters(),
        "dead letters count": store.count_dead_letters,
        "dead letter replayed": lambda: store.mark_replayed([opened.dead_letter_id], time.time()),
    }


def test_reads_give_up_within_the_query_deadline_when_the_host_refuses(opened: Opened) -> None:
    opened.relay.refuse()
    for read in _reads(opened).values():
        gives_up_with_one_line(read, _where(opened), LIMIT_S)


@pytest.mark.parametrize("read", ["series", "profile", "dead letters"])
def test_reads_give_up_within_the_query_deadline_when_the_host_hangs(
    opened: Opened, read: str
) -> None:
    opened.relay.hang()
    gives_up_with_one_line(_reads(opened)[read], _where(opened), LIMIT_S)


def test_the_api_answers_503_within_the_query_deadline(
    opened: Opened, settings_for: Any, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    settings = settings_for(read_keys=READ_KEY, write_keys="wk_query_deadline")
    broker = LocalBroker(tmp_path / "broker.db")
    app = create_app(settings, broker, opened.store, cache_ttl_s=0)
    headers = {"X-Read-Key": READ_KEY}
    try:
        with TestClient(app) as client:
            assert client.get("/v1/series", headers=headers).status_code == 200
            opened.relay.refuse()
            for path in ("/v1/series", "/v1/profiles/user_1", "/v1/dead-letters"):
                started = time.monotonic()
                response = client.get(path, headers=headers)
                took_s = time.monotonic() - started
                assert response.status_code == 503, (path, response.text)
                assert "store_unavailable" in response.text, response.text
                assert took_s < LIMIT_S, (path, took_s)
    finally:
        broker.close()


def test_the_query_deadline_is_seconds() -> None:
    """Below the dashboard's 15 s refresh; no longer than opening the store may take."""
    assert 1.0 <= QUERY_DEADLINE_S < 15.0 and QUERY_DEADLINE_S <= OPEN_DEADLINE_S


def _where(opened: Opened) -> str:
    return f"Firestore database {opened.database!r} on the emulator at {opened.relay.host}"
