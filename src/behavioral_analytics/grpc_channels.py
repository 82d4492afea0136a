"""How soon the Google adapters' gRPC channels connect again after a connection failed: one
setting for the Firestore store's channel (`stores/firestore/gateway.py`) and the Pub/Sub
publisher's (`brokers/pubsub_publish.py`), each made by its adapter over the client library's
own options.

gRPC's defaults (its connection backoff protocol, grpc/grpc doc/connection-backoff.md: 1 s,
times 1.6 after each failed attempt, ±20 %, up to 120 s) made a process whose Firestore was
unreachable for 20 s go on failing fast with UNAVAILABLE for another 6-16 s after Firestore
answered again (28 s after an outage of 40 s): its API answered 503 all that time; the
publisher's channel did the same after a Pub/Sub outage. Capped at 1 s, a channel tries about
once a second while its service is away (one TCP connection attempt: nothing a server notices)
and is back within about 1.2 s of it; the first retry comes after 250 ms, so that a blip is
ridden over sooner still. `grpc.min_reconnect_backoff_ms` is left alone: despite its name it is
the least time a connection attempt is given (20 s; grpc/grpc
src/core/client_channel/subchannel.cc), which a slow network needs.
"""

from __future__ import annotations

from behavioral_analytics.telemetry import log

__all__ = [
    "INITIAL_RECONNECT_BACKOFF_MS",
    "MAX_RECONNECT_BACKOFF_MS",
    "RECONNECT_OPTIONS",
    "warn_library_channel",
]

INITIAL_RECONNECT_BACKOFF_MS = 250
MAX_RECONNECT_BACKOFF_MS = 1000
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)


def warn_library_channel(library: str, changed: str, user: str, exc: Exception) -> None:
    """One WARNING: `library`'s client library has `changed` (its transport, its internals:
    names or signatures of another version, `exc`), so `user` keeps the library's own channel,
    with gRPC's default reconnection backoff."""
    log.warning(
        f"{library}'s client library has changed its {changed}: the {user} keeps the "
        "library's gRPC channel, which may take up to 120 s to reconnect after an outage",
        extra={"error": str(exc)},
    )
