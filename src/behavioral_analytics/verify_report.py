"""What `verify` reports: each drift item (`Drift`), the whole report (`VerifyReport`, which
`verify --json` prints: docs/cli.md), and which drift kinds are people's kept state rather
than figures (`STATE_KINDS`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from behavioral_analytics.kept_copies import COPY_KINDS

__all__ = ["LISTED", "STATE_KINDS", "Drift", "VerifyReport"]


# Drift in what a person's next commit derives from rather than in a figure (`verification`,
# `kept_copies`).
# `to_dict` lists at most this many drift items and valid dead letters (beside their counts).
LISTED = 1000
STATE_KINDS = frozenset({"person_sessions", "funnel_progress", "session_values"}) | COPY_KINDS


@dataclass(frozen=True, slots=True)
class Drift:
    """One aggregate or kept item whose stored value is not the recount's (`verify`); `to_dict`
    is its form in `verify --json` (docs/cli.md)."""

    # bucket | unique_users | unique_markers | profile | bot_events | sessions | funnel |
    # group_member (key `group id:member`; stored and expected: the joined-at time or None) |
    # breakdown | breakdown_users | breakdown_admitted | breakdown_sessions | breakdown_markers |
    # link (key `anonymous id:identify event key`; stored and expected: its status) |
    # person_sessions (key the person; stored and expected: the [key, start, end, events] of
    # their sessions one side lacks) | funnel_progress (key `funnel:person:day`; the step) |
    # session_values (key `person:session key@start`; dimension → raw value, or None) |
    # recent_events, anonymous_events (key the person, the anonymous actor; `kept_copies`)
    what: str
    key: str
    stored: Any
    expected: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "key": self.key,
            "stored": self.stored,
            "expected": self.expected,
        }


@dataclass(slots=True)
class VerifyReport:
    """What `verify` checked and found: counts of what it compared and left unchecked, the
    drift, and what a repair did; `to_dict` is `verify --json`'s document."""

    raw_events: int = 0
    buckets_checked: int = 0
    profiles_checked: int = 0
    not_checked: int = 0  # older than the retention: what a rebuild would recount short
    # Session and funnel figures after the retention's start but within the rules' reach.
    near_retention_start: int = 0
    drift: list[Drift] = field(default_factory=list)
    repaired: bool = False
    # Ids of dead letters, not replayed, whose bytes parse as valid events: a shortfall.
    valid_dead_letters: list[str] = field(default_factory=list)
    # Dead letters, not replayed, that are events but for their time (`TIME_WINDOW_REASONS`),
    # by reason: counted nowhere, and a replay cannot count them.
    unreplayable_dead_letters: dict[str, int] = field(default_factory=dict)
    # `granularity:period` whose session figures were final and that the repair changed.
    final_periods: list[str] = field(default_factory=list)
    # Aggregates older than the retention that a repair with `drop_older` recounted from the
    # raw events kept.
    older_recounted: int = 0

    @property
    def ok(self) -> bool:
        return not self.drift

    @property
    def links_drifted(self) -> int:
        """How many drift items are identity links' statuses (`link`)."""
        return sum(drift.what == "link" for drift in self.drift)

    @property
    def state_drifted(self) -> int:
        """How many drift items are people's kept state (`STATE_KINDS`), not figures."""
        return sum(drift.what in STATE_KINDS for drift in self.drift)

    @property
    def copies_only(self) -> bool:
        """Whether every drift item is a copy of raw events (`COPY_KINDS`): dropping those
        copies (`Store.drop_copies`) repairs it, no rebuild needed."""
        return bool(self.drift) and all(drift.what in COPY_KINDS for drift in self.drift)

    def copy_owners(self) -> tuple[list[str], list[str]]:
        """The persons whose digests and the anonymous actors whose lists drifted."""
        digests = sorted({d.key for d in self.drift if d.what == "recent_events"})
        return digests, sorted({d.key for d in self.drift if d.what == "anonymous_events"})

    @property
    def figures_drifted(self) -> int:
        """How many drift items are figures: neither links nor people's kept state."""
        return len(self.drift) - self.links_drifted - self.state_drifted

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "raw_events": self.raw_events,
            "buckets_checked": self.buckets_checked,
            "profiles_checked": self.profiles_checked,
            "not_checked_older_than_retention": self.not_checked,
            "not_checked_near_retention_start": self.near_retention_start,
            "drift": [d.to_dict() for d in self.drift[:LISTED]],
            "drift_count": len(self.drift),
            "repaired": self.repaired,
            "valid_dead_letters": self.valid_dead_letters[:LISTED],
            "valid_dead_letter_count": len(self.valid_dead_letters),
            "unreplayable_dead_letters": dict(self.unreplayable_dead_letters),
            "final_periods_changed": self.final_periods,
            "older_recounted": self.older_recounted,
        }
