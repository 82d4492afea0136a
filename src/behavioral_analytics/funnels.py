"""Funnels: ordered steps a person goes through within a conversion window. Pure: no I/O.

A person enters a funnel on the day of an event matching its first step. From that entry the
furthest step reached is found greedily: the earliest later event matching the next step,
as long as it is within the window of the entry. Per day, a person counts once at the
furthest step any of their entries that day reached, so "users reaching step k on day D" is
exact and, being a function of the set of events, independent of arrival order.

A step's filter compares JSON values strictly by type (`json_equal`): `true` is not `1`, `"1"`
is not `1`, `null` is not a missing property; numbers compare by value, since JSON has one
number type (`1` equals `1.0`); arrays element by element, objects key by key, both strictly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from behavioral_analytics.aggregation import Periods

__all__ = [
    "DEFAULT_FUNNELS",
    "PURCHASE_FUNNEL",
    "Funnel",
    "FunnelPoint",
    "Step",
    "json_equal",
    "parse_funnels",
    "progress",
]

_MISSING = object()


def json_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal, strictly by JSON type: booleans are not numbers,
    strings are not numbers, numbers compare by value (`1` == `1.0`, JSON has one number type),
    arrays and objects compare element by element with the same rule."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) or isinstance(b, int | float):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return (
            isinstance(a, list | tuple)
            and isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (
            isinstance(a, Mapping)
            and isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(json_equal(a[k], b[k]) for k in a)
        )
    return type(a) is type(b) and a == b


@dataclass(frozen=True, slots=True)
class Step:
    event_type: str
    # Property filter: dotted path into `properties` → the value it must equal.
    where: tuple[tuple[str, Any], ...] = ()

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        if event_type != self.event_type:
            return False
        for path, wanted in self.where:
            value: Any = properties
            for part in path.split("."):
                value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
            if value is _MISSING or not json_equal(value, wanted):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"event_type": self.event_type, "where": dict(self.where)}


@dataclass(frozen=True, slots=True)
class Funnel:
    name: str
    steps: tuple[Step, ...]
    window_s: float
    types: frozenset[str] = field(init=False)
    # The event types that can move an entry on: those of every step after the first.
    later_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", frozenset(s.event_type for s in self.steps))
        object.__setattr__(self, "later_types", frozenset(s.event_type for s in self.steps[1:]))

    def matched_steps(self, event_type: str, properties: Mapping[str, Any]) -> frozenset[int]:
        if event_type not in self.types:
            return frozenset()
        return frozenset(
            i for i, step in enumerate(self.steps) if step.matches(event_type, properties)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": [s.to_dict() for s in self.steps],
            "window_s": self.window_s,
        }


class FunnelPoint(NamedTuple):
    """One event of a person, as a funnel sees it."""

    timestamp: float
    key: str
    steps: frozenset[int]


def progress(
    points: Iterable[FunnelPoint | tuple[float, str, frozenset[int]]],
    funnel: Funnel,
    periods: Periods,
    entries_between: tuple[float, float] | None = None,
) -> dict[str, int]:
    """Day (reporting time zone) → the furthest step (1-based) reached from an entry that day,
    considering only entries within `entries_between` when given."""
    ordered = sorted(p for p in points if p[2])  # by time, then key
    count = len(ordered)
    last_step = len(funnel.steps) - 1
    # following[k][i]: the first position >= i whose event matches step k (count if none), so
    # each entry walks its steps in O(1) each instead of scanning the events after it.
    following = []
    for step in range(len(funnel.steps)):
        row = [count] * (count + 1)
        for i in range(count - 1, -1, -1):
            row[i] = i if step in ordered[i][2] else row[i + 1]
        following.append(row)
    best: dict[str, int] = {}
    for i, entry in enumerate(ordered):
        timestamp, _, steps = entry
        if 0 not in steps or (
            entries_between is not None
            and not entries_between[0] <= timestamp <= entries_between[1]
        ):
            continue
        deadline = timestamp + funnel.window_s
        reached, position = 0, i
        while reached < last_step:
            j = following[reached + 1][position + 1]
            if j == count or ordered[j][0] > deadline:
                break
            reached, position = reached + 1, j
        day = periods.of(timestamp)[2]
        if reached + 1 > best.get(day, 0):
            best[day] = reached + 1
    return best


_FUNNEL_KEYS = ("name", "steps", "window_s")
_STEP_KEYS = ("event_type", "where")
_DEFAULT_WINDOW_S = 86400.0


def _known_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], label: str) -> None:
    """Raises ValueError naming the first key of `raw` not in `allowed`: a misspelt key
    would otherwise be ignored, and its default silently used."""
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{label}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _step(raw: Any, label: str) -> Step:
    if isinstance(raw, str):
        return Step(raw)
    if isinstance(raw, Mapping):
        _known_keys(raw, _STEP_KEYS, label)
    if isinstance(raw, Mapping) and isinstance(raw.get("event_type"), str):
        where = raw.get("where") or {}
        if not isinstance(where, Mapping):
            raise ValueError(f"{label}: 'where' must be an object")
        return Step(raw["event_type"], tuple(sorted(where.items())))
    raise ValueError(
        f"{label}: a step is an event type or {{'event_type': …, 'where': {{…}}}}: {raw!r}"
    )


def parse_funnels(text: str | Sequence[Mapping[str, Any]]) -> tuple[Funnel, ...]:
    """Funnels from JSON: `[{"name": …, "steps": [type | {event_type, where}], "window_s": …}]`,
    `window_s` in seconds (default 86400). Raises ValueError (json.JSONDecodeError for text
    that is not JSON) naming the funnel for a bad value or an unknown key."""
    raw = json.loads(text) if isinstance(text, str) else text
    if not isinstance(raw, list):
        raise ValueError("funnels must be a JSON list")
    funnels = []
    names: set[str] = set()
    for position, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise ValueError(f"a funnel is an object: {item!r}")
        name = item.get("name")
        label = f"funnel {name!r}" if isinstance(name, str) and name else f"funnel {position}"
        _known_keys(item, _FUNNEL_KEYS, label)
        steps = item.get("steps")
        window = item.get("window_s", _DEFAULT_WINDOW_S)
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ValueError(f"funnel name must be a non-empty string: {name!r}")
        if name in names:
            raise ValueError(f"funnel {name!r} is defined twice")
        if not isinstance(steps, list) or len(steps) < 2:
            raise ValueError(f"funnel {name!r} needs at least two steps")
        if not isinstance(window, int | float) or window <= 0:
            raise ValueError(f"funnel {name!r}: window_s must be a positive number")
        names.add(name)
        parsed = tuple(_step(s, f"{label}: step {i}") for i, s in enumerate(steps, 1))
        funnels.append(Funnel(name, parsed, float(window)))
    return tuple(funnels)


# None unless configured: each funnel costs a read of its people's recent events per flush.
DEFAULT_FUNNELS = "[]"
# The generator's purchase path (loadgen.FUNNEL) within an hour: what `up` shows by default.
PURCHASE_FUNNEL = json.dumps(
    [
        {
            "name": "purchase",
            "steps": ["page_view", "search", "add_to_cart", "purchase"],
            "window_s": 3600,
        }
    ]
)
