"""The `gcp` tests: every test here is marked `gcp` and gets the emulators from the plugin in
tests/emulators.py, with a Firestore database, topic and subscription names of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from behavioral_analytics.wiring import build_store
from tests.emulators import Emulators
from tests.gcp.helpers import LogLines, kept_log_lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gcp)


@pytest.fixture
def names() -> dict[str, str]:
    """Unique topic and subscription names for the test."""
    tag = uuid.uuid4().hex[:8]
    return {
        "pubsub_topic": f"user-events-{tag}",
        "pubsub_subscription": f"analytics-processor-{tag}",
    }


@pytest.fixture
def settings_for(emulators: Emulators, database: str, names: dict[str, str]):
    from behavioral_analytics.settings import load_settings

    def make(**overrides: object):
        values: dict[str, object] = {
            "backend": "gcp",
            "project": emulators.project,
            "firestore_database": database,
            "ack_deadline_s": 10,
            "retry_min_backoff_s": 0,
            "retry_max_backoff_s": 1,
            **names,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def store(settings_for):
    s = build_store(settings_for())
    yield s
    s.close()


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The package's INFO and higher log records during the test."""
    with kept_log_lines() as kept:
        yield kept
