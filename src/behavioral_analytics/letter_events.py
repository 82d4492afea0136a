"""The events dead letters hold, as far as `verify` and `dlq replay --all` ask: which letters'
events are stored already.

A letter whose replay was counted, then replayed again where the worker refuses it (a stricter
`BA_MAX_EVENT_AGE_DAYS`, say), is recorded as refused once more and shows as not replayed; its
event is counted all the same. Judging such a letter as "counted nowhere" would be false, so
the letters a replay could count, or that only their time keeps out, are looked up by their
event's key (the event as the worker would make it with no time window) among the raw events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from behavioral_analytics.events import DEFAULT_LIMITS, Event, Limits
from behavioral_analytics.named_calls import judged
from behavioral_analytics.store import DeadLetter, StoredEvent

__all__ = ["counted_letters"]

GetEvents = Callable[[Sequence[str]], list[StoredEvent]]


def counted_letters(
    letters: Sequence[DeadLetter], get_events: GetEvents, limits: Limits = DEFAULT_LIMITS
) -> set[str]:
    """The ids of `letters` whose event (parsed under `limits` but for the time window, at the
    letter's first receipt time, as a replay is) is stored already, found with one
    `get_events` call (the store port's: stored events by key). Raises StoreError."""
    wide = replace(limits, max_age_s=math.inf, max_future_skew_s=math.inf)
    keys: dict[str, list[str]] = {}
    for letter in letters:
        try:
            parsed = judged(
                letter.data, message_id=letter.message_id, received_at=letter.received_at,
                limits=wide,
            )  # fmt: skip
        except Exception:  # a parse that raises makes no event: none of it is stored
            continue
        if isinstance(parsed, Event):
            keys.setdefault(parsed.key, []).append(letter.id)
    if not keys:
        return set()
    stored = {found.event.key for found in get_events(list(keys))}
    return {letter_id for key in stored for letter_id in keys.get(key, ())}
