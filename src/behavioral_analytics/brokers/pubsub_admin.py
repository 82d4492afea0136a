"""Pub/Sub administration for `init`: the topic, the subscription with its retry and
dead-letter policies, and the dead-letter topic and subscription, created if missing.

Every call is bounded: an attempt waits at most `ATTEMPT_TIMEOUT_S`, transient errors
(unavailable, deadline exceeded) are retried with backoff for at most `ADMIN_DEADLINE_S` in
all, and whatever fails is one `BrokerError` line naming the endpoint. The client library's
defaults retry an unreachable service for minutes, and `init` seemed to hang.
"""

from __future__ import annotations

import os
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # no stub re-exports it
from google.protobuf import duration_pb2, field_mask_pb2

from behavioral_analytics.broker import BrokerError

__all__ = [
    "ADMIN_DEADLINE_S",
    "ATTEMPT_TIMEOUT_S",
    "MAX_SUBSCRIPTION_RETENTION_DAYS",
    "NEVER_EXPIRE",
    "create_resources",
    "duration",
    "endpoint",
]

MAX_SUBSCRIPTION_RETENTION_DAYS = 7.0  # Pub/Sub's limit on message_retention_duration
ADMIN_DEADLINE_S = 20.0
ATTEMPT_TIMEOUT_S = 10.0
# An expiration policy without a TTL: the subscription is never deleted for being idle
# (without one Pub/Sub deletes it after 31 days without a subscriber; Terraform and
# scripts/deploy.sh set the same).
NEVER_EXPIRE = pubsub_v1.types.ExpirationPolicy()


def endpoint() -> str:
    """Where the Pub/Sub clients connect: the emulator's host, or the service."""
    return os.environ.get("PUBSUB_EMULATOR_HOST") or "pubsub.googleapis.com"


def duration(seconds: float) -> duration_pb2.Duration:
    """`seconds` as a protobuf Duration (whole seconds, as Pub/Sub's settings take them)."""
    return duration_pb2.Duration(seconds=int(seconds))


def _retry(deadline_s: float) -> retries.Retry:
    transient = retries.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded)
    return retries.Retry(
        predicate=transient, initial=0.5, maximum=4.0, multiplier=2.0, timeout=deadline_s
    )


def create_resources(
    publisher: Any,
    subscriber: Any,
    *,
    topic: str,
    subscription: dict[str, Any],
    dead_letter_topic: str,
    dead_letter_subscription: str,
    deadline_s: float | None = None,
) -> list[str]:
    """Create the topics and subscriptions that do not exist; where one does, set what both
    specs may change (the deadline, retention and policies; never-expire apart, which the
    emulator refuses to update). One line per resource, saying what was done.

    Raises BrokerError, naming the endpoint, when Pub/Sub refuses or does not answer within
    `deadline_s` seconds (by default `ADMIN_DEADLINE_S`) in all per call."""
    deadline_s = ADMIN_DEADLINE_S if deadline_s is None else deadline_s
    retry = _retry(deadline_s)
    done: list[str] = []
    try:
        for name in (topic, dead_letter_topic):
            done.append(_create_topic(publisher, name, retry))
        dead_letters = {
            "name": dead_letter_subscription,
            "topic": dead_letter_topic,
            "ack_deadline_seconds": 60,
            "message_retention_duration": duration(7 * 86400),
            "expiration_policy": NEVER_EXPIRE,
        }
        done.append(_create_subscription(subscriber, dead_letters, retry, update=True))
        done.append(_create_subscription(subscriber, subscription, retry, update=True))
    except gexc.RetryError as exc:
        cause = exc.cause or exc
        raise BrokerError(
            f"Pub/Sub at {endpoint()} did not answer within {deadline_s:g} s "
            f"({type(cause).__name__}) to create the topics and subscriptions"
        ) from exc
    except gexc.GoogleAPICallError as exc:
        raise BrokerError(f"Pub/Sub init at {endpoint()} failed: {exc}") from exc
    return done


def _create_topic(publisher: Any, topic: str, retry: retries.Retry) -> str:
    try:
        publisher.create_topic(request={"name": topic}, retry=retry, timeout=ATTEMPT_TIMEOUT_S)
    except gexc.AlreadyExists:
        return f"topic {topic} exists"
    return f"created topic {topic}"


def _create_subscription(
    subscriber: Any, spec: dict[str, Any], retry: retries.Retry, *, update: bool = False
) -> str:
    name = spec["name"]
    try:
        subscriber.create_subscription(request=spec, retry=retry, timeout=ATTEMPT_TIMEOUT_S)
    except gexc.AlreadyExists:
        if not update:
            return f"subscription {name} exists"
        fixed = ("topic", "enable_message_ordering", "expiration_policy")
        mutable = {k: v for k, v in spec.items() if k not in fixed}
        try:
            _update(subscriber, mutable, retry)
            # Apart: the emulator refuses to update it (and expires nothing).
            if "expiration_policy" in spec and not os.environ.get("PUBSUB_EMULATOR_HOST"):
                _update(subscriber, {"name": name, "expiration_policy": NEVER_EXPIRE}, retry)
        except gexc.GoogleAPICallError as exc:
            return f"subscription {name} exists (settings left as they were: {exc.message})"
        return f"subscription {name} exists; updated its deadline, retention and policies"
    return f"created subscription {name} on {spec['topic']}"


def _update(subscriber: Any, fields: dict[str, Any], retry: retries.Retry) -> None:
    """Set `fields` (with the subscription's `name`) on an existing subscription, those alone."""
    mask = field_mask_pb2.FieldMask(paths=[k for k in fields if k != "name"])
    subscriber.update_subscription(
        request={"subscription": fields, "update_mask": mask},
        retry=retry,
        timeout=ATTEMPT_TIMEOUT_S,
    )
