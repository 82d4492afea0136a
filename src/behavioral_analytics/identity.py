"""Identity stitching: which person an event counts for. Pure: no I/O.

An `identify` event carrying both a user id and an anonymous id proposes a link. Every
proposal is kept as an auditable record. Per anonymous id the earliest proposal (event time,
then event key) wins; a proposal for another user is refused unless relinking is allowed,
and then each link covers the anonymous events from its own start. Deciding by event time,
not arrival, keeps the outcome independent of the order events arrive in.

An event with a user id counts for that user. An event with only an anonymous id counts for
the user of the latest active link whose coverage has begun. The first active link, made at
time T1, covers events from T1 - window on (earlier events of that visit, and everything
later); a later link (relinking allowed), made at Tk, covers events from Tk on: the events
before it were already claimed by an earlier sign-in, which a second person's never takes.

A forget is a cut in time: a link to a user with a tombstone (made by an identify dated after
it: one dated at or before is dropped with its sender) covers only events dated after the
tombstone (`Link.user_forgotten_at`). Without the cut, an anonymous event dated before the tombstone
would be dropped as the forgotten user's when the link was stored first, and moved to them
when it was stored first itself: the outcome would hang on the arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from behavioral_analytics.actors import actor
from behavioral_analytics.events import Event
from behavioral_analytics.named_calls import alias_previous_id

__all__ = [
    "IDENTIFY",
    "Link",
    "LinkStatus",
    "attribute",
    "coverage",
    "proposal",
    "relinked",
    "resolve",
    "with_tombstones",
]

IDENTIFY = "identify"
LinkStatus = Literal["active", "duplicate", "refused"]


@dataclass(frozen=True, slots=True)
class Link:
    """An identity link's record. `user_forgotten_at`: the tombstone (epoch seconds) its user
    had when it was made, which its coverage never reaches back to (None: none)."""

    anonymous_id: str
    user_id: str
    linked_at: float
    event_key: str
    status: LinkStatus = "active"
    user_forgotten_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "anonymous_id": self.anonymous_id,
            "user_id": self.user_id,
            "linked_at": self.linked_at,
            "event_key": self.event_key,
            "status": self.status,
        }


def proposal(event: Event) -> Link | None:
    """The link an `identify` with both ids proposes, or an `alias` call: its `previousId`, an
    anonymous id, linked to its user id as an identify would (`named_calls`)."""
    previous = alias_previous_id(event)
    if previous is not None and event.user_id:
        return Link(previous, event.user_id, event.timestamp, event.key)
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


def relinked(links: Iterable[Link], allow_relink: bool) -> list[Link]:
    """Every link of `links` (the stored ones, of any anonymous ids) with the status `resolve`
    gives it among its anonymous id's under `allow_relink`: what the links say once the rule
    changes (`config apply`), and what `verify` expects of them."""
    by_anonymous_id: dict[str, list[Link]] = {}
    for link in links:
        by_anonymous_id.setdefault(link.anonymous_id, []).append(link)
    return [
        resolved for group in by_anonymous_id.values() for resolved in resolve(group, allow_relink)
    ]


def coverage(links: Iterable[Link], window_s: float) -> tuple[tuple[float, str], ...]:
    """(coverage start, user id) of the active links, in order (link time, then event key):
    what `attribute` consults. The first link's coverage starts `window_s` before its time;
    every later one's (only with relinking) at its own time, since what came before it was
    the earlier links' already; none at or before the link's `user_forgotten_at`."""
    active = sorted(
        (link for link in links if link.status == "active"),
        key=lambda link: (link.linked_at, link.event_key),
    )
    return tuple(
        (_cut(link.linked_at - window_s if i == 0 else link.linked_at, link), link.user_id)
        for i, link in enumerate(active)
    )


def _cut(start: float, link: Link) -> float:
    forgotten_at = link.user_forgotten_at
    if forgotten_at is None or start > forgotten_at:
        return start
    return math.nextafter(forgotten_at, math.inf)


def with_tombstones(links: Iterable[Link], tombstones: Mapping[str, float]) -> list[Link]:
    """`links`, each new one (`user_forgotten_at` None) to a user in `tombstones` (user id →
    the epoch seconds of their tombstone) given that tombstone: what a commit records."""
    return [
        replace(link, user_forgotten_at=tombstones[link.user_id])
        if link.user_forgotten_at is None and link.user_id in tombstones
        else link
        for link in links
    ]


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
