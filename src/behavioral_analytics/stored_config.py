"""The configuration that shapes stored numbers, as recorded with the data. Pure: no I/O.

Funnels, session rules (gap and cap), the identity window and relinking, and the reporting time
zone decide what the aggregates hold. A store records them (`StoredConfig`) with the first
commit that uses them, and every reader — verify, queries, the API, repair, the worker, load
tests — uses the recorded values, so a shell that forgot a setting cannot see, or rebuild, other
numbers than the workers wrote.

`reconcile` compares the recorded values with the environment's:

- a setting the environment leaves unset takes the recorded value;
- a funnel or breakdown dimension the environment adds is additive: recorded, backfilled from
  the retained raw events, announced, by a process that writes; one that only reads counts by
  the record alone (`without_additions`), since a running worker whose commit finds another
  record than its own stops (`changed_line`);
- a funnel or dimension the environment omits is still maintained (removing one is a change);
- any other difference (a changed funnel, zone, session or identity rule, the number of values
  a breakdown admits) is refused until `config apply` records it and recomputes what it shapes
  (`plan_apply`).

A record written before breakdowns existed has none (`breakdowns_unrecorded`): the
environment's dimensions are then added to it, as if it had set them. A store that holds
events but no record (written before the record existed, and before breakdowns) is recorded
with the environment's values, and its breakdowns counted from its raw events
(`before_record`).

Fields are named as `Settings` names them, so the settings model can say which were set.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import DEFAULT_MAX_VALUES, BreakdownRules
from behavioral_analytics.dimensions import DIMENSIONS
from behavioral_analytics.funnels import Funnel, parse_funnels
from behavioral_analytics.sessions import SessionRules

__all__ = [
    "SHAPING_FIELDS",
    "Difference",
    "Reconciled",
    "StoredConfig",
    "before_record",
    "changed_line",
    "plan_apply",
    "reconcile",
    "recounted_dimensions",
    "without_additions",
]

# Scalar fields (as `Settings` names them) and what a change of each recomputes.
_RECOMPUTES = {
    "timezone": "every minute, hour and day bucket, unique users, sessions and funnels",
    "session_gap_s": "every session and session figure",
    "session_max_s": "every session and session figure",
    "identity_window_s": "who each anonymous event counts for, and every figure by person",
    "allow_relink": "who each anonymous event counts for, and every figure by person",
    "breakdown_values": "every breakdown, its admitted values chosen again",
}
SHAPING_FIELDS = (*_RECOMPUTES, "funnels", "breakdown_dimensions")


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """What shapes the stored numbers. Times in seconds; `timezone` an IANA name; `funnels` as
    `funnels.parse_funnels` reads them (their `to_dict` form); `breakdown_dimensions` and
    `breakdown_values` as `breakdowns.BreakdownRules` takes them (docs/breakdowns.md)."""

    timezone: str = "UTC"
    session_gap_s: float = 1800.0
    session_max_s: float = 86400.0
    identity_window_s: float = 86400.0
    allow_relink: bool = False
    funnels: tuple[Funnel, ...] = field(default=())
    breakdown_dimensions: tuple[str, ...] = DIMENSIONS
    breakdown_values: int = DEFAULT_MAX_VALUES
    # Read from a record written before breakdowns existed (which kept none).
    breakdowns_unrecorded: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "session_gap_s": self.session_gap_s,
            "session_max_s": self.session_max_s,
            "identity_window_s": self.identity_window_s,
            "allow_relink": self.allow_relink,
            "funnels": [f.to_dict() for f in self.funnels],
            "breakdown_dimensions": list(self.breakdown_dimensions),
            "breakdown_values": self.breakdown_values,
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): two equal configurations give the same text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StoredConfig:
        """Raises ValueError for a document that is not a recorded configuration."""
        try:
            unrecorded = "breakdown_dimensions" not in raw
            return cls(
                timezone=str(raw["timezone"]),
                session_gap_s=float(raw["session_gap_s"]),
                session_max_s=float(raw["session_max_s"]),
                identity_window_s=float(raw["identity_window_s"]),
                allow_relink=bool(raw["allow_relink"]),
                funnels=parse_funnels(list(raw["funnels"])),
                breakdown_dimensions=()
                if unrecorded
                else tuple(str(name) for name in raw["breakdown_dimensions"]),
                breakdown_values=int(raw.get("breakdown_values", DEFAULT_MAX_VALUES)),
                breakdowns_unrecorded=unrecorded,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a recorded configuration: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> StoredConfig:
        """Raises ValueError for text that is not a recorded configuration."""
        return cls.from_dict(json.loads(text))

    def funnel(self, name: str) -> Funnel | None:
        return next((f for f in self.funnels if f.name == name), None)

    @classmethod
    def of(cls, rules: BehaviorRules, timezone: str) -> StoredConfig:
        """The configuration a store built with `rules` in `timezone` counts by."""
        return cls(
            timezone=timezone,
            session_gap_s=rules.sessions.gap_s,
            session_max_s=rules.sessions.max_s,
            identity_window_s=rules.identity_window_s,
            allow_relink=rules.allow_relink,
            funnels=rules.funnels,
            breakdown_dimensions=rules.breakdowns.dimensions,
            breakdown_values=rules.breakdowns.max_values,
        )

    def rules(self, base: BehaviorRules) -> BehaviorRules:
        """`base` (the environment's rules: bots, privacy, lateness) counting by these values."""
        return replace(
            base,
            sessions=SessionRules(self.session_gap_s, self.session_max_s),
            funnels=self.funnels,
            identity_window_s=self.identity_window_s,
            allow_relink=self.allow_relink,
            breakdowns=BreakdownRules(self.breakdown_dimensions, self.breakdown_values),
        )


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the environment's configuration differs from the recorded one. `field` is a
    name of `SHAPING_FIELDS`; `funnel` names the funnel for `funnels`, the dimension for
    `breakdown_dimensions`; values as shown."""

    field: str
    recorded: str
    wanted: str
    recomputes: str
    funnel: str = ""

    def describe(self) -> str:
        if self.field == "breakdown_dimensions":
            what = f"breakdown dimension {self.funnel!r}"
        else:
            what = f"funnel {self.funnel!r}" if self.funnel else self.field
        change = f"{what}: {self.recorded} -> {self.wanted}"
        return f"{change} (recomputes {self.recomputes})" if self.recomputes else change


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The configuration to run with (`effective`), the funnels and breakdown dimensions it
    adds to the recorded one (to record and backfill), the differences refused until `config
    apply`, and the recorded breakdown dimensions and funnels an environment that sets them
    omits (still kept: `config apply` deletes them)."""

    effective: StoredConfig
    added_funnels: tuple[str, ...] = ()
    refused: tuple[Difference, ...] = ()
    recorded: StoredConfig | None = None
    added_dimensions: tuple[str, ...] = ()
    omitted_dimensions: tuple[str, ...] = ()
    omitted_funnels: tuple[str, ...] = ()


def _shown(value: Any) -> str:
    if isinstance(value, Funnel):
        steps = " → ".join(
            step.event_type + (json.dumps(dict(step.where), sort_keys=True) if step.where else "")
            for step in value.steps
        )
        return f"{steps} within {value.window_s:g} s"
    if isinstance(value, bool):  # as the environment spells it
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _funnel_recomputes(name: str) -> str:
    return f"funnel {name!r} from the retained raw events"


def _dimension_recomputes(name: str) -> str:
    return f"the breakdowns by {name!r} from the retained raw events"


def changed_line(held: StoredConfig, recorded: StoredConfig) -> str:
    """The one line a commit fails with (`store.ConfigChanged`) when the configuration
    `recorded` with the data is not the one the process `held`, naming what differs."""
    what = ", ".join(_changes(held, recorded)) or "the same settings, recorded differently"
    return (
        f"the configuration recorded with the data changed since this process opened the store "
        f"({what}), by `behavioral-analytics config apply` or another process: restart this "
        f"process to count by the recorded one"
    )


def _changes(held: StoredConfig, recorded: StoredConfig) -> list[str]:
    """How `recorded` differs from the configuration a process `held`, a short phrase each:
    a scalar field's name, `funnel 'p' added` (or `removed`, `changed`), `breakdown dimension
    'browser' added` (or `removed`). Empty when they are equal."""
    changes = [name for name in _RECOMPUTES if getattr(held, name) != getattr(recorded, name)]
    for name in dict.fromkeys([f.name for f in (*held.funnels, *recorded.funnels)]):
        mine, theirs = held.funnel(name), recorded.funnel(name)
        if mine != theirs:
            how = "added" if mine is None else "removed" if theirs is None else "changed"
            changes.append(f"funnel {name!r} {how}")
    for dimension in dict.fromkeys([*held.breakdown_dimensions, *recorded.breakdown_dimensions]):
        if (dimension in held.breakdown_dimensions) != (dimension in recorded.breakdown_dimensions):
            how = "removed" if dimension in held.breakdown_dimensions else "added"
            changes.append(f"breakdown dimension {dimension!r} {how}")
    return changes


def reconcile(
    recorded: StoredConfig | None, wanted: StoredConfig, explicit: Collection[str]
) -> Reconciled:
    """The configuration a process runs with, given what the store recorded (None: nothing
    yet), the environment's values `wanted`, and which fields the environment set
    (`explicit`, names of `SHAPING_FIELDS`): see the module docstring."""
    if recorded is None:
        return Reconciled(wanted)
    refused: list[Difference] = []
    values: dict[str, Any] = {}
    adopt_dimensions = "breakdown_dimensions" in explicit or recorded.breakdowns_unrecorded
    for name, recomputes in _RECOMPUTES.items():
        have, want = getattr(recorded, name), getattr(wanted, name)
        values[name] = have
        if name == "breakdown_values" and not recorded.breakdown_dimensions:
            # No breakdown is kept yet: nothing the number of values shapes.
            values[name] = want if adopt_dimensions else have
        elif name in explicit and have != want:
            refused.append(Difference(name, _shown(have), _shown(want), recomputes))
    dimensions = list(recorded.breakdown_dimensions)
    added_dimensions: list[str] = []
    omitted: tuple[str, ...] = ()
    if adopt_dimensions:
        added_dimensions = [d for d in wanted.breakdown_dimensions if d not in dimensions]
        dimensions.extend(added_dimensions)
    if "breakdown_dimensions" in explicit:
        omitted = tuple(d for d in dimensions if d not in wanted.breakdown_dimensions)
    values["breakdown_dimensions"] = tuple(dimensions)
    funnels = list(recorded.funnels)
    added: list[str] = []
    if "funnels" in explicit:
        for funnel in wanted.funnels:
            have_f = recorded.funnel(funnel.name)
            if have_f is None:
                funnels.append(funnel)
                added.append(funnel.name)
            elif have_f != funnel:
                refused.append(
                    Difference(
                        "funnels",
                        _shown(have_f),
                        _shown(funnel),
                        _funnel_recomputes(funnel.name),
                        funnel.name,
                    )
                )
    effective = replace(recorded, funnels=tuple(funnels), breakdowns_unrecorded=False, **values)
    omitted_funnels: tuple[str, ...] = ()
    if "funnels" in explicit:
        omitted_funnels = tuple(f.name for f in recorded.funnels if wanted.funnel(f.name) is None)
    return Reconciled(
        effective,
        tuple(added),
        tuple(refused),
        recorded,
        tuple(added_dimensions),
        omitted,
        omitted_funnels,
    )


def without_additions(reconciled: Reconciled) -> StoredConfig:
    """`reconciled.effective` without the funnels and breakdown dimensions it adds to the
    record: what a process that only reads counts by (it records nothing, and what it would
    add has no figures until a writer records and backfills it)."""
    effective = reconciled.effective
    return replace(
        effective,
        funnels=tuple(f for f in effective.funnels if f.name not in reconciled.added_funnels),
        breakdown_dimensions=tuple(
            d for d in effective.breakdown_dimensions if d not in reconciled.added_dimensions
        ),
    )


def before_record(config: StoredConfig) -> StoredConfig:
    """What a store that holds events but no record counted by, as far as anyone can tell:
    `config` (the environment that writes to it now), without breakdowns, which came after
    the record. Recording `config` over it counts every dimension from the raw events."""
    return replace(config, breakdown_dimensions=())


def recounted_dimensions(recorded: StoredConfig, config: StoredConfig) -> list[str]:
    """The breakdown dimensions a store going from `recorded` to `config` counts again from
    its raw events: every one of `config`'s when the number of values admitted changes (on a
    store that kept breakdowns), else those it adds."""
    if recorded.breakdown_values != config.breakdown_values and recorded.breakdown_dimensions:
        return list(config.breakdown_dimensions)
    return [d for d in config.breakdown_dimensions if d not in recorded.breakdown_dimensions]


def plan_apply(
    recorded: StoredConfig | None, wanted: StoredConfig, explicit: Collection[str]
) -> tuple[StoredConfig, tuple[Difference, ...]]:
    """What `config apply` records — the environment's value of every field it sets, the
    recorded value of the others; with `funnels` set, exactly the environment's funnels —
    and every difference from the recorded configuration, with what each recomputes. With
    `breakdown_dimensions` set, exactly the environment's dimensions (one removed is deleted)."""
    if recorded is None:
        return wanted, ()
    values = {
        name: getattr(wanted if name in explicit else recorded, name) for name in SHAPING_FIELDS
    }
    target = StoredConfig(**values)
    changes = [
        Difference(name, _shown(getattr(recorded, name)), _shown(values[name]), recomputes)
        for name, recomputes in _RECOMPUTES.items()
        if getattr(recorded, name) != values[name]
    ]
    for funnel in recorded.funnels:
        new = target.funnel(funnel.name)
        if new != funnel:
            changes.append(
                Difference(
                    "funnels",
                    _shown(funnel),
                    "removed (deletes its figures)" if new is None else _shown(new),
                    "" if new is None else _funnel_recomputes(funnel.name),
                    funnel.name,
                )
            )
    for name in recorded.breakdown_dimensions:
        if name not in target.breakdown_dimensions:
            changes.append(
                Difference(
                    "breakdown_dimensions", "kept", "removed (deletes its breakdowns)", "", name
                )
            )
    for name in target.breakdown_dimensions:
        if name not in recorded.breakdown_dimensions:
            changes.append(
                Difference(
                    "breakdown_dimensions", "(none)", "added", _dimension_recomputes(name), name
                )
            )
    for funnel in target.funnels:
        if recorded.funnel(funnel.name) is None:
            changes.append(
                Difference(
                    "funnels",
                    "(none)",
                    _shown(funnel),
                    _funnel_recomputes(funnel.name),
                    funnel.name,
                )
            )
    return target, tuple(changes)
