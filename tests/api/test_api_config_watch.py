"""The API watches the configuration recorded with the data: after `config apply` (here a
store recording another time zone), a served API stops, says why in `/readyz` and in its
exit line, instead of answering by the configuration it opened the store with."""

from __future__ import annotations

import socket
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from behavioral_analytics.settings import load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.stores.sqlite.layout import LAYOUT
from behavioral_analytics.wiring import build_api, build_server, build_store_with
from tests.conftest import wait_until


def test_a_served_api_stops_when_the_recorded_configuration_changes(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("behavioral_analytics.api.config_watch.CHECK_S", 0.1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(data_dir=tmp_path / "data", api_port=port)
    server = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 15, "the API to start")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/readyz").json()["checks"].get("configuration") is None
    state = server.config.app.state.api  # type: ignore[union-attr]  # the FastAPI app's
    seen: list[str] = []
    stop = state.stop
    state.stop = lambda: seen.append(state.config_changed)  # held back, to ask /readyz first
    with closing(SQLiteStore(tmp_path / "data" / "store.db", timezone="Europe/Paris")) as other:
        other.record_config(replace=True)  # what `config apply` does
    wait_until(lambda: seen, 15, "the API to see the change")
    answer = httpx.get(f"{base}/readyz")
    assert answer.status_code == 503 and "(timezone)" in answer.json()["checks"]["configuration"]
    stop()  # what the watch called: `wiring.build_server`'s
    thread.join(15)
    assert not thread.is_alive(), "the server kept answering by the old configuration"
    assert "restart this process" in seen[0]


@pytest.mark.parametrize(
    "recorded",
    [
        {"identity_window_hours": 48},
        {"session_gap_minutes": 10},
        {"breakdown_fixed": "page,device"},
    ],
    ids=["identity-window", "session-gap", "breakdown-dimensions"],
)
def test_an_api_counting_by_a_recorded_non_default_value_keeps_serving(
    tmp_path: Path, recorded: dict[str, object]
) -> None:
    """A variable left unset takes the recorded value (README), so an API started without it
    counts by the record. It held the environment's defaults instead, and its watch stopped it
    ~10 s after every start once a session, identity or breakdown setting was recorded with
    another value (`config apply`, or a worker started with it)."""
    data = tmp_path / "data"
    shaped = load_settings(data_dir=data, **recorded)
    with closing(build_store_with(shaped, shaped.stored_config())) as store:
        store.init()
        store.record_config(replace=True)
    app = build_api(load_settings(data_dir=data), config_check_s=0.02)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        state = app.state.api
        reads: list[object] = []
        read = state.store.recorded_config
        state.store.recorded_config = lambda: reads.append(1) or read()
        wait_until(lambda: len(reads) >= 5, 15, "the watch to read the record five times")
        assert state.config_changed is None, state.config_changed
        assert client.get("/readyz").status_code == 200
        # The watch still stops it on a real change.
        state.stop = lambda: None
        with closing(build_store_with(shaped, shaped.stored_config())) as store:
            store.record_config(replace=True)  # unchanged: the same record again
        wait_until(lambda: len(reads) >= 10, 15, "five more reads")
        assert state.config_changed is None, state.config_changed
        with closing(SQLiteStore(data / "store.db", timezone="Europe/Paris")) as other:
            other.record_config(replace=True)
        wait_until(lambda: state.config_changed, 15, "the watch to see the change")


def test_an_api_stops_when_a_newer_release_upgrades_the_store(tmp_path: Path) -> None:
    """The store's layout number raised under a running API (what a newer release's upgrade
    does): the watch's read is refused, and the API stops with that line, as after `config
    apply`, rather than keep reading tables laid out otherwise."""
    data = tmp_path / "data"
    app = build_api(load_settings(data_dir=data), config_check_s=0.02)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        state = app.state.api
        stopped: list[str | None] = []
        state.stop = lambda: stopped.append(state.config_changed)
        assert client.get("/readyz").status_code == 200
        with closing(sqlite3.connect(data / "store.db")) as db:
            db.execute(f"PRAGMA user_version = {LAYOUT + 1}")
        wait_until(lambda: stopped, 15, "the API to see the upgrade")
        answer = client.get("/readyz")
        assert answer.status_code == 503
        line = answer.json()["checks"]["configuration"]
        assert f"upgraded to layout {LAYOUT + 1} by a newer release" in line
        assert stopped == [line]
