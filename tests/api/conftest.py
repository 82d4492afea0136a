"""Fixtures for the API tests: the app on a real LocalBroker + SQLiteStore in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_helpers import make_settings, run_worker
from fastapi import FastAPI
from fastapi.testclient import TestClient

from behavioral_analytics.api.app import create_app
from behavioral_analytics.broker import Broker
from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store
from behavioral_analytics.wiring import build_broker, build_store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def ports(settings: Settings) -> Iterator[tuple[Broker, Store]]:

    broker = build_broker(settings)
    store = build_store(settings)
    broker.init()
    store.init()
    yield broker, store
    broker.close()
    store.close()


@pytest.fixture
def broker(ports: tuple[Broker, Store]) -> Broker:
    return ports[0]


@pytest.fixture
def store(ports: tuple[Broker, Store]) -> Store:
    return ports[1]


@pytest.fixture
def app(settings: Settings, broker: Broker, store: Store) -> FastAPI:
    # No read cache: tests read right after writing.
    return create_app(settings, broker, store, cache_ttl_s=0)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def process(broker: Broker, store: Store, settings: Settings) -> Callable[[], None]:
    return lambda: run_worker(broker, store, settings)
