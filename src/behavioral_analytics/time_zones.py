"""Reporting time zones: which names a setting may hold, and when two name one zone.

A zone is named as the tz database spells it (`zoneinfo.available_timezones()`; the `tzdata`
package provides the database where the machine has none). The database's links are other
names of a zone (`Etc/UTC` and `UTC`, `Asia/Calcutta` and `Asia/Kolkata`): their compiled
files are the same bytes, so they give every instant the same local time and the same period
labels, and a store recorded with one counts as recorded with the other (`as_recorded_zone`).
"""

from __future__ import annotations

import importlib.resources
import zoneinfo
from dataclasses import replace
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from behavioral_analytics.stored_config import StoredConfig

__all__ = ["as_recorded_zone", "same_zone", "timezone_problem"]

# Names a zone database holds that mean something else on every machine (its own zone).
_HOST_ZONES = frozenset({"localtime"})


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _HOST_ZONES


def timezone_problem(name: str) -> str | None:
    """Why `name` is no reporting time zone, or None: it must be an IANA zone name as the tz
    database spells it (`zoneinfo.available_timezones()`, which the `tzdata` package provides
    where the machine has no zone files). `localtime` (this machine's own zone), `posixrules`
    and the `right/` leap-second variants are refused, as is another spelling of a name."""
    if name in _zone_names():
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return None
    if name in _HOST_ZONES:
        return (
            f"{name!r} is this machine's own zone, which another machine reads differently: "
            "name an IANA time zone (e.g. UTC, Europe/Paris)"
        )
    spelt = next((known for known in _zone_names() if known.lower() == name.lower()), None)
    hint = f" (did you mean {spelt}?)" if spelt else " (e.g. UTC, Europe/Paris)"
    return f"unknown IANA time zone {name!r}{hint}"


@cache
def _compiled(name: str) -> bytes | None:
    """The zone's compiled (TZif) file, found where `zoneinfo` looks: `zoneinfo.TZPATH`,
    then the `tzdata` package; None when neither has it."""
    for root in zoneinfo.TZPATH:
        path = Path(root, *name.split("/"))
        if path.is_file():
            return path.read_bytes()
    try:
        return (
            importlib.resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).read_bytes()
        )
    except (ModuleNotFoundError, OSError):
        return None


def same_zone(a: str, b: str) -> bool:
    """Whether the zone names `a` and `b` are one zone: equal, or both valid names whose
    compiled files are the same bytes (one a link of the other in the tz database)."""
    if a == b:
        return True
    if timezone_problem(a) or timezone_problem(b):
        return False
    compiled = _compiled(a)
    return compiled is not None and compiled == _compiled(b)


def as_recorded_zone(wanted: StoredConfig, recorded: StoredConfig | None) -> StoredConfig:
    """`wanted`, with the zone name `recorded` holds where the two name one zone (`same_zone`):
    nothing to refuse or apply, the store keeps counting by its recorded name."""
    if recorded is None or wanted.timezone == recorded.timezone:
        return wanted
    if not same_zone(wanted.timezone, recorded.timezone):
        return wanted
    return replace(wanted, timezone=recorded.timezone)
