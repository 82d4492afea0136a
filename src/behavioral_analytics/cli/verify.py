"""`verify`: recount every aggregate from the retained raw events, report drift, and with
`--repair` rebuild the drifted aggregates. Events older than the raw retention cannot be
recounted and are reported as not checked.

Both count by the configuration recorded with the data (funnels, sessions, identity, time
zone: `stored_config`), never by a shell's different environment, so a repair rebuilds what the
workers counted. A repair that would recount aggregates older than the retention from the raw
events kept (losing those that expired) changes nothing unless `--drop-older` accepts it. Like
the queries, it records nothing the environment adds, and in a folder without data it exits 1
naming the folder instead of checking a new, empty store.

Dead letters are judged as the worker judges them (BA_MAX_EVENT_AGE_DAYS, BA_MAX_FUTURE_SKEW):
those a replay would count are listed with the `dlq replay` that counts them; those refused for
their time are counted apart as not replayable under these settings, since a replay keeps
their first receipt time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.text import Text

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import fail, user_errors
from behavioral_analytics.cli.shared import (
    DropOlderOption,
    JsonOption,
    console,
    load_config,
    open_reader,
    plural,
    print_json,
    progress_lines,
)
from behavioral_analytics.kept_copies import COPY_KINDS
from behavioral_analytics.verify_report import LISTED

__all__ = ["verify"]


def verify(
    repair: bool = typer.Option(False, "--repair", help="Rebuild the aggregates from raw events."),
    drop_older: bool = DropOlderOption,
    as_json: bool = JsonOption,
) -> None:
    """Recount every aggregate from the retained raw events; exit 1 on any drift."""
    from behavioral_analytics.verification import verify as run_verify

    if drop_older and not repair:
        fail("--drop-older goes with --repair", 2)
    config, store = open_reader(load_config(), for_writing=repair)
    with user_errors():
        report = run_verify(
            store,
            Periods(config.timezone),
            now=time.time(),
            retention_s=config.raw_retention_days * 86400.0,
            repair=repair,
            drop_older=drop_older,
            limits=config.limits,
            progress=progress_lines("verify"),
        )
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(
            f"checked: raw events {report.raw_events} · buckets {report.buckets_checked} · "
            f"profiles {report.profiles_checked}"
        )
        if report.not_checked:
            console.print(
                f"not checked: {plural(report.not_checked, 'aggregate')} older than the "
                f"raw-event retention ({config.raw_retention_days:g} days)",
                soft_wrap=True,
            )
        if report.near_retention_start and store.behavioral and store.rules is not None:
            reach_h = round(store.rules.reach_s / 3600, 1)
            console.print(
                f"not checked: {report.near_retention_start} session and funnel figures less "
                f"than {reach_h:g} h after the retention's start, whose first events may have "
                "expired",
                soft_wrap=True,
            )
        for drift in report.drift[:20]:
            console.print(
                Text.assemble(
                    ("drift", "red"),
                    f" {drift.what} {drift.key}: "
                    f"{differences(drift.what, drift.stored, drift.expected)}",
                ),
                soft_wrap=True,
            )
        if len(report.drift) > 20:
            listed = "them all" if len(report.drift) <= LISTED else f"the first {LISTED:,}"
            console.print(f"… and {len(report.drift) - 20:,} more (--json lists {listed})")
        if report.valid_dead_letters:
            ids = report.valid_dead_letters
            console.print(
                Text.assemble(
                    (
                        f"{plural(len(ids), 'dead letter')} "
                        f"{'is a valid event' if len(ids) == 1 else 'are valid events'} "
                        "counted nowhere",
                        "yellow",
                    ),
                    (
                        f": behavioral-analytics dlq replay --id {' --id '.join(ids)}"
                        if len(ids) <= 5
                        else ": behavioral-analytics dlq replay --all (`dlq list` shows them)"
                    ),
                )
            )
        if report.unreplayable_dead_letters:
            by_reason = report.unreplayable_dead_letters
            unreplayable = sum(by_reason.values())
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
            console.print(
                Text.assemble(
                    (
                        f"{plural(unreplayable, 'dead letter')} "
                        f"{'is an event' if unreplayable == 1 else 'are events'} outside the "
                        "accepted time window, counted nowhere and not replayable under these "
                        "settings",
                        "yellow",
                    ),
                    f" ({reasons}): a replay keeps their first receipt time, so the workers take "
                    "one only once BA_MAX_EVENT_AGE_DAYS (too old) or BA_MAX_FUTURE_SKEW (too far "
                    "ahead) covers it",
                ),
            )
        if report.ok:
            console.print(Text("no drift", "green"))
        elif report.repaired and report.copies_only:
            owners = sum(map(len, report.copy_owners()))
            console.print(
                Text(
                    f"the kept copies of raw events of {plural(owners, 'person')} dropped, no "
                    "aggregate rebuilt: their next commits read the raw events",
                    "yellow",
                )
            )
        elif report.repaired:
            links, state = report.links_drifted, report.state_drifted
            rebuilt = plural(report.figures_drifted, "drifted aggregate") + " rebuilt"
            if state:
                rebuilt += f", {plural(state, 'drifted item')} of the people's kept state rewritten"
            if links:
                rebuilt += f", {plural(links, 'identity link')} set to the rule's status"
            console.print(Text(rebuilt, "yellow"))
            if report.older_recounted:
                console.print(
                    Text(
                        f"{plural(report.older_recounted, 'aggregate')} older than the "
                        "raw-event retention recounted from the raw events kept",
                        "yellow",
                    ),
                    soft_wrap=True,
                )
            if report.final_periods:
                console.print(
                    Text(
                        f"final periods changed ({len(report.final_periods)}): "
                        f"{', '.join(report.final_periods)}",
                        "yellow",
                    )
                )
    if not report.ok and not report.repaired:
        raise typer.Exit(1)


# Positions holding epoch seconds, shown as UTC times.
_TIMES = frozenset({"first seen", "last activity"})
# Drift kinds whose values are `{"extra": n}` (stored) and `{"missing": n}` (expected).
_MARKERS = frozenset({"unique_markers", "breakdown_markers"})
# Names of the positions of the tuples some drift kinds hold (verification's snapshots).
_POSITIONS = {
    "bucket": ("total", "by type"),
    "profile": ("total", "by type", "first seen", "last activity"),
}


def differences(what: str, stored: object, expected: object) -> str:
    """What differs between a drift's `stored` and `expected` values, for a person to read:
    `name stored → expected` for each differing entry, sorted by name ("absent" where it is),
    then how many entries agree; a value without entries as `stored S → expected E`; a marker
    drift (`{"extra": n}`, `{"missing": n}`) as `n extra, n missing`."""
    if what in _MARKERS and isinstance(stored, dict) and isinstance(expected, dict):
        return f"{stored.get('extra', 0)} extra, {expected.get('missing', 0)} missing markers"
    if what == "person_sessions" and isinstance(stored, list) and isinstance(expected, list):
        return (
            f"kept, not recounted: {_sessions(stored)}; recounted, not kept: {_sessions(expected)}"
        )
    if what in COPY_KINDS and isinstance(stored, list) and isinstance(expected, list):
        return (
            f"kept, not as the raw events say: {_copied(what, stored)}; "
            f"as the raw events say, not kept: {_copied(what, expected)}"
        )
    have, want = _entries(what, stored), _entries(what, expected)
    if have is None or want is None:
        return f"stored {stored} → expected {expected}"
    changed = [
        f"{name} {have.get(name, 'absent')} → {want.get(name, 'absent')}"
        for name in sorted(have.keys() | want.keys())
        if have.get(name) != want.get(name)
    ]
    same = len(have.keys() & want.keys()) - sum(
        1 for name in have.keys() & want.keys() if have[name] != want[name]
    )
    agree = "" if not same else "; 1 other agrees" if same == 1 else f"; {same} others agree"
    return f"{', '.join(changed)} (stored → expected{agree})"


def _sessions(sessions: list[list[Any]]) -> str:
    """`person_sessions` drift's sessions ([key, start, end, events]) for a person to read."""
    return (
        ", ".join(
            f"{_iso(start)} to {_iso(end)} ({plural(events, 'event')})"
            for _, start, end, events in sessions
        )
        or "none"
    )


def _copied(what: str, rows: list[list[Any]], most: int = 3) -> str:
    """Copies' drift rows for a person to read, the first `most`: a digest's [event key, time,
    no client session id, {funnel: [steps]}], a list's [event key, time, type, client session
    id]."""
    shown = []
    for key, at, third, fourth in rows[:most]:
        if what == "recent_events":
            detail = ["no client session id"] * bool(third) + [
                f"{funnel} steps {', '.join(map(str, steps))}" for funnel, steps in fourth.items()
            ]
        else:
            detail = [str(third)] + [f"client session {fourth}"] * (fourth is not None)
        shown.append(f"event {key} at {_iso(at)} ({'; '.join(detail)})")
    more = f" and {len(rows) - most} more" if len(rows) > most else ""
    return ", ".join(shown) + more or "none"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _entries(what: str, value: object) -> dict[str, object] | None:
    """`value` as named entries (a dict's items; a known tuple's positions, its dicts' items
    merged in); {} for None; None when it has no entries (a number, a list)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(name): item for name, item in value.items()}
    names = _POSITIONS.get(what)
    if isinstance(value, tuple) and names is not None and len(value) == len(names):
        entries: dict[str, object] = {}
        for name, item in zip(names, value, strict=True):
            if isinstance(item, dict):
                entries.update({str(key): count for key, count in item.items()})
            elif name in _TIMES and isinstance(item, float):
                entries[name] = _iso(item)
            else:
                entries[name] = item
        return entries
    return None
