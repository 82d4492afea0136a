"""What a `forget`'s tombstone keeps out of a store after it, on every store. Pure.

A tombstone is a forgotten person's id (a user id, or `anonymous:ID`) and a time in epoch
seconds: the moment `forget` ran, or later when it removed an event dated later (a client
clock ahead). It covers a message **sent** by that person (its user id, else its anonymous id)
when either of the message's times is at or before it:

- the event's own `timestamp`: a redelivery of an erased event, however late it comes;
- its `received_at`, the broker's first publish time: a message already on its way when the
  forget ran (waiting on Pub/Sub, or pulled into a worker's batch), even one dated after the
  tombstone by a client clock ahead of the broker's. A time of 0 or less is unknown (a dead
  letter recorded without one) and not compared.

An event that counts for a forgotten person through an identity link, sent by someone else, is
covered by its `timestamp` alone: a forget is a cut in event time (`identity.coverage`), so an
anonymous visit dated after it counts for the person who signs in again, whichever arrives
first. A covered event is dropped as `forgotten`; a covered rejected message is not recorded
as a dead letter. A message published after the tombstone and dated after it is the person's
new activity and counts as usual (docs/behavior.md "Forgetting a user").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from behavioral_analytics.actors import actor_ids
from behavioral_analytics.events import Event
from behavioral_analytics.privacy import mentions

__all__ = ["covers", "covers_letters"]


def covers(event: Event, sender_at: float | None, person_at: float | None = None) -> bool:
    """Whether a tombstone covers `event`: its sender's, dated `sender_at`, or that of the
    person it counts for (when another), dated `person_at` (epoch seconds; None: none)."""
    if person_at is not None and event.timestamp <= person_at:
        return True
    if sender_at is None:
        return False
    sent = event.timestamp if event.received_at <= 0 else min(event.timestamp, event.received_at)
    return sent <= sender_at


def covers_letters(
    letters: Sequence[tuple[bytes, float]], stones: Mapping[str, float]
) -> list[bool]:
    """Per rejected message (its bytes, its first publish time in epoch seconds), in order,
    whether a tombstone covers it: one dated at or after that time whose person the bytes name
    (`privacy.mentions`: ids by the who-fields of its JSON, or by their text in bytes that are
    not JSON). A message whose time is unknown (0 or less) is never covered. `stones` maps
    person ids (`events.actor`) to their tombstones; only those dated at or after the earliest
    message matter, so a store may pass just those."""
    covered = []
    for data, received_at in letters:
        users, anonymous = actor_ids(
            person for person, forgotten_at in stones.items() if forgotten_at >= received_at > 0
        )
        covered.append(bool(users or anonymous) and mentions(data, users, anonymous))
    return covered
