"""What a Firestore store was built with (time zone, retention, counter shards, limits,
behavioral rules, clock), shared by every part of it, and the rules that follow from them:
which markers an event holds, when stored markers and derivations expire, which counter shard
a flush writes to.

Tests and benchmarks change some of these on a live store (`behavioral`, the limits): the
parts read them from this one object at each use.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.store import NotSupported
from behavioral_analytics.stores.firestore.schema import MARKER_FIELD
from behavioral_analytics.stores.firestore.wire import field_path

__all__ = ["StoreOptions"]


class StoreOptions:
    """A store's options. `marker_retention_s` is raised to the raw-event retention plus two
    days: verify recounts markers back to the raw-event horizon."""

    def __init__(
        self,
        *,
        timezone: str,
        raw_retention_s: float,
        marker_retention_s: float,
        counter_shards: int,
        clock: Callable[[], float],
        max_request_bytes: int,
        max_transforms_per_doc: int,
        rules: BehaviorRules | None,
        behavior: bool,
        dead_letter_retention_s: float = 30 * 86400.0,
    ) -> None:
        # Bots, sessions, funnels, identity links and forget; False turns the behavioral read
        # model off (BA_FIRESTORE_BEHAVIOR=false) and the store counts as before.
        self.behavioral = behavior
        self.rules: BehaviorRules = rules or BehaviorRules()
        self.periods = Periods(timezone)
        self.raw_retention_s = raw_retention_s
        # Dead letters carry expire_at = recorded + this, for the TTL policy on it.
        self.dead_letter_retention_s = dead_letter_retention_s
        # verify recounts markers back to the raw-event horizon: keep them at least that long.
        self.marker_retention_s = max(marker_retention_s, raw_retention_s + 2 * 86400.0)
        self.counter_shards = counter_shards
        self._shard_turn = random.randrange(max(counter_shards, 1))
        self.max_request_bytes = max_request_bytes
        self.max_transforms_per_doc = max_transforms_per_doc
        self.clock = clock

    def need_behavior(self, what: str) -> None:
        """Raises `NotSupported` for `what` without the behavioral read model."""
        if not self.behavioral:
            raise NotSupported(
                f"{what}: only with the behavioral read model on Firestore "
                "(BA_FIRESTORE_BEHAVIOR=true)"
            )

    def next_shard(self) -> int | None:
        """The counter shard a flush writes to (None: the single documents): in turn, from a
        random start, so that workers spread over the shards."""
        if not self.counter_shards:
            return None
        self._shard_turn += 1
        return self._shard_turn % self.counter_shards

    def marker_periods(self, timestamp: float) -> tuple[tuple[str, str], tuple[str, str]]:
        """The unique-user markers (granularity, period) an event at `timestamp` holds."""
        _, hour, day = self.periods.of(timestamp)
        return ("hour", hour), ("day", day)

    def expired_marker_paths(self, days: Iterable[str], now: float) -> list[str]:
        """Paths of markers too old for any event still to be counted in their period: deleted
        when the profile gains a day, which bounds the profile's size."""
        horizon = self.periods.label("day", now - self.marker_retention_s)
        paths: list[str] = []
        for day in days:
            if day < horizon:
                paths.append(field_path(MARKER_FIELD["day"], day))
                paths.extend(field_path(MARKER_FIELD["hour"], f"{day}-{h:02d}") for h in range(24))
        return paths

    def horizon(self, events: Sequence[Event], now: float) -> float:
        """Stored sessions and funnel days older than this are dropped from the profile: no
        event that can still be accepted reaches them (as for the markers)."""
        oldest = min((e.timestamp for e in events), default=now)
        return min(now, oldest) - self.marker_retention_s
