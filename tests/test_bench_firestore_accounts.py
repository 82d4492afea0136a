"""The Firestore benchmark's accounting of writes (`bench/firestore_writes.py`): a raw event an
identity link moves is counted apart from the creates, the writes above the structural floor
are split by where they go, the floor's own share taken out of raw events and people, and the
bytes written are every commit's writes as sent, whoever built them."""

from __future__ import annotations

import sys
from collections import Counter
from types import SimpleNamespace
from typing import Any

from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import firestore as request_types

from behavioral_analytics.stores.firestore.wire import CommitRequestPb, write
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import firestore_writes

ROOT = "projects/p/databases/d/documents"


def test_a_raw_event_moved_by_a_link_is_counted_apart_from_the_creates() -> None:
    create = write(f"{ROOT}/user_events/k1", {"person": "u1"}, exists=False)
    moved = write(f"{ROOT}/user_events/k2", {"person": "u2"}, mask=["person"], exists=True)
    kinds = [
        firestore_writes.written_kind(w.update.name, moved=bool(w.update_mask.field_paths))
        for w in (create, moved)
    ]
    assert kinds == ["user_events", firestore_writes.MOVED]
    assert firestore_writes.written_kind(f"{ROOT}/analytics_aggregates/user_u1") == (
        "analytics_aggregates (people)"
    )


def test_the_writes_above_the_floor_are_split_by_where_they_go() -> None:
    # 1,000 events, 900 distinct people per flush summed: a floor of 1,900 writes.
    written = Counter(
        {
            "user_events": 1000,
            firestore_writes.MOVED: 40,
            "analytics_aggregates (people)": 925,
            "analytics_aggregates (buckets)": 30,
            "pipeline_state": 5,
        }
    )
    line = firestore_writes.above_floor(written, 1900, 1000)
    assert line == (
        "above the floor: +0.100 writes per event (user_events (moved by links) +0.040, "
        "analytics_aggregates (buckets) +0.030, analytics_aggregates (people) +0.025, "
        "pipeline_state +0.005)"
    )


def test_the_bytes_written_are_every_commits_writes_as_serialized_whoever_built_them() -> None:
    requests: list[Any] = []

    def commit(request: Any = None, **kwargs: Any) -> str:
        requests.append(request)
        return "response"

    api = SimpleNamespace(commit=commit)
    written = firestore_writes.WrittenBytes(SimpleNamespace(_firestore_api=api))  # as a client
    # The library's batch: a dict of proto-plus writes; the adapter's: its own protobufs, wrapped.
    library = _helpers.pbs_for_create(f"{ROOT}/user_events/k1", {"event_type": "page"})
    own = [write(f"{ROOT}/analytics_aggregates/user_u1", {"total_events": 3}, exists=True)]
    batch = {"database": "d", "writes": library, "transaction": None}
    assert api.commit(request=batch, metadata=()) == "response"
    api.commit(request=request_types.CommitRequest.wrap(CommitRequestPb(writes=own)))
    assert len(requests) == 2
    library_bytes = sum(type(w).pb(w).ByteSize() for w in library)
    assert library_bytes > 0 and own[0].ByteSize() > 0
    assert written.total == library_bytes + own[0].ByteSize()
