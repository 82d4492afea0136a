"""A broker on one SQLite file with Pub/Sub's semantics, safe for several processes.

Each subscription holds its own copy of every message published to its topic after it was
created. A lease sets `visible_at` to the lease deadline, so a message whose lease runs out
(its worker crashed) simply becomes visible again; an ack deletes it if the lease is still
the one it was given. After `max_delivery_attempts` a message moves to `dead_letters`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from behavioral_analytics.broker import (
    Broker,
    BrokerError,
    DeadLetteredMessage,
    Delivery,
    OutgoingMessage,
)
from behavioral_analytics.privacy import mentions
from behavioral_analytics.sqlite_util import (
    BUSY_TIMEOUT_MS,
    PerThreadConnection,
    access_problem,
    erase_log_copies,
    is_busy,
    locked,
    table_names,
    transaction,
)

__all__ = ["LocalBroker"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS subscriptions (
  name TEXT PRIMARY KEY,
  topic TEXT NOT NULL,
  ack_deadline_s REAL NOT NULL,
  max_delivery_attempts INTEGER NOT NULL,
  ordering INTEGER NOT NULL,
  retention_s REAL NOT NULL,
  min_backoff_s REAL NOT NULL,
  max_backoff_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  subscription TEXT NOT NULL,
  message_id TEXT NOT NULL,
  data BLOB NOT NULL,
  attributes TEXT,
  ordering_key TEXT,
  publish_time REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  visible_at REAL NOT NULL,
  lease_token TEXT,
  history TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (subscription, visible_at);
CREATE INDEX IF NOT EXISTS messages_by_key ON messages (subscription, ordering_key, seq)
  WHERE ordering_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY,
  subscription TEXT NOT NULL,
  message_id TEXT NOT NULL,
  data BLOB NOT NULL,
  attributes TEXT,
  publish_time REAL NOT NULL,
  attempts INTEGER NOT NULL,
  history TEXT,
  reason TEXT NOT NULL,
  dead_at REAL NOT NULL
);
"""

_SELECT_READY = """
SELECT seq, attempts, lease_token IS NOT NULL FROM messages
WHERE subscription = ? AND visible_at <= ?
ORDER BY visible_at LIMIT ?
"""

# With ordering on, only the oldest unacked message of a key may be leased, and only while no
# earlier one is outstanding (an outstanding one is invisible, so the key's minimum is blocked).
_SELECT_READY_ORDERED = """
SELECT seq, attempts, lease_token IS NOT NULL FROM messages AS m
WHERE subscription = ? AND visible_at <= ?
  AND (ordering_key IS NULL OR seq = (
    SELECT min(seq) FROM messages
    WHERE subscription = m.subscription AND ordering_key = m.ordering_key))
ORDER BY visible_at LIMIT ?
"""

_NACK = """
UPDATE messages SET visible_at = ?, lease_token = NULL,
                    history = json_insert(coalesce(history, '[]'), '$[#]', json(?))
WHERE seq IN (SELECT value FROM json_each(?))
"""
_APPEND_HISTORY = """
UPDATE messages SET history = json_insert(coalesce(history, '[]'), '$[#]', json(?))
WHERE seq = ?
"""


class LocalBroker(Broker):
    def __init__(
        self,
        path: Path,
        *,
        topic: str = "user-events",
        subscription: str = "analytics-processor",
        ack_deadline_s: float = 60.0,
        max_delivery_attempts: int = 5,
        ordering: bool = False,
        retention_s: float = 7 * 86400.0,
        min_backoff_s: float = 10.0,
        max_backoff_s: float = 600.0,
        poll_interval_s: float = 0.02,
        publish_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.topic = topic
        self.subscription = subscription
        self.ack_deadline_s = ack_deadline_s
        self.max_delivery_attempts = max_delivery_attempts
        self.ordering = ordering
        self.retention_s = retention_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        # A publish waits at most this long for the file's write lock (workers wait longer):
        # the collector then answers 503 at once rather than hold its client for 30 s.
        self.publish_timeout_s = publish_timeout_s
        self._clock = clock
        self._subscribers: tuple[float, list[str]] = (0.0, [])
        self._next_retention_check = 0.0
        try:
            self._refuse_foreign()
            self._connections = PerThreadConnection(path, _SCHEMA)
            self.init()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise self._unusable(exc) from None
            raise BrokerError(f"the broker file {locked(self.path, exc)}") from None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _refuse_foreign(self) -> None:
        """Refuse, before writing anything into it, a SQLite file of another program where the
        broker's belongs (as the store refuses one). Raises BrokerError; sqlite3.DatabaseError
        for a file that is not SQLite."""
        if not self.path.exists() or not self.path.stat().st_size:
            return
        tables = table_names(self.path, BUSY_TIMEOUT_MS / 1000)
        # None of the broker's tables (one another process is creating has its first ones).
        if tables and tables.isdisjoint(("topics", "subscriptions", "messages", "dead_letters")):
            raise BrokerError(
                f"{self.path} is a SQLite file but not a behavioral-analytics broker (none of "
                "its tables): point BA_DATA_DIR at your data, or move the file aside"
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Runs a write of `what` ("ack", "pull", …): an SQLite error in it raises BrokerError,
        one line naming the file and, when the file cannot be written where it is (a full
        disk, a read-only folder), what to check (`access_problem`)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            problem = access_problem(self.path, exc) or f"{self.path}: {exc}"
            raise BrokerError(f"{what} on the local broker failed: {problem}") from exc

    def _unusable(self, exc: sqlite3.Error) -> BrokerError:
        """What to check when the file could not be opened, read or written where it is
        (`access_problem`), else `_damaged`."""
        problem = access_problem(self.path, exc)
        return self._damaged(str(exc)) if problem is None else BrokerError(problem)

    def _damaged(self, what: str) -> BrokerError:
        return BrokerError(
            f"the broker file {self.path} is damaged ({what}): move it aside and run "
            "`behavioral-analytics init` (messages not yet processed in it are lost; the "
            "publishers' retries or `dlq replay` bring back what they can)"
        )

    def check_files(self) -> None:
        """Every page of the broker's file (`PRAGMA quick_check`: time in proportion to the
        file). Raises BrokerError naming the file and what to do."""
        try:
            rows = [row[0] for row in self._db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        if rows != ["ok"]:
            raise self._damaged(_one_line(rows))

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def init(self) -> list[str]:
        done = [f"local broker at {self.path}"]
        with transaction(self._db):
            created = self._db.execute(
                "INSERT OR IGNORE INTO topics VALUES (?)", (self.topic,)
            ).rowcount
            done.append(f"topic {self.topic}: {'created' if created else 'exists'}")
            created = self._db.execute(
                "INSERT OR IGNORE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.subscription,
                    self.topic,
                    self.ack_deadline_s,
                    self.max_delivery_attempts,
                    int(self.ordering),
                    self.retention_s,
                    self.min_backoff_s,
                    self.max_backoff_s,
                ),
            ).rowcount
            done.append(
                f"subscription {self.subscription} on {self.topic}: "
                f"{'created' if created else 'exists'} (ack deadline {self.ack_deadline_s:g} s, "
                f"dead letters after {self.max_delivery_attempts} attempts, ordering "
                f"{'on' if self.ordering else 'off'})"
            )
            if not created:
                self._db.execute(
                    "UPDATE subscriptions SET topic = ?, ack_deadline_s = ?, "
                    "max_delivery_attempts = ?, ordering = ?, retention_s = ?, "
                    "min_backoff_s = ?, max_backoff_s = ? WHERE name = ?",
                    (
                        self.topic,
                        self.ack_deadline_s,
                        self.max_delivery_attempts,
                        int(self.ordering),
                        self.retention_s,
                        self.min_backoff_s,
                        self.max_backoff_s,
                        self.subscription,
                    ),
                )
        self._subscribers = (0.0, [])
        return done

    def create_subscription(self, name: str, *, ordering: bool = False) -> None:
        """Another subscription on the topic; it receives every message published from now on."""
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    self.topic,
                    self.ack_deadline_s,
                    self.max_delivery_attempts,
                    int(ordering),
                    self.retention_s,
                    self.min_backoff_s,
                    self.max_backoff_s,
                ),
            )
        self._subscribers = (0.0, [])

    def for_subscription(self, name: str) -> LocalBroker:
        """A broker on the same file that pulls from another subscription of the topic."""
        row = self._db.execute(
            "SELECT ordering FROM subscriptions WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise BrokerError(f"no subscription {name!r} in {self.path}")
        return LocalBroker(
            self.path,
            topic=self.topic,
            subscription=name,
            ack_deadline_s=self.ack_deadline_s,
            max_delivery_attempts=self.max_delivery_attempts,
            ordering=bool(row[0]),
            retention_s=self.retention_s,
            min_backoff_s=self.min_backoff_s,
            max_backoff_s=self.max_backoff_s,
            poll_interval_s=self.poll_interval_s,
            clock=self._clock,
        )

    def _subscriptions_of_topic(self, now: float) -> list[str]:
        fetched_at, names = self._subscribers
        if now - fetched_at > 2.0:
            names = [
                row[0]
                for row in self._db.execute(
                    "SELECT name FROM subscriptions WHERE topic = ?", (self.topic,)
                )
            ]
            self._subscribers = (now, names)
        return names

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        now = self._clock()
        ids = [uuid.uuid4().hex for _ in messages]
        rows = [
            (
                subscription,
                message_id,
                message.data,
                json.dumps(message.attributes) if message.attributes else None,
                message.ordering_key or None,
                now,
                now,
            )
            for subscription in self._subscriptions_of_topic(now)
            for message_id, message in zip(ids, messages, strict=True)
        ]
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(self.publish_timeout_s * 1000)}")
        try:
            with transaction(db):
                db.executemany(
                    "INSERT INTO messages (subscription, message_id, data, attributes, "
                    "ordering_key, publish_time, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.OperationalError as exc:
            problem = access_problem(self.path, exc) or f"{self.path}: {exc}"
            raise BrokerError(f"publish to the local broker failed: {problem}") from exc
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return ids

    def pull(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting up to `timeout` seconds for the first.
        Raises BrokerError when the file cannot be read or written (the worker retries)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._writing("pull"):
                deliveries = self._lease(max_messages)
            if deliveries or time.monotonic() >= deadline:
                return deliveries
            time.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def _lease(self, max_messages: int) -> list[Delivery]:
        now = self._clock()
        if now >= self._next_retention_check:
            self._drop_expired(now)
        query = _SELECT_READY_ORDERED if self.ordering else _SELECT_READY
        token = secrets.token_hex(6)
        with transaction(self._db):
            ready = self._db.execute(query, (self.subscription, now, max_messages)).fetchall()
            if not ready:
                return []
            leased: list[int] = []
            exhausted: list[int] = []
            for seq, attempts, was_leased in ready:
                if attempts and was_leased:
                    self._record(seq, attempts, now, "lease_expired")
                (exhausted if attempts >= self.max_delivery_attempts else leased).append(seq)
            if exhausted:
                self._dead_letter(exhausted, now)
            if not leased:
                return []
            rows = self._db.execute(
                "UPDATE messages SET attempts = attempts + 1, lease_token = ?, visible_at = ? "
                "WHERE seq IN (SELECT value FROM json_each(?)) "
                "RETURNING seq, message_id, data, attributes, ordering_key, publish_time, attempts",
                (token, now + self.ack_deadline_s, json.dumps(leased)),
            ).fetchall()
        rows.sort()
        return [
            Delivery(
                ack_id=f"{seq}.{token}",
                message_id=message_id,
                data=data,
                attributes=json.loads(attributes) if attributes else {},
                publish_time=publish_time,
                delivery_attempt=attempts,
                ordering_key=ordering_key,
            )
            for seq, message_id, data, attributes, ordering_key, publish_time, attempts in rows
        ]

    def _record(self, seq: int, attempt: int, now: float, outcome: str, reason: str = "") -> None:
        self._db.execute(_APPEND_HISTORY, (json.dumps(_entry(attempt, now, outcome, reason)), seq))

    def _dead_letter(self, seqs: list[int], now: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO dead_letters "
            "SELECT seq, subscription, message_id, data, attributes, publish_time, attempts, "
            "history, coalesce(json_extract(history, '$[#-1].reason'), "
            "json_extract(history, '$[#-1].outcome'), 'max_delivery_attempts'), ? "
            "FROM messages WHERE seq IN (SELECT value FROM json_each(?))",
            (now, json.dumps(seqs)),
        )
        self._db.execute(
            "DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?))",
            (json.dumps(seqs),),
        )

    def _drop_expired(self, now: float) -> None:
        self._next_retention_check = now + 60.0
        with transaction(self._db):
            self._db.execute(
                "DELETE FROM messages WHERE subscription = ? AND publish_time < ?",
                (self.subscription, now - self.retention_s),
            )

    @staticmethod
    def _parse_ack_ids(ack_ids: Iterable[str]) -> list[tuple[int, str]]:
        pairs = []
        for ack_id in ack_ids:
            seq, _, token = ack_id.partition(".")
            pairs.append((int(seq), token))
        return pairs

    @classmethod
    def _by_lease(cls, ack_ids: Iterable[str]) -> dict[str, list[int]]:
        """The messages' sequence numbers by the lease token of their ack ids."""
        by_lease: dict[str, list[int]] = {}
        for seq, token in cls._parse_ack_ids(ack_ids):
            by_lease.setdefault(token, []).append(seq)
        return by_lease

    def ack(self, ack_ids: Iterable[str]) -> None:
        by_lease = self._by_lease(ack_ids)
        if not by_lease:
            return
        with self._writing("ack"), transaction(self._db):
            for token, seqs in by_lease.items():
                self._db.execute(
                    "DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?)) "
                    "AND lease_token = ?",
                    (json.dumps(seqs), token),
                )

    def nack(self, ack_ids: Iterable[str], reason: str) -> None:
        """Make the messages still leased by these ack ids deliverable again after the retry
        backoff, each with a `nack` entry in its history: a few statements per lease, one per
        delivery attempt among its messages (a stopping worker gives back whole batches,
        beside other stopping workers)."""
        by_lease = self._by_lease(ack_ids)
        if not by_lease:
            return
        now = self._clock()
        with self._writing("nack"), transaction(self._db):
            for token, seqs in by_lease.items():
                by_attempt: dict[int, list[int]] = {}
                for seq, attempts in self._db.execute(
                    "SELECT seq, attempts FROM messages "
                    "WHERE seq IN (SELECT value FROM json_each(?)) AND lease_token = ?",
                    (json.dumps(seqs), token),
                ):
                    by_attempt.setdefault(attempts, []).append(seq)
                for attempts, leased in by_attempt.items():
                    backoff = min(self.max_backoff_s, self.min_backoff_s * 2 ** (attempts - 1))
                    self._db.execute(
                        _NACK,
                        (
                            now + backoff,
                            json.dumps(_entry(attempts, now, "nack", reason)),
                            json.dumps(leased),
                        ),
                    )

    def extend(self, ack_ids: Iterable[str], seconds: float) -> None:
        pairs = self._parse_ack_ids(ack_ids)
        if not pairs:
            return
        until = self._clock() + seconds
        with self._writing("extend"), transaction(self._db):
            self._db.executemany(
                "UPDATE messages SET visible_at = ? WHERE seq = ? AND lease_token = ?",
                [(until, seq, token) for seq, token in pairs],
            )

    def pull_dead_letters(self, max_messages: int) -> list[DeadLetteredMessage]:
        rows = self._db.execute(
            "SELECT seq, message_id, data, attributes, publish_time, history, reason "
            "FROM dead_letters WHERE subscription = ? ORDER BY seq LIMIT ?",
            (self.subscription, max_messages),
        ).fetchall()
        return [
            DeadLetteredMessage(
                handle=str(seq),
                message_id=message_id,
                data=data,
                attributes=json.loads(attributes) if attributes else {},
                publish_time=publish_time,
                attempts=json.loads(history) if history else [],
                reason=reason,
            )
            for seq, message_id, data, attributes, publish_time, history, reason in rows
        ]

    def forget_messages(self, user_ids: set[str], anonymous_ids: set[str]) -> int:
        """Delete every message of the file, waiting or dead-lettered, on every subscription,
        whose bytes name one of the ids (`privacy.mentions`: every spelling of an id, `12345`
        as well as `"12345"`), with its delivery history; how many rows were deleted. A
        message leased at the time is deleted too: its ack then finds nothing. The rows are
        overwritten (`secure_delete`, on for every connection, acked messages' too) and the
        write-ahead log is checkpointed and truncated, whether any row was deleted or not (it
        holds the pages of messages acked before): see docs/behavior.md "Personal data"."""
        doomed: dict[str, list[tuple[int]]] = {"messages": [], "dead_letters": []}
        db = self._db
        with transaction(db):
            for table, rows in doomed.items():
                for seq, data in db.execute(f"SELECT seq, data FROM {table}"):
                    if mentions(bytes(data), user_ids, anonymous_ids):
                        rows.append((seq,))
                db.executemany(f"DELETE FROM {table} WHERE seq = ?", rows)
        erase_log_copies(db, self.path)
        return sum(len(rows) for rows in doomed.values())

    def ack_dead_letters(self, handles: Iterable[str]) -> None:
        with self._writing("dead-letter ack"), transaction(self._db):
            self._db.executemany(
                "DELETE FROM dead_letters WHERE seq = ?", [(int(h),) for h in handles]
            )

    def backlog(self, through: int | None = None) -> int:
        return int(
            self._db.execute(
                "SELECT count(*) FROM messages WHERE subscription = ? AND seq <= ?",
                (self.subscription, through if through is not None else 2**63 - 1),
            ).fetchone()[0]
        )

    def backlog_mark(self) -> int:
        """The newest message's sequence number (messages keep theirs across redeliveries)."""
        row = self._db.execute("SELECT max(seq) FROM messages").fetchone()
        return int(row[0] or 0)

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        backlog, outstanding, oldest = self._db.execute(
            "SELECT count(*), sum(visible_at > ? AND lease_token IS NOT NULL), min(publish_time) "
            "FROM messages WHERE subscription = ?",
            (now, self.subscription),
        ).fetchone()
        return {
            "backlog": backlog,
            "outstanding": outstanding or 0,
            "oldest_unacked_age_s": (now - oldest) if oldest is not None else None,
            "dead_lettered": self._db.execute(
                "SELECT count(*) FROM dead_letters WHERE subscription = ?", (self.subscription,)
            ).fetchone()[0],
        }

    def ping(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM topics LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise BrokerError(f"local broker at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._connections.close()


def _one_line(rows: list[str]) -> str:
    """SQLite's integrity report (several lines, "*** in database main ***" first) as one."""
    lines = [" ".join(row.replace("*** in database main ***", "").split()) for row in rows]
    return "; ".join(line for line in lines if line)


def _entry(attempt: int, now: float, outcome: str, reason: str = "") -> dict[str, object]:
    """One entry of a message's delivery history: its attempt, when (epoch seconds), how it
    ended (`nack`, `lease_expired`) and the reason given, if any."""
    entry: dict[str, object] = {"attempt": attempt, "at": now, "outcome": outcome}
    if reason:
        entry["reason"] = reason
    return entry
