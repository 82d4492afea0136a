"""Property tests against the API's own OpenAPI schema: whatever the input, never a 500."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_helpers import READ_KEY, WRITE_KEY, make_settings, recipe_event
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from behavioral_analytics.api.app import create_app
from behavioral_analytics.wiring import build_broker, build_store

KEYS = {"X-Write-Key": WRITE_KEY, "X-Read-Key": READ_KEY}


# Built at import: schemathesis generates one test per operation from a schema object.
_data_dir = tempfile.TemporaryDirectory(prefix="ba-schema-")
_config = make_settings(Path(_data_dir.name))
_broker = build_broker(_config)
_store = build_store(_config)
_broker.init()
_store.init()
_app = create_app(_config, _broker, _store, cache_ttl_s=0)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module", autouse=True)
def _ports() -> Iterator[None]:
    with TestClient(_app) as client:  # some data, so that reads have something to page through
        client.post("/v1/events", json=[recipe_event(i) for i in range(5)], headers=KEYS)
    yield
    _broker.close()
    _store.close()
    _data_dir.cleanup()


# One test per operation, each with its own id: `schema.parametrize()` gives all of them one
# node id, and pytest-xdist, which hands tests out by id, then runs one operation of 29.
OPERATIONS = {
    operation.label: operation for operation in (r.ok() for r in schema.get_all_operations())
}


@pytest.mark.slow
@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_no_input_makes_the_api_fail(label: str, data: st.DataObject) -> None:
    case = data.draw(OPERATIONS[label].as_strategy(), label="case")
    case.call_and_validate(headers=KEYS, checks=[not_a_server_error])
