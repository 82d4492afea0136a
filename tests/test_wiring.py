"""`wiring`: which adapter the settings select, and the metrics exporter's `auto` rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.settings import ConfigError, load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.wiring import build_broker, build_exporter, build_store, worker_options
from behavioral_analytics.worker import WorkerOptions


def test_the_local_backend_builds_the_sqlite_adapters(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    broker, store = build_broker(settings), build_store(settings)
    try:
        assert isinstance(broker, LocalBroker) and isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "data" / "store.db"
    finally:
        broker.close()
        store.close()


def test_a_worker_built_without_options_batches_as_the_worker_command_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("BA_FLUSH_INTERVAL", "BA_FLUSH_MAX_EVENTS", "BA_ACK_DEADLINE"):
        monkeypatch.delenv(name, raising=False)
    shipped, bare = worker_options(load_settings()), WorkerOptions()
    assert (bare.flush_interval_s, bare.flush_max_events, bare.ack_deadline_s) == (
        shipped.flush_interval_s,
        shipped.flush_max_events,
        shipped.ack_deadline_s,
    )
    assert shipped.flush_max_events == 5_000  # README's configuration table


def test_auto_exports_nothing_against_the_emulators(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    settings = load_settings(backend="gcp", project="demo-x", metrics_exporter="auto")
    with caplog.at_level("INFO"):
        assert build_exporter(settings) is None
    assert "metrics export off: the Google emulators are in use" in caplog.text


def test_auto_exports_nothing_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials() -> None:
        raise DefaultCredentialsError("none here")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    settings = load_settings(backend="gcp", project="demo-x", metrics_exporter="auto")
    assert build_exporter(settings) is None


def test_the_local_backend_exports_nothing_by_default() -> None:
    assert build_exporter(load_settings()) is None


def test_a_refused_duration_is_shown_in_seconds_beside_the_recorded_one(tmp_path: Path) -> None:
    # BA_SESSION_GAP is set in minutes: "BA_SESSION_GAP=600" would misquote the user's "10".
    store = build_store(load_settings(data_dir=tmp_path / "data"))
    store.record_config()
    store.close()
    with pytest.raises(ConfigError) as refused:
        build_store(load_settings(data_dir=tmp_path / "data", session_gap_minutes=10))
    assert str(refused.value).startswith(
        "BA_SESSION_GAP (600 s) differs from what the store recorded (1800 s): unset it"
    )


@pytest.mark.parametrize("name", ["t2", "9events", "goog-events", "user events"])
def test_a_name_pub_sub_refuses_is_refused_with_the_settings(name: str) -> None:
    """`PUBSUB_TOPIC=t2` passed the settings and failed later, in `init` (`400 Invalid [topics]
    name`) and in every publish (trial)."""
    with pytest.raises(ConfigError, match=f"invalid PUBSUB_TOPIC: {name!r} is not a Pub/Sub name"):
        load_settings(pubsub_topic=name)
    for good in ("a~b+c%d.e_f", "projects/p/topics/user-events"):
        assert load_settings(pubsub_topic=good).pubsub_topic == good
