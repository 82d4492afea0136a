"""The Firestore store's one way to the database: document names, commit requests and batched
reads sent as hand-built `firestore.v1` protobufs (`wire`) through the client's own GAPIC stub,
queries paged by document id, a thread pool for queries in flight together, and the counters
the store reports.

Its gRPC channel reconnects promptly (`open_channel`): a store whose Firestore came back is
answered again within about a second, not after gRPC's reconnection backoff of up to 120 s.

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

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import firestore
from google.cloud.firestore_v1 import base_client
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.services.firestore import client as gapic_client
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport
from google.cloud.firestore_v1.types import firestore as request_types

from behavioral_analytics.grpc_channels import RECONNECT_OPTIONS, warn_library_channel
from behavioral_analytics.store import TransientStoreError
from behavioral_analytics.stores.firestore.wire import BatchGetRequestPb, CommitRequestPb

if TYPE_CHECKING:
    from google.cloud.firestore_v1 import CollectionReference, DocumentSnapshot

__all__ = [
    "BACKOFF_S",
    "COMMIT_RETRY",
    "CONFLICT_ERRORS",
    "GET_RETRY",
    "MAX_CONFLICTS",
    "PAGE",
    "QUERY_THREADS",
    "TRANSIENT_ERRORS",
    "Counters",
    "Gateway",
    "Stale",
    "conflict_backoff_s",
    "open_channel",
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

# The options google-cloud-firestore 2.34 gives its own channels (unlimited message sizes; and
# keepalive pings every 30 s to Firestore itself), should another version not name them so.
_MESSAGE_SIZE_OPTIONS: list[tuple[str, Any]] = getattr(
    base_client,
    "_GRPC_MSG_SIZE_OPTIONS",
    [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
)
_LIBRARY_OPTIONS: list[tuple[str, Any]] = getattr(
    base_client,
    "_DEFAULT_CHANNEL_OPTIONS",
    [("grpc.keepalive_time_ms", 30000), *_MESSAGE_SIZE_OPTIONS],
)


def open_channel(client: firestore.Client) -> grpc.Channel | None:
    """Give `client` a gRPC channel of its own made with `RECONNECT_OPTIONS` (the reconnection
    backoff), and return it (its owner closes it: `Client.close` does not); None, with one
    WARNING, where the client lacks the attributes this reads (another library version): the
    client then makes its own channel, which reconnects after gRPC's default backoff.

    google-cloud-firestore has no public way to pass channel options: it makes its channel on
    first use (`BaseClient._firestore_api_helper`) with options of its own. This makes the same
    channel, with the same options plus ours (the emulator's insecure channel when
    FIRESTORE_EMULATOR_HOST is set, else a channel with the client's credentials), and the
    GAPIC client over it, as that helper does (read in google-cloud-firestore 2.34; the helper
    also sets a `_client_info` on the GAPIC module, which nothing reads).
    A channel the client had already made is replaced (it closes when collected)."""
    try:
        return _own_channel(client)
    except (AttributeError, TypeError) as exc:  # names or signatures of another version
        warn_library_channel("Firestore", "internals", "store", exc)
        return None


def _own_channel(client: firestore.Client) -> grpc.Channel:
    target = client._target
    if client._emulator_host is not None:
        token = getattr(client._credentials, "id_token", None) or "owner"
        options = [
            ("Authorization", f"Bearer {token}"),
            *_MESSAGE_SIZE_OPTIONS,
            *RECONNECT_OPTIONS,
        ]
        channel = grpc.insecure_channel(client._emulator_host, options=options)
    else:
        options = [*_LIBRARY_OPTIONS, *RECONNECT_OPTIONS]
        channel = FirestoreGrpcTransport.create_channel(
            target, credentials=client._credentials, options=options
        )
    transport = FirestoreGrpcTransport(host=target, channel=channel)
    client._transport = transport
    client._firestore_api_internal = gapic_client.FirestoreClient(
        transport=transport, client_options=client._client_options
    )
    return channel


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


# The commit path's retries of a commit and of a batched read: the library's own (the errors it
# retries and for how long: google-cloud-firestore 2.x, GAPIC `transports/base.py`), but with the
# wait between tries capped at 1 s instead of 60 s. With the library's, a worker whose Firestore
# was away for about 50 s committed again only 8-18 s after it answered, waiting out a backoff
# grown meanwhile (0.1 s growing by 1.3).
COMMIT_RETRY = retries.Retry(
    predicate=retries.if_exception_type(gexc.ResourceExhausted, gexc.ServiceUnavailable),
    initial=0.1,
    maximum=1.0,
    multiplier=1.3,
    timeout=60.0,
)
GET_RETRY = retries.Retry(
    predicate=retries.if_exception_type(
        gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ServiceUnavailable
    ),
    initial=0.1,
    maximum=1.0,
    multiplier=1.3,
    timeout=300.0,
)


class Gateway:
    """One Firestore database as the store uses it.

    `client` is a `google.cloud.firestore.Client`; `timeout_s` bounds every request; `bound`
    holds the `retry=` and `timeout=` of the reads made at query time (`reach.query_bound`;
    by default the library's retry, up to 300 s), to pass as `**gateway.bound`. The client is
    given a channel that reconnects promptly (`open_channel`), closed by `close`.

    The other requests (the commit path's, `verify`'s, `rebuild`'s, `forget`'s) are made with
    `options()`: the library's retry and `timeout_s`, or, within `bounded(bound)` (`verify`,
    `rebuild`, `forget`: commands that hold the store alone), the `retry=` and `timeout=` of
    `bound`."""

    def __init__(
        self, client: firestore.Client, timeout_s: float, bound: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self._channel = open_channel(client)
        self.timeout_s = timeout_s
        self.bound: dict[str, Any] = {"timeout": timeout_s} if bound is None else bound
        self.database_path: str = client._database_string
        self.root = f"{self.database_path}/documents"
        self.counters = Counters()
        self._pool: ThreadPoolExecutor | None = None
        self._admin: dict[str, Any] | None = None

    def options(self, retry: retries.Retry | None = None) -> dict[str, Any]:
        """The `retry=` and `timeout=` of a request made now (see the class's docstring);
        outside `bounded`, `retry` (if given) in place of the library's."""
        if self._admin is not None:
            return self._admin
        return (
            {"timeout": self.timeout_s}
            if retry is None
            else {"timeout": self.timeout_s, "retry": retry}
        )

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
            **self.options(COMMIT_RETRY),
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
                    **self.options(GET_RETRY),
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

    def id_range(
        self,
        collection: str,
        prefix: str,
        start: str | None = None,
        end: str | None = None,
        mask: Sequence[str] | None = None,
        *,
        bounded: bool = False,
    ) -> Iterator[DocumentSnapshot[Any]]:
        """The documents of `collection` whose ids are `prefix` + a string from `start` to
        `end` and what follows it (None: unbounded), by id, paged (`stream_all`); `mask`'s
        fields only when given. A range on the id needs no index."""
        reference = self.client.collection(collection)
        low = reference.document(prefix + (start or ""))
        high = reference.document(prefix + (end or "") + "\uf8ff")
        query = (
            reference.where(filter=firestore.FieldFilter(FieldPath.document_id(), ">=", low))
            .where(filter=firestore.FieldFilter(FieldPath.document_id(), "<=", high))
            .order_by(FieldPath.document_id())
        )
        if mask is not None:
            query = query.select(list(mask))
        return self.stream_all(query, bounded=bounded)

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
        # google-cloud-firestore leaves `Client.close` unannotated; it closes no gRPC channel.
        self.client.close()  # type: ignore[no-untyped-call]
        if self._channel is not None:
            self._channel.close()
