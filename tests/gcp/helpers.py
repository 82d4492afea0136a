"""Shared helpers for the GCP tests."""

from __future__ import annotations

import json
from typing import Any

from behavioral_analytics.events import Event, validate_event

BASE_TS = 1_764_320_000.123  # 2025-11-28 08:53 UTC


def recipe_payload(n: int, *, user: int | None = None, ts: float | None = None) -> dict[str, Any]:
    """A message shaped exactly like the seed recipe's generator output."""
    types = ("page_view", "button_click", "purchase", "search", "signup", "login")
    event_type = types[n % len(types)]
    properties: dict[str, Any] = {
        "page_url": f"/page/{n % 20}",
        "referrer": "google.com",
        "device_type": "mobile",
        "user_agent": "BehavioralAnalytics/1.0",
    }
    if event_type == "purchase":
        properties.update(amount=99.5, currency="USD")
    return {
        "event_id": f"evt_{100000 + n % 900000}",
        "user_id": f"user_{user if user is not None else n % 100 + 1}",
        "event_type": event_type,
        "timestamp": ts if ts is not None else BASE_TS + n * 0.5,
        "session_id": f"sess_{1000 + n % 9000}",
        "properties": properties,
    }


def event(payload: dict[str, Any], received_at: float | None = None) -> Event:
    parsed = validate_event(
        payload,
        message_id=f"msg-{payload.get('event_id')}",
        received_at=received_at if received_at is not None else payload["timestamp"] + 1.0,
    )
    assert isinstance(parsed, Event), parsed
    return parsed


def data(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
