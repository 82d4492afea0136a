"""The publisher client of the Pub/Sub broker: how long a publish is retried, and how soon its
gRPC channel reconnects after an outage.

A publish that Pub/Sub does not confirm within the broker's `publish_timeout_s` fails, and the
collector answers `503 broker_unavailable` (docs/api.md: nothing was accepted, retry). The
client library's own default retries a failed publish for up to 600 s (its GAPIC config), in
the background, after that failure: a publish refused during an outage went out once Pub/Sub
was back, so the client's retry of the 503 counted its events twice where they carried no id
of the client's, and an event the client did not send again was counted all the same. Here the
library starts no attempt later than a second before the end of the wait, each attempt ending
by the wait's end (`publish_retry`; api_core gives an attempt begun with less than a second
left the whole request timeout again), and the broker waits a second more: by the time it
gives up, the library has too, and a 503 is what it says. (A request that reached Pub/Sub just
before its deadline but whose answer did not come back is the one case left where a 503's
events exist: their ids dedupe a retry.) With message ordering on (`BA_ORDERING`), the library
retries every publish for ever whatever it is given: there a 503's events may still go out
later. A publish that fails for good pauses its ordering key, which the broker resumes at once
(`PubSubBroker.publish`).

gRPC reconnects with its default backoff (1 s growing by 1.6 up to 120 s): after an outage of
20 s, publishes failed at once for 6-16 s more, each answered 503. The channel is made here
with the Firestore store's reconnection backoff (`grpc_channels`: 250 ms growing to at most
1 s) and the library's own options, through the library's public transport;
where the library lacks them (another version), it makes its own channel, with one WARNING.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # no stub re-exports it
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from behavioral_analytics.grpc_channels import RECONNECT_OPTIONS, warn_library_channel

__all__ = ["publish_retry", "publisher_client"]

# The options google-cloud-pubsub 2.44 gives its publisher's channel
# (`PublisherGrpcTransport.__init__`).
_LIBRARY_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_metadata_size", 4 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30000),
)
# The errors the library's default publish retry retries (google-cloud-pubsub 2.44, GAPIC
# `transports/base.py`): its predicate, with a deadline of ours.
_RETRIED = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


def publish_retry(wait_s: float) -> tuple[retries.Retry, float]:
    """(retry, per-request timeout in seconds) for a publish the broker waits `wait_s` seconds
    for: attempts begin until a second before the end (half the wait, if that is shorter than
    a second), with backoff 0.1 s growing by 1.3 up to 1 s, each given at most `wait_s`, so
    that the library has given up by the end of the wait (see the module's docstring)."""
    retry = retries.Retry(
        predicate=retries.if_exception_type(*_RETRIED),
        initial=0.1,
        maximum=1.0,
        multiplier=1.3,
        timeout=max(wait_s - 1.0, wait_s / 2),
    )
    return retry, wait_s


def publisher_client(*, ordering: bool, wait_s: float) -> pubsub_v1.PublisherClient:
    """A publisher client whose publishes are retried no longer than `wait_s` seconds (unless
    `ordering`, see the module's docstring) over a channel that reconnects within about a
    second, to the emulator at PUBSUB_EMULATOR_HOST when set, else to Pub/Sub with the
    application default credentials."""
    retry, request_s = publish_retry(wait_s)
    kwargs: dict[str, Any] = {}
    transport = _transport()
    if transport is not None:
        kwargs["transport"] = transport
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=1000, max_bytes=9 * 1000 * 1000, max_latency=0.02
        ),
        publisher_options=pubsub_v1.types.PublisherOptions(
            enable_message_ordering=ordering, retry=retry, timeout=request_s
        ),
        **kwargs,
    )


def _transport() -> PublisherGrpcTransport | None:
    """The library's gRPC transport over a channel with `RECONNECT_OPTIONS`; None where the
    library's transport does not take it (the client then makes its own)."""
    options = [*_LIBRARY_OPTIONS, *RECONNECT_OPTIONS]
    try:
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            channel = grpc.insecure_channel(emulator, options=options)
            return PublisherGrpcTransport(host=emulator, channel=channel)
        host = f"{PublisherGrpcTransport.DEFAULT_HOST}:443"  # as the transport completes it
        channel = PublisherGrpcTransport.create_channel(host, options=options)
        return PublisherGrpcTransport(host=host, channel=channel)
    except (AttributeError, TypeError) as exc:  # names or signatures of another version
        warn_library_channel("Pub/Sub", "transport", "publisher", exc)
        return None
