"""Who each event of a behavioral commit counts for, on the Firestore store.

A commit first reads the documents of the batch's actors (tombstones, identity links, the
stored derivation), drops what a `forget` covers, resolves the batch's identify proposals
(`identity.link_changes`), attributes every event, finds the stored events a changed link
moves (from the anonymous actor's list of its events when kept, else by a query), and reads
the documents of the persons that brings in. A document read twice must not have changed in
between (`Stale`: plan again).
"""

from __future__ import annotations

from dataclasses import dataclass

from behavioral_analytics.actors import actor
from behavioral_analytics.bots import is_bot
from behavioral_analytics.events import Event
from behavioral_analytics.identity import attribute, coverage, proposal
from behavioral_analytics.stores.firestore.documents import Seen, forgets
from behavioral_analytics.stores.firestore.gateway import Gateway, Stale
from behavioral_analytics.stores.firestore.identity import LinkChange, Move, link_changes
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.people import People

__all__ = ["Plan", "plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a behavioral commit does, decided from what it read."""

    events: list[Event]  # to create: the batch less what a `forget` covers
    persons: dict[str, str]  # event key -> the person it counts for
    seen: dict[str, Seen]  # person or actor -> its document as read (absent: none)
    links: dict[str, LinkChange]  # anonymous id -> its links, changed by the batch
    moves: list[Move]  # stored events counting for someone else from now on
    bumps: set[str]  # anonymous actors with events counted for a linked user
    # Anonymous actor whose links change who its events count for -> its stored events,
    # each with the person it counted for until now.
    anonymous: dict[str, list[tuple[Event, str]]]


def plan(events: list[Event], gateway: Gateway, options: StoreOptions, people: People) -> Plan:
    """Read the documents of the batch's actors (tombstones, links, the stored derivation),
    drop what a `forget` covers, resolve the batch's identify proposals, attribute every
    event, find the stored events a changed link moves, and read the documents of the
    persons that brings in.

    Raises `Stale` when a document read twice changed in between, `TransientStoreError` on a
    transient read error."""
    rules = options.rules
    window = rules.identity_window_s
    hours = {options.periods.of(e.timestamp)[1] for e in events}
    wanted = {e.who for e in events}
    wanted |= {actor(None, link.anonymous_id) for e in events if (link := proposal(e))}
    seen = people.read(wanted, hours)
    read = set(wanted)
    events = [e for e in events if not forgets(seen.get(e.who), e)]
    stored = {who: state.links for who, state in seen.items() if state.links}
    humans = [e for e in events if not is_bot(e.properties)]
    # A link's user is its proposal's sender, an actor read above.
    stones = {who: at for who, state in seen.items() if (at := state.forgotten_at) is not None}
    links = link_changes(humans, stored, rules.allow_relink, stones)
    covers = {who: coverage(own, window) for who, own in stored.items()}
    covers.update({c.actor: coverage(c.after, window) for c in links.values()})
    persons = {
        e.key: attribute(e, covers.get(e.who) if e.user_id is None else None) for e in events
    }
    anonymous: dict[str, list[tuple[Event, str]]] = {}
    unlisted = []
    listable = not any(step.where for f in rules.funnels for step in f.steps)
    for change in links.values():
        if not change.moves_events(window):
            continue
        state = seen.get(change.actor)
        listed = [] if state is None else state.anonymous_events
        if listed is None or not listable:
            unlisted.append(change)
            continue
        before = coverage(change.before, window)  # what their `person` says now
        anonymous[change.actor] = [(e, attribute(e, before)) for e in listed]
    if anonymous and any(d != "event_type" for d in rules.breakdowns.dimensions):
        # The list keeps no properties; the breakdowns of the events a link moves need them.
        anonymous = people.with_properties(anonymous)
    gateway.counters.identity_queries += len(unlisted)
    found = gateway.in_parallel(people.anonymous_events, [c.anonymous_id for c in unlisted])
    anonymous.update(zip((c.actor for c in unlisted), found, strict=True))
    # A redelivered event of the batch is stored already: its create fails the commit,
    # which then drops it and plans again (moving it, if it moves).
    batch = {e.key for e in events}
    moves = [
        Move(event, old, new)
        for who, stored_events in anonymous.items()
        for event, old in stored_events
        if (new := attribute(event, covers[who])) != old and event.key not in batch
    ]
    moving = {m.old for m in moves} | {m.new for m in moves}
    wanted = ({*persons.values()} - read) | moving
    if wanted:
        hours |= {options.periods.of(m.event.timestamp)[1] for m in moves}
        again = people.read(wanted, hours)
        for who in wanted & read:  # read twice: the plan holds only if nothing changed
            first, second = seen.get(who), again.get(who)
            if (first is None) != (second is None) or (
                first is not None and second is not None and first.update_time != second.update_time
            ):
                raise Stale(who)
        seen.update(again)
    events = [e for e in events if not forgets(seen.get(persons[e.key]), e, sender=False)]
    bumps = {
        e.who
        for e in events
        if e.user_id is None and persons[e.key] != e.who and not is_bot(e.properties)
    }
    return Plan(events, persons, seen, links, moves, bumps, anonymous)
