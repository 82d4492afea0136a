"""`verify`'s check of the copies of raw events a store keeps to spare queries. Pure: no I/O.

The Firestore store keeps two (docs/behavior.md, "How Firestore keeps it exact"; SQLite, which
reads its raw events inside the commit's transaction, keeps neither):

- each person's **digest of recent events**: from a time `from` on, every human event of
  theirs that sessions or funnels need (no client session id, or a funnel step matched), with
  its time, whether it has no client session id and the steps it matches per funnel. The
  person's next commit derives their sessions and funnel steps from it instead of querying;
- each anonymous actor's **list of its events**: every human event of the anonymous id without
  a user id (time, type, client session id), in the order kept. A link moves each listed event
  to the user (one listed twice would be moved, and counted, twice).

Neither shows in any figure. A digest that lacks an event (or lists one that is not stored)
makes that person's next commit cut their sessions or place their funnel steps without it (or
with it); a list that lacks one leaves that event with the anonymous visitor when a link
moves the rest. `verify` compares both with the retained raw events (`Copies`): drift kinds
`recent_events` (key the person) and `anonymous_events` (key the anonymous actor), stored and
expected each the rows one side holds beyond the other, `[event key, time, no client session
id, {funnel: [steps]}]` and `[event key, time, type, client session id]`. Steps of funnels no
longer configured are not compared (no commit reads them; `config apply` may remove a funnel),
and a digest entry left with neither steps nor a missing client session id is as absent.

Where only these copies drifted, `verify --repair` drops them (`Store.drop_copies`) rather than
rebuild every aggregate, and so does `config apply` where a funnel change makes only them stale
(an added or changed funnel's steps, which the digests' entries lack). Other drift rebuilds,
which drops them all. A person's next commit then reads their raw events and keeps a new digest;
an anonymous actor's list stays unknown (a link moving its events queries them).

Entries and events at or before the horizon (`verification.horizon_of`: the retention's start,
plus the most an event may be dated ahead of its receipt) are left out on both sides:
they may have expired while a copy still names them, which nothing reads back: a digest reaches
back a session cap and a gap, or a funnel window, before the person's newest event, and a link
moves events from the identity window before an accepted event's time on; the settings keep
raw events longer than the oldest accepted event plus both (`Settings`, BA_RAW_RETENTION_DAYS).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event

__all__ = ["COPY_KINDS", "AnonymousRow", "Copies", "DigestEntry"]

COPY_KINDS = frozenset({"recent_events", "anonymous_events"})

# A digest's entry: (time, no client session id, funnel name → indexes of the steps matched).
DigestEntry = tuple[float, bool, Mapping[str, frozenset[int]]]
# A listed anonymous event: (event key, time, type, client session id).
AnonymousRow = tuple[str, float, str, str | None]
_NO_STEPS: Mapping[str, frozenset[int]] = MappingProxyType({})


@dataclass(slots=True)
class Copies:
    """What the check needs of the retained raw events, gathered as they stream past
    (`gathering`), then the drift of a snapshot's copies (`drift`)."""

    rules: BehaviorRules
    digest: dict[str, DigestEntry] = field(default_factory=dict)  # event key → entry
    # Event key → (anonymous actor, time, type, client session id), for events without a
    # user id.
    listed: dict[str, tuple[str, float, str, str | None]] = field(default_factory=dict)

    def gathering(self, events: Iterator[Event]) -> Iterator[Event]:
        """`events`, each one a copy could hold noted on the way (the steps an event matches
        held once per distinct set: a recount holds every retained event's entry at once)."""
        funnels = self.rules.funnels
        shared: dict[tuple[tuple[str, frozenset[int]], ...], Mapping[str, frozenset[int]]] = {}
        for event in events:
            matched = tuple(
                (funnel.name, found)
                for funnel in funnels
                if (found := funnel.matched_steps(event.event_type, event.properties))
            )
            loose = event.session_id is None
            if matched:
                steps = shared.get(matched) or shared.setdefault(matched, dict(matched))
                self.digest[event.key] = (event.timestamp, loose, steps)
            elif loose:
                self.digest[event.key] = (event.timestamp, loose, _NO_STEPS)
            if event.user_id is None and event.anonymous_id is not None:
                at, event_type, session_id = event.timestamp, event.event_type, event.session_id
                self.listed[event.key] = (event.who, at, event_type, session_id)
            yield event

    def drift(
        self,
        recent: Mapping[str, tuple[float, Mapping[str, DigestEntry]]] | None,
        anonymous: Mapping[str, Sequence[AnonymousRow]] | None,
        persons: Mapping[str, str],
        horizon: float | None,
    ) -> list[tuple[str, str, list[list[Any]], list[list[Any]]]]:
        """(kind, person or actor, stored, expected) per copy that differs from the gathered
        events: the stored `recent` digests (person → (from, event key → entry)) and
        `anonymous` lists (actor → its rows, in the order kept: an event listed twice would
        be moved twice), None where the store keeps none. `persons` maps each human event's
        key to its person (`Recount.persons`: bots are absent, and no copy holds them). Steps
        of funnels no longer configured are left out of a digest's entries (no commit reads
        them), and an entry left with neither is as absent."""
        found: list[tuple[str, str, list[list[Any]], list[list[Any]]]] = []
        funnels = {funnel.name for funnel in self.rules.funnels}

        def kept(at: float) -> bool:
            return horizon is None or at > horizon

        if recent is not None:
            by_person: dict[str, list[DigestRow]] = defaultdict(list)
            for key, entry in self.digest.items():
                if persons.get(key) in recent:  # a human event of someone with a digest
                    by_person[persons[key]].append(_digest_row(key, entry, funnels))
            for person, (since, have) in sorted(recent.items()):
                rows = (_digest_row(key, entry, funnels) for key, entry in have.items())
                differ = _differing(
                    [row for row in rows if kept(row[1]) and (row[2] or row[3])],
                    [row for row in by_person.get(person, ()) if row[1] >= since and kept(row[1])],
                )
                if differ is not None:
                    stored, expected = differ
                    found.append(("recent_events", person, _steps(stored), _steps(expected)))
        if anonymous is not None:
            by_actor: dict[str, list[AnonymousRow]] = defaultdict(list)
            for key, (who, at, event_type, session_id) in self.listed.items():
                if key in persons and who in anonymous:  # human, of an actor with a list
                    by_actor[who].append((key, at, event_type, session_id))
            for who, have_rows in sorted(anonymous.items()):
                differ = _differing(
                    [row for row in have_rows if kept(row[1])],
                    [row for row in by_actor.get(who, ()) if kept(row[1])],
                )
                if differ is not None:
                    found.append(("anonymous_events", who, *differ))
        return found


# A digest's entry as compared: (event key, time, no client session id, ((funnel, steps), …)).
DigestRow = tuple[str, float, bool, tuple[tuple[str, tuple[int, ...]], ...]]


def _digest_row(key: str, entry: DigestEntry, funnels: AbstractSet[str]) -> DigestRow:
    at, loose, steps = entry
    matched = tuple(
        sorted((name, tuple(sorted(m))) for name, m in steps.items() if name in funnels)
    )
    return key, at, loose, matched


def _steps(rows: list[list[Any]]) -> list[list[Any]]:
    """Digest rows with their steps as {funnel: [steps]}, as `verify --json` prints them."""
    return [
        [key, at, loose, {name: list(m) for name, m in steps}] for key, at, loose, steps in rows
    ]


def _differing(
    have: Sequence[Any], want: Sequence[Any]
) -> tuple[list[list[Any]], list[list[Any]]] | None:
    """The rows `have` holds beyond `want` and those `want` holds beyond `have` (a row twice
    in one and once in the other is once beyond), by event key; None when they agree."""
    held, wanted = Counter(have), Counter(want)
    if held == wanted:
        return None
    return _listed(held - wanted), _listed(wanted - held)


def _listed(rows: Counter[Any]) -> list[list[Any]]:
    return [list(row) for row in sorted(rows.elements(), key=lambda row: (row[0], repr(row)))]
