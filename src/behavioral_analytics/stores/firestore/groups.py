"""Groups on the Firestore store (`named_calls`): documents of their own, written in the same
atomic commit as the group calls' raw events, so a redelivered call (whose raw event exists,
which fails and replays the commit without it) writes nothing twice.

- `analytics_groups/{g_<group id>}`: `group_id`, `calls` (Increment), `last_call_at` (Maximum).
- `analytics_groups/{…}/traits/{event key}`: one document per group call that gives traits
  (`at`, `event_key`, `traits`; `GroupCall.sets_traits`); the latest (event time, then event
  key) is the group's traits, whatever the arrival order. Written without a precondition:
  rewriting the same call's is harmless.
- `analytics_group_members/{hash of group and member}`: `group_id`, `member` (an actor) and
  `joined_at` (Minimum: the earliest call). One document per membership, never one growing
  document per group: B2B groups have more members than one document holds.

A day's events and unique users are read from the members' retained raw events (`person`, in
queries of 30 members), and an anonymous member's own (`who`), which its links may count for a
user (each event once), so they are exact by construction and `forget` leaves nothing behind
once it has deleted the raw events and, here, the memberships. Every query uses single-field
indexes only (Firestore creates them automatically).

Raw events keep their `call` (a field of the event document, only on alias and group calls),
so `verify` recounts the memberships from the retained group calls (`members`) and a rebuild
rewrites them from that recount (`joining`, `rewrite_members`); traits, which a `forget` of
the latest caller leaves, are not recounted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from google.cloud import firestore

from behavioral_analytics.actors import ANONYMOUS_PREFIX
from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event
from behavioral_analytics.named_calls import Group, GroupCall, group_call, group_days
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.keys import decode_map, doc_id, encode_map
from behavioral_analytics.stores.firestore.schema import EVENTS
from behavioral_analytics.stores.firestore.wire import write

__all__ = [
    "GROUPS",
    "GROUP_MEMBERS",
    "add_group_writes",
    "forget_members",
    "joining",
    "members",
    "read_group",
    "rewrite_members",
]

GROUPS = "analytics_groups"
GROUP_MEMBERS = "analytics_group_members"
TRAITS = "traits"
IN_QUERY_VALUES = 30  # Firestore's limit on the values of an `in` filter
_ANONYMOUS = ANONYMOUS_PREFIX  # what an anonymous member's name starts with


def group_doc(group_id: str) -> str:
    return doc_id("g_", group_id)


def member_doc(group_id: str, member: str) -> str:
    return hashlib.blake2b(f"{group_id}\x1f{member}".encode(), digest_size=16).hexdigest()


def add_group_writes(
    writes: list[Any], name: Callable[[str, str], str], events: Sequence[Event]
) -> None:
    """Append the writes of the group calls among `events` (the raw events the commit
    creates) to `writes`; `name(collection, document)` is the gateway's resource name."""
    calls = [call for event in events if (call := group_call(event)) is not None]
    groups: dict[str, list[GroupCall]] = {}
    joined: dict[tuple[str, str], float] = {}
    for call in calls:
        groups.setdefault(call.group_id, []).append(call)
        key = (call.group_id, call.member)
        joined[key] = min(joined.get(key, call.at), call.at)
    for group_id, own in groups.items():
        group = group_doc(group_id)
        transforms = [
            ("calls", "increment", len(own)),
            ("last_call_at", "maximum", max(c.at for c in own)),
        ]
        writes.append(
            write(
                name(GROUPS, group),
                {"group_id": group_id},
                mask=["group_id"],
                transforms=transforms,
            )
        )
        for call in own:
            if not call.sets_traits:
                continue
            fields = {"at": call.at, "event_key": call.event_key, "traits": encode_map(call.traits)}
            writes.append(write(name(f"{GROUPS}/{group}/{TRAITS}", call.event_key), fields))
    for (group_id, member), at in joined.items():
        writes.append(
            write(
                name(GROUP_MEMBERS, member_doc(group_id, member)),
                {"group_id": group_id, "member": member},
                mask=["group_id", "member"],
                transforms=[("joined_at", "minimum", at)],
            )
        )


def members(gateway: Gateway) -> dict[tuple[str, str], float]:
    """Every stored membership: (group id, member) → joined at (epoch seconds).

    Raises google.api_core.exceptions.GoogleAPICallError (the facade's to translate)."""
    found: dict[tuple[str, str], float] = {}
    for snap in gateway.all(GROUP_MEMBERS):
        data = snap.to_dict() or {}
        found[str(data["group_id"]), str(data["member"])] = float(data["joined_at"])
    return found


def joining(events: Iterable[Event], joined: dict[tuple[str, str], float]) -> Iterator[Event]:
    """`events`, each group call's membership kept in `joined` as it passes: (group id,
    member) → the earliest call's event time (epoch seconds)."""
    for event in events:
        call = group_call(event)
        if call is not None:
            key = (call.group_id, call.member)
            joined[key] = min(joined.get(key, call.at), call.at)
        yield event


def rewrite_members(gateway: Gateway, joined: dict[tuple[str, str], float]) -> None:
    """Replace every membership by `joined` ((group id, member) → joined at, epoch seconds).
    Not atomic: stop the workers first.

    Raises google.api_core.exceptions.GoogleAPICallError (the facade's to translate)."""
    gateway.delete_all(GROUP_MEMBERS)
    writer = gateway.client.batch()
    collection = gateway.collection(GROUP_MEMBERS)
    for (group_id, member), at in joined.items():
        doc = {"group_id": group_id, "member": member, "joined_at": at}
        writer.set(collection.document(member_doc(group_id, member)), doc)
        writer = gateway.flush_if_full(writer)
    gateway.flush_if_full(writer, force=True)


def read_group(gateway: Gateway, group_id: str, periods: Periods) -> Group | None:
    """The group `group_id` (None: no call named it), with its days in `periods`, every read
    made with `gateway.bound`.

    Raises the client's errors: a GoogleAPICallError, a RetryError when a read's retries ran
    out (the facade's to translate)."""
    bound = gateway.bound
    ref = gateway.collection(GROUPS).document(group_doc(group_id))
    if not ref.get(**bound).exists:
        return None
    traits_ref = ref.collection(TRAITS)
    newest = list(
        traits_ref.order_by("at", direction=firestore.Query.DESCENDING).limit(1).stream(**bound)
    )
    traits: dict[str, Any] = {}
    traits_at: float | None = None
    if newest:
        traits_at = float(newest[0].get("at"))
        ties = traits_ref.where(filter=firestore.FieldFilter("at", "==", traits_at))
        latest = max(ties.stream(**bound), key=lambda snap: str(snap.get("event_key")))
        traits = decode_map(latest.get("traits") or {})
    members = sorted(_members(gateway, group_id))
    return Group(
        group_id, members, traits, traits_at, group_days(_events(gateway, members), periods)
    )


def _members(gateway: Gateway, group_id: str) -> Iterator[str]:
    query = gateway.collection(GROUP_MEMBERS).where(
        filter=firestore.FieldFilter("group_id", "==", group_id)
    )
    for snap in query.stream(**gateway.bound):
        yield str(snap.get("member"))


def _events(gateway: Gateway, members: Sequence[str]) -> Iterator[tuple[float, str]]:
    """(time, person) of the human events counted for a member, and of an anonymous member's
    own (`who`), which its links may count for a user: each event once."""
    anonymous = [member for member in members if member.startswith(_ANONYMOUS)]
    seen: set[str] = set()
    for field, values in (("person", members), ("who", anonymous)):
        for start in range(0, len(values), IN_QUERY_VALUES):
            chunk = list(values[start : start + IN_QUERY_VALUES])
            query = (
                gateway.collection(EVENTS)
                .where(filter=firestore.FieldFilter(field, "in", chunk))
                .select(["ts", "person", "bot"])
            )
            for snap in query.stream(**gateway.bound):
                if snap.id in seen:
                    continue
                seen.add(snap.id)
                data = snap.to_dict() or {}
                if not data.get("bot"):
                    yield float(data["ts"]), str(data["person"])


def forget_members(gateway: Gateway, persons: Sequence[str]) -> int:
    """Delete the memberships of `persons` (a forgotten user and their linked anonymous
    actors); the number deleted. Each deletion stands alone: run again to finish."""
    deleted = 0
    for start in range(0, len(persons), IN_QUERY_VALUES):
        chunk = list(persons[start : start + IN_QUERY_VALUES])
        query = gateway.collection(GROUP_MEMBERS).where(
            filter=firestore.FieldFilter("member", "in", chunk)
        )
        for snap in query.stream(**gateway.options()):
            snap.reference.delete(**gateway.options())
            deleted += 1
    return deleted
