"""Profiles without the behavioral read model (BA_FIRESTORE_BEHAVIOR=false), on the Firestore
store: the store reads the batch's users' profiles first, and a profile that gains a
unique-user marker is written with a precondition (its update time as read, or create() when
absent); a concurrent change fails the whole batch, which is then recomputed.

Markers are never removed before they expire on this path (no link moves events and no
`forget` runs), so the store remembers the markers its commits made or found
(`KNOWN_MARKERS_MAX` of them): a user whose markers are all known needs no read, and that
profile's write no precondition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import islice
from typing import Any

from behavioral_analytics.aggregation import Deltas, ProfileDelta
from behavioral_analytics.stores.firestore.documents import (
    Seen,
    as_datetime,
    markers_by_who,
    new_profile_write,
    profile_transforms,
    read_seen,
)
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.keys import doc_id
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    KNOWN_MARKERS_MAX,
    MANY_HOURS,
    MARKER_FIELD,
)
from behavioral_analytics.stores.firestore.wire import field_path, write

__all__ = ["ProfileWriter"]


class ProfileWriter:
    """Profile reads and writes of commits without the behavioral read model."""

    def __init__(self, gateway: Gateway, options: StoreOptions) -> None:
        self.gateway = gateway
        self.options = options
        # Unique-user markers known to exist, oldest first: (granularity, period, who).
        self._known: dict[tuple[str, str, str], None] = {}

    def remember(self, markers: Iterable[tuple[str, str, str]]) -> None:
        """Markers a commit of this store made or found: they exist until they expire."""
        self._known.update(dict.fromkeys(markers))
        if len(self._known) > KNOWN_MARKERS_MAX:
            for marker in list(islice(self._known, len(self._known) - KNOWN_MARKERS_MAX // 2)):
                del self._known[marker]

    def forget_known(self) -> None:
        """Forget every remembered marker (the aggregates are being replaced)."""
        self._known.clear()

    def read(self, deltas: Deltas) -> dict[str, Seen]:
        """The batch's users' profiles that exist, with the markers that matter. A user whose
        markers this store already knows needs no read.

        Raises `TransientStoreError` on a transient error."""
        seen = {
            who: Seen(None, frozenset(markers), ())
            for who, markers in markers_by_who(deltas.markers).items()
            if all((*marker, who) in self._known for marker in markers)
        }
        unknown = [who for who in deltas.profiles if who not in seen]
        if not unknown:
            return seen
        hours = sorted({period for unit, period, _ in deltas.markers if unit == "hour"})
        mask = [MARKER_FIELD["day"]]
        if len(hours) > MANY_HOURS:
            mask.append(MARKER_FIELD["hour"])
        else:
            mask.extend(field_path(MARKER_FIELD["hour"], hour) for hour in hours)
        names = {self.gateway.name(AGGREGATES, doc_id("user_", who)): who for who in unknown}
        for name, doc in self.gateway.get(list(names), mask).items():
            seen[names[name]] = read_seen(doc)
        return seen

    def add(
        self, writes: list[Any], deltas: Deltas, seen: dict[str, Seen], now: float
    ) -> Counter[tuple[str, str]]:
        """One write per profile, appended to `writes`; return the new markers counted per
        bucket."""
        new_markers: dict[str, list[tuple[str, str]]] = {}
        for granularity, period, who in deltas.markers:
            state = seen.get(who)
            if state is None or (granularity, period) not in state.markers:
                new_markers.setdefault(who, []).append((granularity, period))
        updated = as_datetime(now)
        for who, delta in deltas.profiles.items():
            name = self.gateway.name(AGGREGATES, doc_id("user_", who))
            new = new_markers.get(who, [])
            state = seen.get(who)
            if state is None:
                writes.append(new_profile_write(name, who, delta, new, updated))
            else:
                writes.append(self._profile_update(name, who, delta, new, state, now))
        return Counter(marker for markers in new_markers.values() for marker in markers)

    def _profile_update(
        self,
        name: str,
        who: str,
        delta: ProfileDelta,
        new: list[tuple[str, str]],
        state: Seen,
        now: float,
    ) -> Any:
        """A merge of the profile's deltas; with new markers, only onto the version read."""
        fields: dict[str, Any] = {"kind": "user", "user_id": who, "last_updated": as_datetime(now)}
        mask = ["kind", "user_id", "last_updated"]
        for granularity, period in new:
            fields.setdefault(MARKER_FIELD[granularity], {})[period] = True
            mask.append(field_path(MARKER_FIELD[granularity], period))
        if any(granularity == "day" for granularity, _ in new):
            mask.extend(self.options.expired_marker_paths(state.days, now))
        return write(
            name,
            fields,
            mask=mask,
            transforms=profile_transforms(delta),
            update_time=state.update_time if new else None,
        )
