"""The Store port: the read model, committed exactly once per event.

Domain-level, not a document API. Adapters live in `behavioral_analytics.stores`: `sqlite`
(the default) and `firestore`. Only `behavioral_analytics.wiring` builds one.

`Store` is the whole contract an adapter implements (tests/contract runs it over both).
Consumers take the role-sized view they need, in the way dramatiq's `Consumer` stands beside
its `Broker`: the worker an `EventSink`, the query API and the live views a `ReadModel`,
`dlq` a `DeadLetterBox`, `verify` an `Auditable`, `forget` an `Eraser`. Each is a
`typing.Protocol` that every `Store` satisfies.

Errors: every method may raise `StoreError`; `TransientStoreError` (worth retrying) where the
backend is contended or unreachable; `NotSupported` where a store does not keep what is asked;
`InvalidCursor` for a cursor the store did not hand out.
"""

from __future__ import annotations

import abc
import base64
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from behavioral_analytics.aggregation import Granularity
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.identity import Link
from behavioral_analytics.named_calls import Group
from behavioral_analytics.records import (
    AggregateSnapshot,
    BreakdownPoint,
    CommitResult,
    DeadLetter,
    ForgetReport,
    Freshness,
    FunnelDay,
    NewDeadLetter,
    Page,
    Profile,
    RetentionCohort,
    SeriesPoint,
    SessionPoint,
    StoredEvent,
)
from behavioral_analytics.retention import DEFAULT_MAX_OFFSET, Unit
from behavioral_analytics.stored_config import StoredConfig

__all__ = [
    "AggregateSnapshot",
    "Auditable",
    "BreakdownPoint",
    "CommitAbandoned",
    "CommitResult",
    "ConfigChanged",
    "DeadLetter",
    "DeadLetterBox",
    "Eraser",
    "EventSink",
    "ForgetReport",
    "Freshness",
    "FunnelDay",
    "InvalidCursor",
    "LinkedAnonymousId",
    "NewDeadLetter",
    "NotSupported",
    "Page",
    "Profile",
    "ReadModel",
    "RetentionCohort",
    "SeriesPoint",
    "SessionPoint",
    "Store",
    "StoreError",
    "StoredEvent",
    "TransientStoreError",
    "decode_cursor",
    "encode_cursor",
]


class StoreError(Exception):
    """The store could not do what was asked."""


class ConfigChanged(StoreError):
    """A commit (or another write, or the API's watch) found another configuration recorded
    with the data than the one this process counts by (`config apply`, or another process that
    added a funnel or a breakdown dimension, since this one opened the store), or the store's
    files upgraded to a newer layout by a newer release (SQLite: `stores/sqlite/layout.py`):
    nothing was written, and no later write of this process can be. Restart the process so
    that it counts by the recorded configuration (or, after a newer release's upgrade, run
    that release)."""


class CommitAbandoned(StoreError):
    """A commit stopped waiting for the store's write lock, which another process held, because
    its caller's `give_up` said so (a stopping worker: `worker.py`): nothing of the batch was
    written; hand it back to the broker."""


class LinkedAnonymousId(StoreError):
    """`forget` was given an anonymous actor (`anonymous:ID`) that is actively linked to a
    user: its events count for that user (docs/behavior.md, "Identity"), so it is forgotten
    with them (`forget USER`), not alone. `user` is that user's id."""

    def __init__(self, anonymous_actor: str, user: str) -> None:
        super().__init__(
            f"{anonymous_actor} is linked to user {user}, for whom its events count: forget "
            f"{user} (which forgets every anonymous id linked to them)"
        )
        self.user = user


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor the store did not hand out."""


def encode_cursor(timestamp: float, key: str) -> str:
    """An opaque page cursor: the position (event time, key) after which the next page starts."""
    return base64.urlsafe_b64encode(f"{timestamp!r}|{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (event time, key) `encode_cursor` wrote into `cursor`. Raises InvalidCursor for
    anything it cannot have written (a time that is not a finite number, spaces around it)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        timestamp, key = raw.split("|", 1)
        if not key or "/" in key or timestamp != timestamp.strip():
            raise ValueError(key)
        if not math.isfinite(float(timestamp)):
            raise ValueError(timestamp)
        return float(timestamp), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor(f"invalid cursor {cursor!r}") from exc


class NotSupported(StoreError):
    """This store does not maintain what was asked for (yet)."""


class TransientStoreError(StoreError):
    """Worth retrying: contention, a timeout, an unavailable backend."""


class Store(abc.ABC):
    # Whether the store maintains sessions, funnels, identity links, bot counts and `forget`.
    behavioral: bool = False
    # Whether the store keeps breakdowns (`breakdown`), which `verify` then recounts.
    keeps_breakdowns: bool = False
    # Whether a commit is this process's own CPU work (an embedded store), not a wait on a
    # network: the worker then parses the next batch between commits (`Worker.run`).
    commits_in_process: bool = False
    rules: BehaviorRules | None = None

    @abc.abstractmethod
    def init(self) -> list[str]:
        """Create what the store needs if missing; say what was done, one line each.

        Raises StoreError when the store cannot be reached or created.
        """

    @abc.abstractmethod
    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult:
        """Atomically: create the raw events that do not exist yet, apply the deltas of exactly
        those, and record the dead letters; an event or dead letter a `forget` tombstone covers
        is dropped instead (`tombstones`; counted in `forgotten`, `letters_forgotten`). Safe
        to repeat: a redelivered batch changes nothing.

        `give_up` is asked, while the commit waits for a write lock another process holds
        (SQLite's; Firestore has none and never asks), whether to stop waiting: once it says
        True, CommitAbandoned is raised and nothing is written.

        Raises TransientStoreError (nothing was committed; retry the same batch), CommitAbandoned
        or StoreError.
        """

    @abc.abstractmethod
    def profile(self, who: str) -> Profile | None:
        """The person's profile (counts by type, first and last seen), None if unknown.

        Raises StoreError.
        """

    @abc.abstractmethod
    def timeline(self, who: str, limit: int = 50, cursor: str | None = None) -> Page[StoredEvent]:
        """A person's events, newest first, `limit` per page.

        Raises InvalidCursor for a cursor this store did not hand out, StoreError.
        """

    @abc.abstractmethod
    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]:
        """Events of one type, newest first, `limit` per page.

        Raises InvalidCursor for a cursor this store did not hand out, StoreError.
        """

    @abc.abstractmethod
    def get_events(self, keys: Sequence[str]) -> list[StoredEvent]:
        """The stored events among `keys` (dedupe keys), in no particular order.

        Raises StoreError.
        """

    def scan_events(self, start_s: float, end_s: float, limit: int) -> list[Event]:
        """The human events (crawlers' left out) with `start_s` <= timestamp < `end_s` (epoch
        seconds), each as counted: its `who` is the person it counts for once identity links
        are applied (`behavior.as_person`); oldest first, then by key; at most `limit` (>= 1),
        which ones unsaid when the range holds more: a caller that takes at most N asks for
        N + 1 and refuses a full answer (`raw_queries`). Reads one raw event per event.

        Raises ScanError `before_horizon` when `start_s` is before the raw-event retention
        (now less the retention: older events may be gone), an empty range included (so
        asking for one checks the horizon alone), NotSupported, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not scan raw events")

    @abc.abstractmethod
    def series(
        self,
        granularity: Granularity,
        start: str | None = None,
        end: str | None = None,
    ) -> list[SeriesPoint]:
        """Buckets with start <= period <= end (period labels), oldest first; only periods
        with events.

        Raises StoreError.
        """

    @abc.abstractmethod
    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> int:
        """Record dead letters outside a commit; one already recorded (same fingerprint) is
        not recorded again, nor one a `forget` tombstone covers (`tombstones.covers_letters`).
        Returns how many a tombstone covered.

        Raises StoreError.
        """

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]:
        """Dead letters, newest first, `limit` per page.

        Raises InvalidCursor for a cursor this store did not hand out, StoreError.
        """

    @abc.abstractmethod
    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by id, None if there is none.

        Raises StoreError.
        """

    @abc.abstractmethod
    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None:
        """Stamp dead letters as replayed at `when` (epoch seconds); unknown ids are ignored.

        Raises StoreError.
        """

    @abc.abstractmethod
    def count_dead_letters(self) -> int:
        """How many dead letters are kept.

        Raises StoreError.
        """

    def purge_dead_letters(self, now: float, before: float | None = None) -> dict[str, int]:
        """Delete the dead letters expired at `now` and, with `before`, those recorded before it
        too; return how many were ever purged, by reason. Raises StoreError (Firestore's TTL
        does it)."""
        raise StoreError(
            "this store's dead letters expire by themselves: a TTL policy on their `expire_at` "
            "deletes them (Terraform and scripts/deploy.sh create it; Firestore's emulator has "
            "none); `dlq purge` is for the local store"
        )

    @abc.abstractmethod
    def active_users(self, since: float) -> int:
        """Profiles whose last activity is at or after `since` (epoch seconds).

        Raises StoreError.
        """

    @abc.abstractmethod
    def freshness(self) -> Freshness:
        """How current the read model is.

        Raises StoreError.
        """

    @abc.abstractmethod
    def count_events(self) -> int:
        """How many raw events are stored.

        Raises StoreError.
        """

    @abc.abstractmethod
    def iter_raw_events(self) -> Iterator[Event]:
        """Every retained raw event (for `verify`), in no particular order.

        Raises StoreError.
        """

    @abc.abstractmethod
    def snapshot(self) -> AggregateSnapshot:
        """Every aggregate, in comparable form (for `verify`), with the per-person state the
        behavioral read model derives from (markers, kept sessions and their values, funnel
        progress).

        Raises StoreError.
        """

    @abc.abstractmethod
    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace every aggregate by the fold of `events` (for `verify --repair`); breakdowns
        are recounted under their stored admitted sets (docs/breakdowns.md).

        Raises StoreError.
        """

    def drop_copies(self, digests: Sequence[str], lists: Sequence[str]) -> None:
        """Drop the copies of raw events kept to spare queries (`kept_copies`): the digests of
        recent events of the persons `digests`, the event lists of the anonymous actors
        `lists`; those the store does not hold are left alone. Their commits then read the raw
        events instead. What `verify --repair` does where only those copies drifted; a store
        that keeps none has nothing to drop.

        Raises StoreError.
        """
        return None  # a store that keeps copies says how it drops them

    # -- the behavioral read model (stores with `behavioral = True`) ------------------------

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]:
        """Sessions by the hour or day they started in, oldest first.

        Raises NotSupported where the store keeps no sessions, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not keep sessions yet")

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]:
        """Per entry day (start <= day <= end), oldest first.

        Raises NotSupported where the store keeps no funnels, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not keep funnels yet")

    def retention(
        self,
        start_day: str,
        end_day: str,
        max_offset: int = DEFAULT_MAX_OFFSET,
        unit: Unit = "day",
        start_event: str | None = None,
    ) -> list[RetentionCohort]:
        """Cohorts of people first seen on each day `start_day`..`end_day` (day labels), or
        who first did `start_event` (an event type) on it, with how many came back in each of
        the `max_offset` days or weeks after (rule: `retention`), oldest first; days on which
        nobody was first seen are not listed. Each cohort carries its `members` (person ids, as
        `scan_events` names them), which filters narrow (`filtered_queries`).

        Raises RetentionError (a ValueError: a malformed range or start event, a day before
        the raw-event retention, more than `retention.MAX_PERSONS` people or
        `retention.MAX_START_EVENTS` start events), NotSupported, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not keep retention yet")

    def breakdown(
        self,
        dimension: str,
        granularity: Granularity,
        start: str | None = None,
        end: str | None = None,
    ) -> list[BreakdownPoint]:
        """One dimension's values per hour or day (`granularity`: "hour" or "day") with
        start <= period <= end (period labels), oldest first; only periods with events. Values
        counted under `(other)` are summed in `other_events`; unique users per value for days
        only (docs/breakdowns.md). A dimension that is not broken down has no points.

        Raises NotSupported where the store keeps no breakdowns, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not keep breakdowns yet")

    def links(self, who: str) -> list[Link]:
        """The identity links (every proposal, with its status) of a user or anonymous actor.

        Raises NotSupported where the store keeps no links, StoreError.
        """
        raise NotSupported(f"{type(self).__name__} does not keep identity links yet")

    def group(self, group_id: str) -> Group | None:
        """A group (`named_calls.Group`), None if unknown. Raises NotSupported, StoreError."""
        raise NotSupported(f"{type(self).__name__} does not keep groups yet")

    def stored_links(self) -> list[Link]:
        """Every identity link (for `verify`); none where the store keeps no links.

        Raises StoreError.
        """
        return []

    def forget(self, who: str) -> ForgetReport:
        """Delete a person's raw events, profile, sessions, funnel entries, links and dead
        letters, remove their contribution from every aggregate, and leave a tombstone. `who`
        is a user id (with them go the anonymous ids actively linked to them) or an anonymous
        visitor never linked to a user, as `anonymous:ID`.

        Raises LinkedAnonymousId for an anonymous id linked to a user, NotSupported where the
        store cannot forget, StoreError (running it again finishes a forget that was cut
        short).
        """
        raise NotSupported(f"{type(self).__name__} cannot forget users yet")

    def purge_expired(self, now: float) -> int:
        """Delete raw events past their retention where the backend does not (Firestore's TTL
        does); return how many went.

        Raises StoreError.
        """
        return 0

    def recorded_config(self) -> StoredConfig | None:
        """The configuration recorded with the data (`stored_config`). Raises StoreError."""
        return None

    def record_config(self, funnels_added: Sequence[str] = (), *, replace: bool = False) -> None:
        """Record the store's configuration, counting `funnels_added` from the raw events;
        `replace`: over another one. Raises NotSupported (no backfill here), StoreError."""
        raise NotSupported(f"{type(self).__name__} records no configuration")

    def consistent_reads(self) -> AbstractContextManager[None]:
        """Within it, the reads `verify` makes on this thread (`snapshot`, `iter_raw_events`,
        `stored_links`) see one state of the store, however many commits other processes make
        meanwhile, where the store can offer that (SQLite: one read transaction). Elsewhere a
        no-op: Firestore's reads are each their own query, so `verify` beside live traffic
        can report drift there that a second run does not repeat.

        Raises StoreError."""
        return nullcontext()

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise StoreError if the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# -- role-sized views of the port ---------------------------------------------------------------


class EventSink(Protocol):
    """What the worker needs: commit batches exactly once, record dead letters."""

    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[NewDeadLetter] = (),
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> CommitResult: ...

    def add_dead_letters(self, dead_letters: Sequence[NewDeadLetter]) -> int: ...

    def purge_expired(self, now: float) -> int: ...

    def ping(self) -> None: ...


class ReadModel(Protocol):
    """What the query API, the dashboard and the live view read."""

    behavioral: bool

    def profile(self, who: str) -> Profile | None: ...

    def timeline(
        self, who: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]: ...

    def events_by_type(
        self, event_type: str, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredEvent]: ...

    def series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SeriesPoint]: ...

    def session_series(
        self, granularity: Granularity, start: str | None = None, end: str | None = None
    ) -> list[SessionPoint]: ...

    def funnel(
        self, name: str, start: str | None = None, end: str | None = None
    ) -> list[FunnelDay]: ...

    def retention(
        self,
        start_day: str,
        end_day: str,
        max_offset: int = ...,
        unit: Unit = ...,
        start_event: str | None = None,
    ) -> list[RetentionCohort]: ...

    def breakdown(
        self,
        dimension: str,
        granularity: Granularity,
        start: str | None = None,
        end: str | None = None,
    ) -> list[BreakdownPoint]: ...

    def scan_events(self, start_s: float, end_s: float, limit: int) -> list[Event]: ...

    def links(self, who: str) -> list[Link]: ...

    def group(self, group_id: str) -> Group | None: ...

    def active_users(self, since: float) -> int: ...

    def freshness(self) -> Freshness: ...


class DeadLetterBox(Protocol):
    """What `dlq list / show / replay` needs."""

    def dead_letters(self, limit: int = 100, cursor: str | None = None) -> Page[DeadLetter]: ...

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    def mark_replayed(self, dead_letter_ids: Sequence[str], when: float) -> None: ...

    def count_dead_letters(self) -> int: ...


class Auditable(Protocol):
    """What `verify` (and `verify --repair`) needs: the raw events and every aggregate."""

    @property
    def behavioral(self) -> bool: ...

    @property
    def rules(self) -> BehaviorRules | None: ...

    def iter_raw_events(self) -> Iterator[Event]: ...

    def stored_links(self) -> list[Link]: ...

    def snapshot(self) -> AggregateSnapshot: ...

    def rebuild(self, events: Iterator[Event]) -> None: ...

    def drop_copies(self, digests: Sequence[str], lists: Sequence[str]) -> None: ...

    def consistent_reads(self) -> AbstractContextManager[None]: ...


class Eraser(Protocol):
    """What `forget` needs."""

    def forget(self, who: str) -> ForgetReport: ...
