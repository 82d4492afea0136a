"""Groups on the SQLite store (`named_calls`): tables of their own, kept inside each commit's
transaction from the group calls it creates, so a redelivered call (not created again) changes
nothing.

`group_members` holds one row per (group, member) with the earliest call (event time, then
event key) that made it one; `group_traits` one row per group with the traits of its latest
call that gave some (`GroupCall.sets_traits`).
Both are upserts that keep the earlier or the later call whatever the arrival order. A day's
events and unique users are read from the members' retained raw events: those counted for a
member (`events.person`) and an anonymous member's own, which count for the user its links give
them to (each event once, each person once a day), so they are exact by construction and
`forget` (which deletes the raw events and, here, the memberships) leaves nothing behind.

Raw events keep their `call` (`events.call`), so `verify` recounts the memberships from the
retained group calls (`members`) and a rebuild replaces them by that recount
(`rebuild_members`); traits, which a `forget` of the latest caller leaves, are not recounted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.events import Event
from behavioral_analytics.named_calls import Group, group_call, group_days

__all__ = [
    "GROUPS_SCHEMA",
    "forget_members",
    "members",
    "read_group",
    "rebuild_members",
    "record_groups",
]

GROUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_members (
  group_id TEXT NOT NULL,
  member TEXT NOT NULL,  -- an actor: the user id, else `anonymous:` + the anonymous id
  joined_at REAL NOT NULL,
  event_key TEXT NOT NULL,
  PRIMARY KEY (group_id, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_by_member ON group_members (member);
CREATE TABLE IF NOT EXISTS group_traits (
  group_id TEXT PRIMARY KEY,
  traits TEXT NOT NULL,
  traits_at REAL NOT NULL,
  event_key TEXT NOT NULL
) WITHOUT ROWID;
"""

_JOIN = """
INSERT INTO group_members VALUES (?, ?, ?, ?)
ON CONFLICT (group_id, member) DO UPDATE SET
  joined_at = excluded.joined_at, event_key = excluded.event_key
WHERE (excluded.joined_at, excluded.event_key) < (group_members.joined_at, group_members.event_key)
"""
_TRAITS = """
INSERT INTO group_traits VALUES (?, ?, ?, ?)
ON CONFLICT (group_id) DO UPDATE SET
  traits = excluded.traits, traits_at = excluded.traits_at, event_key = excluded.event_key
WHERE (excluded.traits_at, excluded.event_key) > (group_traits.traits_at, group_traits.event_key)
"""


# The events counted for a member, and an anonymous member's own (which its links may count for
# a user), each once: (key, time, person).
_MEMBERS_EVENTS = """
SELECT e.key, e.timestamp, e.person FROM group_members m JOIN events e ON e.person = m.member
WHERE m.group_id = ?1 AND e.bot = 0
UNION
SELECT e.key, e.timestamp, e.person FROM group_members m
JOIN events e ON e.anonymous_id = substr(m.member, 11) AND e.user_id IS NULL
WHERE m.group_id = ?1 AND substr(m.member, 1, 10) = 'anonymous:' AND e.bot = 0
"""


def record_groups(db: sqlite3.Connection, created: Sequence[Event]) -> None:
    """Memberships and traits of the group calls among `created` (the events this commit
    inserted), inside the commit's write transaction on `db`."""
    calls = [call for event in created if (call := group_call(event)) is not None]
    if not calls:
        return
    db.executemany(_JOIN, [(c.group_id, c.member, c.at, c.event_key) for c in calls])
    db.executemany(
        _TRAITS,
        [(c.group_id, json.dumps(c.traits), c.at, c.event_key) for c in calls if c.sets_traits],
    )


def members(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """Every stored membership: (group id, member) → joined at (epoch seconds)."""
    rows = db.execute("SELECT group_id, member, joined_at FROM group_members")
    return {(group_id, member): joined_at for group_id, member, joined_at in rows}


def rebuild_members(db: sqlite3.Connection, events: Iterable[Event]) -> None:
    """Replace every membership by those the group calls among `events` make, inside a write
    transaction on `db` (`verify --repair`)."""
    db.execute("DELETE FROM group_members")
    calls = [call for event in events if (call := group_call(event)) is not None]
    db.executemany(_JOIN, [(c.group_id, c.member, c.at, c.event_key) for c in calls])


def read_group(db: sqlite3.Connection, group_id: str, periods: Periods) -> Group | None:
    """The group `group_id` (None: no call named it), with its days in `periods`."""
    row = db.execute(
        "SELECT traits, traits_at FROM group_traits WHERE group_id = ?", (group_id,)
    ).fetchone()
    members = [
        member
        for (member,) in db.execute(
            "SELECT member FROM group_members WHERE group_id = ? ORDER BY member", (group_id,)
        )
    ]
    if row is None and not members:
        return None
    events = db.execute(_MEMBERS_EVENTS, (group_id,))
    return Group(
        group_id,
        members,
        {} if row is None else json.loads(row[0]),
        None if row is None else row[1],
        group_days(((timestamp, person) for _, timestamp, person in events), periods),
    )


def forget_members(db: sqlite3.Connection, persons: Sequence[str]) -> int:
    """Remove `persons` (a forgotten user and their linked anonymous actors) from every group,
    inside `forget`'s write transaction; the number of memberships removed."""
    return sum(
        db.execute("DELETE FROM group_members WHERE member = ?", (person,)).rowcount
        for person in persons
    )
