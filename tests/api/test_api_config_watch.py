"""The API watches the configuration recorded with the data: after `config apply` (here a
store recording another time zone), a served API stops, says why in `/readyz` and in its
exit line, instead of answering by the configuration it opened the store with."""

from __future__ import annotations

import socket
import threading
from contextlib import closing
from pathlib import Path

import httpx

from behavioral_analytics.settings import load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.wiring import build_server
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
