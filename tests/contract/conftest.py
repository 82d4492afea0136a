"""The Store contract suite runs every test once per store: `sqlite` always, `firestore` on
Google's Firestore emulator (the `gcp` marker; where the emulators are missing, that leg
skips with the emulator fixture's loud reason, it never passes vacuously).

A test asks for `store` (one store, the default rules) or `make_store` (a factory taking
behavior rules, for scenarios that configure the store). Every store a test makes shares one
backing database (one SQLite file, one Firestore database), as several workers do, and the
test's `clock` (a `FakeClock` at `builders.NOW`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.store import Store
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.conftest import FakeClock
from tests.contract.builders import DAY, NOW, PURCHASE, MakeStore

# The emulator fixtures, visible to this directory's tests.

BACKENDS = ["sqlite", pytest.param("firestore", marks=pytest.mark.gcp)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store under test: `sqlite` or `firestore`."""
    return request.param


@pytest.fixture
def make_store(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MakeStore]:
    """`make(*, raw_retention_s=30 days, behavior=True, timezone="UTC", **rules)`: a new store
    instance on the test's backing data (`timezone`: the reporting time zone). `rules` are
    `BehaviorRules` fields (the purchase funnel unless `funnels` is given). `behavior=False`
    turns the behavioral read model off where a store can (Firestore); the SQLite store always
    keeps it. Closed after the test."""
    made: list[Store] = []
    if backend == "firestore":
        build = _firestore_builder(request, monkeypatch)
    else:

        def build(options: dict[str, Any]) -> Store:
            options.pop("behavior")
            return SQLiteStore(tmp_path / "store.db", **options)

    def make(
        *,
        raw_retention_s: float = 30 * DAY,
        behavior: bool = True,
        timezone: str = "UTC",
        **rules: Any,
    ) -> Store:
        rules.setdefault("funnels", PURCHASE)
        options = {
            "timezone": timezone,
            "raw_retention_s": raw_retention_s,
            "rules": BehaviorRules(**rules),
            "clock": clock,
            "behavior": behavior,
        }
        made.append(build(options))
        return made[-1]

    yield make
    for store in made:
        store.close()


def _firestore_builder(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], Store]:
    """Stores on a Firestore database of the test's own on the emulator."""
    firestore = pytest.importorskip(
        "google.cloud.firestore",
        reason="FIRESTORE LEG NOT RUN: google-cloud-firestore (the gcp extra) is not installed",
    )
    from behavioral_analytics.stores.firestore import FirestoreStore

    emu = request.getfixturevalue("emulators")
    name = request.getfixturevalue("database")
    # Another emulator fixture may have set the variable since: the client reads it.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emu.firestore_host)

    def build(options: dict[str, Any]) -> Store:
        client = firestore.Client(project=emu.project, database=name)
        return FirestoreStore(client, database=name, **options)

    return build


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    """A store with the default rules and the purchase funnel."""
    return make_store()
