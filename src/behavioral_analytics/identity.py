"""Identity stitching: which person an event counts for. Pure: no I/O.

An `identify` event carrying both a user id and an anonymous id proposes a link. Every
proposal is kept as an auditable record. Per anonymous id the earliest proposal (event time,
then event key) wins; a proposal for another user is refused unless relinking is allowed,
and then each link covers the anonymous events from its own start. Deciding by event time,
not arrival, keeps the outcome independent of the order events arrive in.

An event with a user id counts for that user. An event with only an anonymous id counts for
the user of the latest active link whose coverage has begun: a link made at time T covers
events from T - window on (earlier events of that visit, and everything later).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from behavioral_analytics.events import Event, actor

__all__ = [
    "IDENTIFY",
    "Link",
    "LinkStatus",
    "attribute",
    "coverage",
    "proposal",
    "resolve",
]

IDENTIFY = "identify"
LinkStatus = Literal["active", "duplicate", "refused"]


@dataclass(frozen=True, slots=True)
class Link:
    anonymous_id: str
    user_id: str
    linked_at: float
    event_key: str
    status: LinkStatus = "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "anonymous_id": self.anonymous_id,
            "user_id": self.user_id,
            "linked_at": self.linked_at,
            "event_key": self.event_key,
            "status": self.status,
        }


def proposal(event: Event) -> Link | None:
    if event.event_type != IDENTIFY or not event.user_id or not event.anonymous_id:
        return None
    return Link(event.anonymous_id, event.user_id, event.timestamp, event.key)


def resolve(proposals: Iterable[Link], allow_relink: bool) -> list[Link]:
    """The proposals of one anonymous id with their status: `active` (in effect),
    `duplicate` (a later proposal of an active link) or `refused`."""
    resolved: list[Link] = []
    active_users: set[str] = set()
    for link in sorted(proposals, key=lambda p: (p.linked_at, p.event_key)):
        if link.user_id in active_users:
            status: LinkStatus = "duplicate"
        elif not active_users or allow_relink:
            status = "active"
            active_users.add(link.user_id)
        else:
            status = "refused"
        resolved.append(replace(link, status=status))
    return resolved


def coverage(links: Iterable[Link], window_s: float) -> tuple[tuple[float, str], ...]:
    """(coverage start, user id) of the active links, by start: what `attribute` consults."""
    active = (link for link in links if link.status == "active")
    return tuple(sorted((link.linked_at - window_s, link.user_id) for link in active))


def attribute(event: Event, covers: Sequence[tuple[float, str]] | None) -> str:
    """The person `event` counts for, given the coverage of its anonymous id's links."""
    if event.user_id is not None or not covers:
        return event.who or actor(event.user_id, event.anonymous_id)
    person = None
    for start, user_id in covers:
        if start > event.timestamp:
            break
        person = user_id
    return person if person is not None else event.who
