"""The Firestore store's one way to the database: document names, commit requests and batched
reads sent as hand-built `firestore.v1` protobufs (`wire`) through the client's own GAPIC stub,
queries paged by document id, a thread pool for queries in flight together, and the counters
the store reports.

Which errors mean what: a transient error (`TRANSIENT_ERRORS`) is retried with a backoff or
surfaced as `TransientStoreError`; a conflict (`CONFLICT_ERRORS`: a precondition failed, a
document changed since read, a raw event appeared or went) makes a commit read again and
recompute, at most `MAX_CONFLICTS` times, waiting `conflict_backoff_s` before each retry.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import firestore as request_types

from behavioral_analytics.store import TransientStoreError
from behavioral_analytics.stores.firestore.wire import BatchGetRequestPb, CommitRequestPb

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import CollectionReference, DocumentSnapshot

__all__ = [
    "BACKOFF_S",
    "CONFLICT_ERRORS",
    "MAX_CONFLICTS",
    "PAGE",
    "QUERY_THREADS",
    "TRANSIENT_ERRORS",
    "Counters",
    "Gateway",
    "Stale",
    "conflict_backoff_s",
]

T = TypeVar("T")

TRANSIENT_ERRORS = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.GatewayTimeout,
)


class Stale(Exception):
    """A document changed between a commit's two reads of it: plan again."""


# A precondition failed (a document changed since read, or a raw event appeared or went).
CONFLICT_ERRORS = (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound, Stale)
# Writers that share people commit the same profiles: the loser of each race retries while the
# others go on, and lost about four races in five when two others kept committing (the tests'
# three writers on five people: runs of up to 14 lost races). 50 tries leave ~1e-5; at most ~25 s.
MAX_CONFLICTS = 50
CONFLICT_BACKOFF_BASE_S = 0.01
CONFLICT_BACKOFF_CAP_S = 0.5
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
PAGE = 1000  # documents per batched read and per page of a query
QUERY_THREADS = 16
FULL_BATCH = 400  # writes per non-atomic `WriteBatch` (rebuild, deletes)


def conflict_backoff_s(conflicts: int) -> float:
    """Seconds to wait before retrying after the `conflicts`-th conflict in a row (1, 2, ...):
    uniform in [0, min(0.5, 0.01 * 2**conflicts)], the "full jitter" exponential backoff, so
    writers that keep colliding on the same documents spread apart instead of colliding again in
    step. Firestore's guidance for contention is to retry with exponential backoff."""
    return random.uniform(0, min(CONFLICT_BACKOFF_CAP_S, CONFLICT_BACKOFF_BASE_S * 2**conflicts))


@dataclass(slots=True)
class Counters:
    """What a store did, for benchmarks and tests."""

    write_ops: int = 0  # document writes in successful commits (what Firestore bills)
    commits: int = 0
    conflicts: int = 0  # commits refused (ALREADY_EXISTS, stale profile) and recomputed
    behavior_queries: int = 0  # per-person raw-event queries (the digest did not reach)
    identity_queries: int = 0  # raw-event queries for events a changed link moves


class Gateway:
    """One Firestore database as the store uses it.

    `client` is a `google.cloud.firestore.Client`; `timeout_s` bounds every request; `bound`
    holds the `retry=` and `timeout=` of the reads made at query time (`reach.query_bound`;
    by default the library's retry, up to 300 s), to pass as `**gateway.bound`.

    The other requests (the commit path's, `verify`'s, `rebuild`'s, `forget`'s) are made with
    `options()`: the library's retry and `timeout_s`, or, within `bounded(bound)` (`verify`,
    `rebuild`, `forget`: commands that hold the store alone), the `retry=` and `timeout=` of
    `bound`."""

    def __init__(
        self, client: firestore.Client, timeout_s: float, bound: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.bound: dict[str, Any] = {"timeout": timeout_s} if bound is None else bound
        self.database_path: str = client._database_string
        self.root = f"{self.database_path}/documents"
        self.counters = Counters()
        self._pool: ThreadPoolExecutor | None = None
        self._admin: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        """The `retry=` and `timeout=` of a request made now (see the class's docstring)."""
        return {"timeout": self.timeout_s} if self._admin is None else self._admin

    @contextmanager
    def bounded(self, bound: dict[str, Any]) -> Iterator[None]:
        """Within it, `options()` is `bound` (`reach.query_bound`'s `retry=` and `timeout=`)."""
        previous, self._admin = self._admin, bound
        try:
            yield
        finally:
            self._admin = previous

    def name(self, collection: str, document: str) -> str:
        """The full resource name of `collection/document`."""
        return f"{self.root}/{collection}/{document}"

    def collection(self, name: str) -> CollectionReference:
        """The client's reference to collection `name`."""
        return self.client.collection(name)

    def send(self, writes: list[Any]) -> None:
        """One atomic commit request of `writes` (`wire.write` protobufs).

        Raises the client's `GoogleAPICallError`s as they come (the caller sorts them)."""
        request = CommitRequestPb(database=self.database_path, writes=writes)
        self.client._firestore_api.commit(
            request=request_types.CommitRequest.wrap(request),
            metadata=self.client._rpc_metadata,
            **self.options(),
        )

    def get(self, names: Sequence[str], mask: Sequence[str]) -> dict[str, Any]:
        """The documents among `names` that exist (name → Document protobuf), only the fields
        in `mask`.

        Raises `TransientStoreError` on a transient error."""
        found: dict[str, Any] = {}
        for start in range(0, len(names), PAGE):
            request = BatchGetRequestPb(database=self.database_path)
            request.documents.extend(names[start : start + PAGE])
            request.mask.field_paths.extend(mask)
            try:
                responses = self.client._firestore_api.batch_get_documents(
                    request=request_types.BatchGetDocumentsRequest.wrap(request),
                    metadata=self.client._rpc_metadata,
                    **self.options(),
                )
                for response in responses:
                    pb = request_types.BatchGetDocumentsResponse.pb(response)
                    if pb.HasField("found"):
                        found[pb.found.name] = pb.found
            except TRANSIENT_ERRORS as exc:
                raise TransientStoreError(f"Firestore read failed: {exc}") from exc
        return found

    def stream_all(
        self, query: Any, *, bounded: bool = False, options: dict[str, Any] | None = None
    ) -> Iterator[DocumentSnapshot[Any]]:
        """Page through a query ordered by document id (a long single stream can time out),
        each page read with `bound` when `bounded` (a read at query time), else with `options`
        (`retry=` and `timeout=`; by default `options()`)."""
        if bounded:
            options = self.bound
        elif options is None:
            options = self.options()
        last = None
        while True:
            page_query = query.limit(PAGE)
            if last is not None:
                page_query = page_query.start_after(last)
            docs = list(page_query.stream(**options))
            yield from docs
            if len(docs) < PAGE:
                return
            last = docs[-1]

    def all(
        self, collection: str, options: dict[str, Any] | None = None
    ) -> Iterator[DocumentSnapshot[Any]]:
        """Every document of `collection`, by document id, paged (`stream_all`'s `options`)."""
        query = self.client.collection(collection).order_by(FieldPath.document_id())
        return self.stream_all(query, options=options)

    def in_parallel(self, function: Callable[[str], T], items: Sequence[str]) -> list[T]:
        """`function` over `items`, queries in flight together (a thread pool)."""
        if len(items) <= 1:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="fs-behavior")
        return list(self._pool.map(function, items))

    def flush_if_full(
        self, batch: firestore.WriteBatch, *, force: bool = False
    ) -> firestore.WriteBatch:
        """Commit a non-atomic `WriteBatch` once it holds `FULL_BATCH` writes (or any, with
        `force`); return the batch to go on with."""
        if len(batch) >= FULL_BATCH or (force and len(batch)):
            batch.commit(**self.options())
            self.counters.write_ops += len(batch)
            return self.client.batch()
        return batch

    def delete_all(self, collection: str, keep: Set[str] = frozenset()) -> None:
        """Delete every document of `collection` but those whose ids are in `keep` (not
        atomic)."""
        batch = self.client.batch()
        for snap in self.all(collection):
            if snap.id in keep:
                continue
            batch.delete(snap.reference)
            batch = self.flush_if_full(batch)
        self.flush_if_full(batch, force=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        # google-cloud-firestore leaves `Client.close` unannotated.
        self.client.close()  # type: ignore[no-untyped-call]
