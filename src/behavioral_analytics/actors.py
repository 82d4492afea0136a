"""Who sent an event, as one id: the user id, else `anonymous:` and the anonymous id (Segment's
`userId` and `anonymousId`). Persons, tombstones and the commands that name someone use it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ANONYMOUS_PREFIX", "RESERVED_USER_ID", "actor", "actor_ids"]

ANONYMOUS_PREFIX = "anonymous:"
# The detail of `invalid_value:user_id`: a user id `anonymous:zz` would be the visitor `zz`.
RESERVED_USER_ID = (
    f"user_id: may not start with {ANONYMOUS_PREFIX!r}, which names an anonymous visitor by "
    "their anonymous id"
)


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
