"""Identity links on the Firestore store: how they are kept, and what a batch changes. Pure.

Every proposal for an anonymous id is kept in that anonymous actor's document
(`analytics_aggregates/user_anonymous:{id}`, field `links`), with the users it names in
`linked_users` (for `links(user)`: an array-contains query on the automatic index). The
anonymous actor's document is the point where attribution is serialized: a commit that
changes an anonymous id's links writes it under its update-time precondition, and so does
every commit that counts an anonymous event of it for a linked user (it bumps `revision`).
Either commit therefore fails if the other landed since it read, and recomputes.

Since every commit that creates an anonymous-only event of an anonymous id writes that
document, it also keeps there the list of those events (`anonymous_events`, up to
`ANONYMOUS_EVENTS_MAX`): a link that moves them then needs no query. Without the list (a long
anonymous history, a rebuilt or forgotten document) the store queries `anonymous_id ==`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from behavioral_analytics.actors import ANONYMOUS_PREFIX, actor
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link, coverage, proposal, resolve, with_tombstones
from behavioral_analytics.stores.firestore.schema import (
    LINKED_USERS_FIELD,
    LINKS_FIELD,
)

__all__ = [
    "ANONYMOUS_EVENTS_MAX",
    "LinkChange",
    "Move",
    "decode_anonymous_events",
    "decode_links",
    "encode_anonymous_events",
    "encode_links",
    "link_changes",
]

ANONYMOUS_EVENTS_MAX = 500  # events listed in an anonymous actor's document

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def encode_links(links: Iterable[Link]) -> dict[str, object]:
    """The fields of an anonymous actor's document that hold its links: each as `[user, time,
    event key, status]`, and `user_forgotten_at` fifth where it has one (`identity.Link`)."""
    ordered = sorted(links, key=lambda link: (link.linked_at, link.event_key))
    return {
        LINKS_FIELD: _encode(
            [
                [k.user_id, k.linked_at, k.event_key, k.status]
                + ([] if k.user_forgotten_at is None else [k.user_forgotten_at])
                for k in ordered
            ]
        ),
        LINKED_USERS_FIELD: sorted({link.user_id for link in ordered}),
    }


def decode_links(anonymous_actor: str, raw: bytes | None) -> tuple[Link, ...]:
    """The links `encode_links` stored for `anonymous_actor` (none when `raw` is empty)."""
    anonymous_id = anonymous_actor.removeprefix(ANONYMOUS_PREFIX)
    return tuple(
        Link(anonymous_id, user_id, float(linked_at), event_key, status, *forgotten_at[:1])
        for user_id, linked_at, event_key, status, *forgotten_at in (_decode(raw) if raw else ())
    )


def encode_anonymous_events(events: Sequence[Event] | None) -> bytes:
    """An anonymous actor's stored anonymous-only human events, as a link moving them needs
    them (key, time, type, client session id); empty bytes: not known (too many, or not
    kept)."""
    if events is None or len(events) > ANONYMOUS_EVENTS_MAX:
        return b""
    return _encode([[e.key, e.timestamp, e.event_type, e.session_id] for e in events])


def decode_anonymous_events(anonymous_actor: str, raw: bytes | None) -> list[Event] | None:
    """The events `encode_anonymous_events` stored for `anonymous_actor` (None: not known)."""
    if not raw:
        return None
    anonymous_id = anonymous_actor.removeprefix(ANONYMOUS_PREFIX)
    return [
        Event(
            key,
            "",
            None,
            anonymous_id,
            event_type,
            float(timestamp),
            session_id,
            {},
            0.0,
            who=anonymous_actor,
        )
        for key, timestamp, event_type, session_id in _decode(raw)
    ]


@dataclass(frozen=True, slots=True)
class LinkChange:
    """An anonymous id whose links a batch changes: stored and resolved with the batch's
    proposals, and whether who its events count for changes (then its stored events move)."""

    anonymous_id: str
    before: tuple[Link, ...]
    after: tuple[Link, ...]

    @property
    def actor(self) -> str:
        return actor(None, self.anonymous_id)

    def moves_events(self, window_s: float) -> bool:
        return coverage(self.before, window_s) != coverage(self.after, window_s)


def link_changes(
    events: Iterable[Event],
    stored: Mapping[str, Sequence[Link]],
    allow_relink: bool,
    tombstones: Mapping[str, float],
) -> dict[str, LinkChange]:
    """Per anonymous id that the batch's `identify` events propose a new link for (`stored`:
    its links by anonymous actor, as read; `tombstones`: user id → tombstone, epoch seconds,
    for the proposals' users, each new link's `user_forgotten_at`)."""
    proposals: dict[str, list[Link]] = defaultdict(list)
    for event in events:
        link = proposal(event)
        if link is not None:
            proposals[link.anonymous_id].append(link)
    changes = {}
    for anonymous_id, new in proposals.items():
        before = tuple(stored.get(actor(None, anonymous_id), ()))
        known = {link.event_key for link in before}
        fresh = with_tombstones([link for link in new if link.event_key not in known], tombstones)
        if fresh:
            after = tuple(resolve([*before, *fresh], allow_relink))
            changes[anonymous_id] = LinkChange(anonymous_id, before, after)
    return changes


@dataclass(frozen=True, slots=True)
class Move:
    """A stored event that counts for another person from this commit on."""

    event: Event  # as stored (`who` is its actor)
    old: str
    new: str
