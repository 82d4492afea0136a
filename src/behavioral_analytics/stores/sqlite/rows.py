"""Rows read back as the port's types: stored events and dead letters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from behavioral_analytics.events import Event
from behavioral_analytics.store import DeadLetter, StoredEvent
from behavioral_analytics.stores.sqlite.derived_parsers import PARSERS_COLUMN, restore_parsers

__all__ = ["EVENT_COLUMNS", "dead_letter", "stored_event"]

# The columns `stored_event` reads, in its order (of `FROM events`, not aliased).
EVENT_COLUMNS = (
    "key, event_id, user_id, anonymous_id, event_type, timestamp, session_id, properties, "
    f"received_at, processed_at, {PARSERS_COLUMN}"
)

_decode = msgspec.json.Decoder().decode


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """An `events` row selected as `EVENT_COLUMNS` (properties as JSON text, the parsers put
    back: `derived_parsers.restore_parsers`)."""
    (
        key,
        event_id,
        user_id,
        anonymous_id,
        event_type,
        timestamp,
        session_id,
        properties,
        received_at,
        processed_at,
        parsers,
    ) = row
    event = Event(
        key=key,
        event_id=event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event_type=event_type,
        timestamp=timestamp,
        session_id=session_id,
        properties=restore_parsers(_decode(properties), parsers),
        received_at=received_at,
    )
    return StoredEvent(event, processed_at)


def dead_letter(row: Sequence[Any]) -> DeadLetter:
    """A `dead_letters` row selected as `*` (attributes and attempts as JSON text)."""
    (
        id_,
        recorded_at,
        reason,
        detail,
        source,
        message_id,
        attributes,
        data,
        received_at,
        attempts,
        replayed_at,
        *_,  # fingerprint, expire_at
    ) = row
    return DeadLetter(
        reason=reason,
        detail=detail,
        data=bytes(data),
        message_id=message_id,
        attributes=json.loads(attributes),
        source=source,
        received_at=received_at,
        attempts=json.loads(attempts),
        id=str(id_),
        recorded_at=recorded_at,
        replayed_at=replayed_at,
    )
