"""Who sent an event, as one id: the user id, else `anonymous:` and the anonymous id (Segment's
`userId` and `anonymousId`). Persons, tombstones and the commands that name someone use it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ANONYMOUS_PREFIX", "actor", "actor_ids"]

ANONYMOUS_PREFIX = "anonymous:"


def actor(user_id: str | None, anonymous_id: str | None) -> str:
    """Who sent an event: its user id, else `anonymous:` and its anonymous id."""
    return user_id if user_id is not None else f"{ANONYMOUS_PREFIX}{anonymous_id}"


def actor_ids(actors: Iterable[str]) -> tuple[set[str], set[str]]:
    """The (user ids, anonymous ids) that `actors` (as `actor` makes them) hold."""
    users: set[str] = set()
    anonymous: set[str] = set()
    for who in actors:
        if who.startswith(ANONYMOUS_PREFIX):
            anonymous.add(who.removeprefix(ANONYMOUS_PREFIX))
        else:
            users.add(who)
    return users, anonymous
