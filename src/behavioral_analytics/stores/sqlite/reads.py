"""The read side of the SQLite store: profiles, pages of raw events, series, sessions, funnels,
links, dead letters, freshness and counts, each one query (or a few) on the caller's thread's
connection.

Pages of raw events are ordered by (timestamp, key) descending, and a cursor is the position
of the last item handed out (`store.encode_cursor`); dead-letter pages are by id, descending,
and their cursor is the last id.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence

import msgspec

from behavioral_analytics.actors import ANONYMOUS_PREFIX
from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.identity import Link
from behavioral_analytics.sessions import SessionStats
from behavioral_analytics.sqlite_util import PerThreadConnection
from behavioral_analytics.store import (
    DeadLetter,
    Freshness,
    FunnelDay,
    InvalidCursor,
    Page,
    Profile,
    SeriesPoint,
    SessionPoint,
    StoredEvent,
    StoreError,
    decode_cursor,
    encode_cursor,
)
from behavioral_analytics.stores.sqlite.identity import LINKS_WITH_CUTS
from behavioral_analytics.stores.sqlite.rows import EVENT_COLUMNS, dead_letter, stored_event

__all__ = ["Reads"]

_encode = msgspec.json.Encoder().encode


class Reads:
    """The `Store` port's reads on `connections` (one per thread), with `rules` for funnels
    and session finality, `periods` for bucket labels and `clock` (epoch seconds) for "now"."""

    def __init__(
        self,
        connections: PerThreadConnection,
        rules: BehaviorRules,
        periods: Periods,
        clock: Callable[[], float],
    ) -> None:
        self._connections = connections
        self.rules = rules
        self.periods = periods
        self._clock = clock

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def profile(self, who: str) -> Profile | None:
        row = self._db.execute(
            "SELECT total_events, first_seen, last_activity FROM profiles WHERE who = ?", (who,)
        ).fetchone()
        if row is None:
            return None
        by_type = dict(
            self._db.execute(
                "SELECT event_type, count FROM profile_types WHERE who = ? ORDER BY event_type",
                (who,),
            ).fetchall()
        )
        return Profile(who, row[0], by_type, row[1], row[2])

    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        return self._page("person", who, limit, cursor)

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        return self._page("event_type", event_type, limit, cursor)

    def _page(self, column: str, value: str, limit: int, cursor: str | None) -> Page[StoredEvent]:
        limit = max(1, min(limit, 1000))
        if cursor:
            timestamp, key = decode_cursor(cursor)
            rows = self._db.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE {column} = ? "
                "AND (timestamp < ? OR (timestamp = ? AND key < ?)) "
                "ORDER BY timestamp DESC, key DESC LIMIT ?",
                (value, timestamp, timestamp, key, limit + 1),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE {column} = ? "
                "ORDER BY timestamp DESC, key DESC LIMIT ?",
                (value, limit + 1),
            ).fetchall()
        items = [stored_event(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last.event.timestamp, last.event.key)
        return Page(items, next_cursor)

    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for start in range(0, len(keys), 10_000):
            chunk = _encode(list(keys[start : start + 10_000])).decode()
            found.extend(
                stored_event(row)
                for row in self._db.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events "
                    "WHERE key IN (SELECT value FROM json_each(?))",
                    (chunk,),
                )
            )
        return found

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]:
        low, high = start or "", end or "\uffff"
        humans = {
            period: (total, uniques)
            for period, total, uniques in self._db.execute(
                "SELECT period, total_events, unique_users FROM buckets "
                "WHERE granularity = ? AND period >= ? AND period <= ?",
                (granularity, low, high),
            )
        }
        bots = dict(
            self._db.execute(
                "SELECT period, events FROM bot_buckets "
                "WHERE granularity = ? AND period >= ? AND period <= ?",
                (granularity, low, high),
            ).fetchall()
        )
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        for period, event_type, count in self._db.execute(
            "SELECT period, event_type, count FROM bucket_types "
            "WHERE granularity = ? AND period >= ? AND period <= ? ORDER BY period, event_type",
            (granularity, low, high),
        ):
            by_type[period][event_type] = count
        # A period of crawlers only has no human bucket; one every event left (`forget`) is gone.
        return [
            SeriesPoint(
                granularity,
                period,
                humans.get(period, (0, 0))[0],
                by_type.get(period, {}),
                None if granularity == "minute" else humans.get(period, (0, 0))[1],
                bots.get(period, 0),
            )
            for period in sorted({*humans, *bots})
            if humans.get(period, (0, 0))[0] or bots.get(period, 0)
        ]

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        if granularity not in ("hour", "day"):
            raise StoreError("sessions are kept per hour and per day")
        now = self._clock()
        return [
            SessionPoint(
                granularity,
                period,
                SessionStats(sessions, duration_ms, bounces, events),
                self.rules.session_final(self.periods, granularity, period, now),
            )
            for period, sessions, duration_ms, bounces, events in self._db.execute(
                "SELECT period, sessions, duration_ms, bounces, events FROM session_buckets "
                "WHERE granularity = ? AND period >= ? AND period <= ? AND sessions != 0 "
                "ORDER BY period",
                (granularity, start or "", end or "\uffff"),
            )
        ]

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        funnel = self.rules.funnel(name)
        if funnel is None:
            raise StoreError(f"no funnel named {name!r}")
        users: dict[str, list[int]] = {}
        for day, step, count in self._db.execute(
            "SELECT day, step, users FROM funnel_buckets WHERE funnel = ? AND day >= ? "
            "AND day <= ? ORDER BY day",
            (name, start or "", end or "\uffff"),
        ):
            users.setdefault(day, [0] * len(funnel.steps))[step - 1] = count
        return [FunnelDay(day, steps) for day, steps in users.items() if steps[0]]

    def links(self, who: str) -> list[Link]:
        anonymous_id = (
            who.removeprefix(ANONYMOUS_PREFIX) if who.startswith(ANONYMOUS_PREFIX) else None
        )
        rows = self._db.execute(
            f"{LINKS_WITH_CUTS} WHERE l.user_id = ? OR l.anonymous_id = ? "
            "ORDER BY l.linked_at, l.event_key",
            (who, anonymous_id),
        )
        return [Link(*row) for row in rows]

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        limit = max(1, min(limit, 1000))
        try:
            # Only an id as a page handed it out: ASCII digits, no sign, no leading zero.
            if cursor and not (cursor.isascii() and cursor.isdigit() and cursor[0] != "0"):
                raise ValueError(cursor)
            before = int(cursor) if cursor else 2**62
            if not 0 < before < 2**63:  # SQLite's INTEGER
                raise ValueError(cursor)
        except ValueError:
            raise InvalidCursor(f"invalid cursor {cursor!r}") from None
        rows = self._db.execute(
            "SELECT * FROM dead_letters WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before, limit + 1),
        ).fetchall()
        items = [dead_letter(row) for row in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        try:
            key = int(dead_letter_id)
        except ValueError:
            return None
        row = self._db.execute("SELECT * FROM dead_letters WHERE id = ?", (key,)).fetchone()
        return dead_letter(row) if row else None

    def count_dead_letters(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return count

    def active_users(self, since: float) -> int:
        count: int = self._db.execute(
            "SELECT count(*) FROM profiles WHERE last_activity >= ?", (since,)
        ).fetchone()[0]
        return count

    def freshness(self) -> Freshness:
        row = self._db.execute(
            "SELECT newest_event_at, last_commit_at, lag_s FROM pipeline_state WHERE id = 1"
        ).fetchone()
        return Freshness(*row) if row else Freshness(None, None, None)

    def count_events(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
        return count
