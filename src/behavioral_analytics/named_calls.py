"""Segment's `alias` and `group` calls: what the store makes of them. Pure: no I/O.

The collector publishes them as canonical events whose `call` names them (`segment`): an
alias as event type "alias" with `properties.previousId`, a group as event type "group" with
`properties.groupId` and `properties.traits`. They are events of their sender like any other:
stored once per `messageId`, counted in `total_events` and `events_by_type` (as `identify` is).

alias (segment.com/docs/connections/spec/alias/): `previousId` → `userId`.

- A `previousId` that is an anonymous id links through the identity links, exactly as an
  `identify` of that anonymous id by `userId` at the alias's time would (`identity.proposal`).
- A `previousId` that is another user id is refused, `alias_of_user_unsupported`: merging two
  users' histories is not done. The message tells which it is: analytics.js sends the visitor's
  `anonymousId` with every call and `previousId = user.id()` once one is known, so a
  `previousId` other than the message's own `anonymousId` is a user id. A message without an
  `anonymousId` (the server libraries' alias) cannot tell them apart: its `previousId` is read
  as an anonymous id; events sent with it as a user id keep counting for that user id.
- A `previousId` equal to the `userId` links nothing and is kept as an event. analytics.js
  (analytics-next 1.84) sends exactly this once it knows a user: it stamps every call, alias
  included, with the current user id, so `alias(newId)` arrives as `userId = previousId =` the
  current id and the new id is lost on the client.

group (segment.com/docs/connections/spec/group/): the sender (its actor: the user id, else
`anonymous:` + the anonymous id) is a member of `groupId` (joined at its earliest group call);
the group's traits are those of its latest group call (event time, then event key: independent
of arrival order). Per day, a group's events and unique users are all its members' retained
events as counted for them (identity links applied), before they joined included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import (
    DEFAULT_LIMITS,
    Event,
    Limits,
    Rejection,
    allowed_text,
    parse_message,
)
from behavioral_analytics.json_shape import json_type

__all__ = [
    "ALIAS",
    "ALIAS_OF_USER",
    "GROUP",
    "Group",
    "GroupCall",
    "GroupDay",
    "alias_previous_id",
    "group_call",
    "group_days",
    "judged",
    "rejection",
]

ALIAS = "alias"
GROUP = "group"
ALIAS_OF_USER = "alias_of_user_unsupported"


@dataclass(frozen=True, slots=True)
class GroupCall:
    """One group call: `member` (an actor) joins `group_id`; `traits` as sent, at `at` (event
    time, epoch seconds); `event_key` orders calls of the same time. A call without traits
    (absent, not an object, or `{}`, as Segment's libraries send for `group(user, group)`)
    leaves the group's traits as they are (`sets_traits`)."""

    group_id: str
    member: str
    traits: dict[str, Any]
    at: float
    event_key: str

    @property
    def sets_traits(self) -> bool:
        """Whether the call gives the group traits (a non-empty object)."""
        return bool(self.traits)


@dataclass(frozen=True, slots=True)
class GroupDay:
    """One day (its label in the reporting time zone) of a group: its members' events and how
    many distinct members (persons) sent them."""

    day: str
    events: int
    unique_users: int

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "events": self.events, "unique_users": self.unique_users}


@dataclass(frozen=True, slots=True)
class Group:
    """A group as stored: its members (actors, sorted), its latest traits and their event time
    (epoch seconds; None, with traits {}, when no call gave it traits), and per day (in order)
    its members' events over the retained raw events."""

    group_id: str
    members: list[str]
    traits: dict[str, Any]
    traits_at: float | None
    days: list[GroupDay] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "members": self.members,
            "traits": self.traits,
            "traits_at": self.traits_at,
            "days": [d.to_dict() for d in self.days],
        }


def group_days(events: Iterable[tuple[float, str]], periods: Periods) -> list[GroupDay]:
    """(event time in epoch seconds, person) of the members' events → their days, in order."""
    counts: dict[str, int] = {}
    persons: dict[str, set[str]] = {}
    for timestamp, person in events:
        day = periods.label("day", timestamp)
        counts[day] = counts.get(day, 0) + 1
        persons.setdefault(day, set()).add(person)
    return [GroupDay(day, counts[day], len(persons[day])) for day in sorted(counts)]


def alias_previous_id(event: Event) -> str | None:
    """The anonymous id an accepted alias event links to its user id, else None."""
    if event.call != ALIAS or event.user_id is None:
        return None
    previous = event.properties.get("previousId")
    if type(previous) is not str or not previous or previous == event.user_id:
        return None
    return previous


def group_call(event: Event) -> GroupCall | None:
    """The group call an accepted group event makes, else None: also for a crawler's, which
    counts for no person (docs/behavior.md "Bots"), so makes no member and sets no traits."""
    if event.call != GROUP or is_bot(event.properties):
        return None
    group_id = event.properties.get("groupId")
    traits = event.properties.get("traits")
    if type(group_id) is not str or not group_id:
        return None
    return GroupCall(
        group_id, event.who, traits if type(traits) is dict else {}, event.timestamp, event.key
    )


def judged(
    data: bytes, *, message_id: str, received_at: float, limits: Limits = DEFAULT_LIMITS
) -> Event | Rejection:
    """The worker's verdict on a message's `data`, first received at `received_at` (epoch
    seconds) as `message_id`: `events.parse_message` under `limits`, and an alias or group
    event held to its call's rules (`rejection`). Raises what a parse that fails unexpectedly
    raises (the caller records the message as `events.UNPROCESSABLE`)."""
    parsed = parse_message(data, message_id=message_id, received_at=received_at, limits=limits)
    if isinstance(parsed, Event) and parsed.call is not None:
        return rejection(parsed, limits) or parsed
    return parsed


def rejection(event: Event, limits: Limits = DEFAULT_LIMITS) -> Rejection | None:
    """Why an alias or group event cannot be kept (None: it can; any other event: None).

    Reasons: `missing_field:user_id` (an alias names the user it links to),
    `missing_field:previous_id`, `invalid_value:previous_id` (not an id),
    `alias_of_user_unsupported` (the module's docstring), `missing_field:group_id`,
    `invalid_value:group_id`, `invalid_type:traits`. The details name the fields as the
    Segment call spells them (`userId`, `previousId`, `groupId`, `traits`)."""
    if event.call == ALIAS:
        previous = event.properties.get("previousId")
        if event.user_id is None:
            return _no(
                event, "missing_field:user_id", "userId is required: an alias names its user"
            )
        if previous is None or previous == "":
            return _no(
                event,
                "missing_field:previous_id",
                "previousId is required: the id the user was known by before",
            )
        if not _is_id(previous, limits):
            return _no(event, "invalid_value:previous_id", _expected_id("previousId", limits))
        if previous == event.user_id:
            return None  # the user itself: nothing to link (see the module's docstring)
        if event.anonymous_id is not None and previous != event.anonymous_id:
            return _no(
                event,
                ALIAS_OF_USER,
                "previousId is a user id (it is not the message's anonymousId): merging two "
                "users is not supported",
            )
    elif event.call == GROUP:
        group_id = event.properties.get("groupId")
        if group_id is None or group_id == "":
            return _no(
                event, "missing_field:group_id", "groupId is required: the id of the group joined"
            )
        if not _is_id(group_id, limits):
            return _no(event, "invalid_value:group_id", _expected_id("groupId", limits))
        traits = event.properties.get("traits", {})
        if type(traits) is not dict:
            return _no(
                event, "invalid_type:traits", f"traits: expected an object, got {json_type(traits)}"
            )
    return None


def _expected_id(name: str, limits: Limits) -> str:
    return (
        f"{name}: expected an id, a string of 1 to {limits.max_id_chars} characters, not only "
        "whitespace, without control characters"
    )


def _is_id(value: Any, limits: Limits) -> bool:
    return (
        type(value) is str
        and 0 < len(value) <= limits.max_id_chars
        and not value.isspace()
        and allowed_text(value)
    )


def _no(event: Event, reason: str, detail: str = "") -> Rejection:
    return Rejection(reason, detail, event.event_id)
