"""What makes a load test's events its own: one event type per run (`loadtest.<run id>`) and a
user-id prefix (`lt<run id>_`), so that the run judges itself by its own records — its raw
events, its own type's aggregate, its own dead letters — never by the change of shared totals,
and stays correct with a backlog of other messages and beside live traffic.

A run still adds to shared figures that are not split by event type: the events per period
(`total_events`), unique users per hour and day, active users and sessions (docs/loadtest.md).
Funnels do not see it: no funnel step is a `loadtest.` type.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

__all__ = ["EVENT_TYPE_PREFIX", "RunMark", "new_run_id"]

EVENT_TYPE_PREFIX = "loadtest."


def new_run_id() -> str:
    """Eight random hex digits: distinct runs never share a type or a user."""
    return secrets.token_hex(4)


class RunMark:
    """The marks of run `run_id`: `event_type` and `user_prefix`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.event_type = f"{EVENT_TYPE_PREFIX}{run_id}"
        self.user_prefix = f"lt{run_id}_"

    def mark(self, messages: Iterable[bytes]) -> list[bytes]:
        """Each message with this run's event type, and its user, anonymous and session ids
        prefixed; a message that is not a JSON object (a malformed one) as it was."""
        return [self._mark_one(data) for data in messages]

    def _mark_one(self, data: bytes) -> bytes:
        try:
            payload = json.loads(data)
        except ValueError:
            return data
        if not isinstance(payload, dict):
            return data
        if isinstance(payload.get("event_type"), str):
            payload["event_type"] = self.event_type
        for name in ("user_id", "anonymous_id", "session_id"):
            if isinstance(payload.get(name), str):
                payload[name] = self.user_prefix + payload[name]
        return json.dumps(payload, separators=(",", ":")).encode()
