"""`config show` and `config apply`: the configuration that shapes stored numbers, as recorded
with the data (`stored_config`), beside the environment's.

`apply` is the one way to change or remove what the store recorded (a funnel's steps or window,
the time zone, the session or identity rules): it says what it will recompute, then, with
`--yes`, records the environment's values and rebuilds the aggregates from the retained raw
events. Like `verify --repair`, it changes nothing when the rebuild would recount aggregates
older than the raw-event retention from the raw events kept (losing those that expired), unless
`--drop-older` accepts it. Stop the workers first: a
worker started before `apply` refuses to commit under the old values and must be restarted.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.text import Text

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.shared import (
    DropOlderOption,
    JsonOption,
    confirm_or_stop,
    console,
    load_config,
    plural,
    print_json,
    progress_lines,
    require_data,
)
from behavioral_analytics.dimensions import SESSION_DIMENSIONS
from behavioral_analytics.settings import Settings
from behavioral_analytics.stored_config import (
    StoredConfig,
    plan_apply,
    reconcile,
    recounted_dimensions,
)
from behavioral_analytics.time_zones import as_recorded_zone
from behavioral_analytics.wiring import (
    build_store_with,
    check_local_store,
    omitted_line,
    refusal,
)

__all__ = ["config_app"]

config_app = typer.Typer(
    help="The configuration recorded with the data (funnels, sessions, identity, time zone,"
    " breakdowns).",
    no_args_is_help=True,
)


def _summary(config: StoredConfig | None) -> dict[str, Any] | None:
    return None if config is None else config.to_dict()


@config_app.command("show")
def show(as_json: bool = JsonOption) -> None:
    """What the store recorded, what this environment sets, and what it would do with them."""
    settings = load_config()
    require_data(settings)
    wanted = settings.stored_config()
    with user_errors():
        store = build_store_with(settings, wanted, only_reads=True)
        recorded = store.recorded_config()
    reconciled = reconcile(recorded, as_recorded_zone(wanted, recorded), settings.shaping_set())
    if as_json:
        print_json(
            {
                "recorded": _summary(recorded),
                "effective": reconciled.effective.to_dict(),
                "funnels_added": list(reconciled.added_funnels),
                "refused": [refusal(d) for d in reconciled.refused],
                "breakdown_dimensions_omitted": list(reconciled.omitted_dimensions),
                "funnels_omitted": list(reconciled.omitted_funnels),
            }
        )
        return
    if recorded is None:
        console.print("nothing recorded yet: the first commit records this environment's values")
    effective = reconciled.effective
    console.print(
        f"time zone {effective.timezone} · sessions: gap {effective.session_gap_s:g} s, cap "
        f"{effective.session_max_s:g} s · identity window {effective.identity_window_s:g} s, "
        f"relink {'on' if effective.allow_relink else 'off'}",
        highlight=False,
    )
    for funnel in effective.funnels:
        steps = " → ".join(step.event_type for step in funnel.steps)
        added = " (added by this environment)" if funnel.name in reconciled.added_funnels else ""
        console.print(
            f"funnel {funnel.name}: {steps} within {funnel.window_s:g} s{added}", highlight=False
        )
    if not effective.funnels:
        console.print("no funnels")
    new = set(reconciled.added_dimensions)
    kept = ", ".join(
        name + (" (added by this environment)" if name in new else "")
        for name in effective.breakdown_dimensions
    )
    if kept:
        kept += (
            f" · {effective.breakdown_values} values admitted per period and dimension; "
            "sessions also by entry_page, exit_page"
        )
    console.print(f"breakdowns: {kept or 'none'}", highlight=False)
    if reconciled.omitted_dimensions or reconciled.omitted_funnels:
        line = omitted_line(reconciled.omitted_dimensions, reconciled.omitted_funnels)
        console.print(line, highlight=False)
    for difference in reconciled.refused:
        console.print(Text.assemble(("refused:", "yellow"), f" {refusal(difference)}"))


def _record_first(settings: Settings, yes: bool, as_json: bool) -> None:
    """`config apply` on a store with nothing recorded (written before configurations were, or
    never committed to): record this environment's values, as a worker's start does, with the
    breakdowns counted from the retained raw events."""
    telling = console if not as_json else None if yes else err_console
    if telling is not None:
        telling.print(
            "will record this environment's values (the store has none recorded) and count "
            "its breakdowns from the raw events",
            highlight=False,
        )
    if not yes:
        confirm_or_stop("Record these values?")
    progress = progress_lines("config apply")
    with user_errors():
        store = build_store_with(settings, settings.stored_config())
        try:
            progress("recording the configuration, counting breakdowns from the raw events", True)
            store.record_config()
            recorded = store.recorded_config()
            dimensions = list(recorded.breakdown_dimensions if recorded is not None else ())
        finally:
            store.close()
    if as_json:
        print_json(
            {
                "changes": ["configuration recorded (none was)"],
                "applied": True,
                "rebuilt": False,
                "recomputed": 0,
                "links_changed": 0,
                "copies_dropped": 0,
                "breakdowns_recounted": dimensions,
                "older_recounted": 0,
                "older_kept": 0,
            }
        )
        return
    counted = f"; breakdowns counted from the raw events: {', '.join(dimensions)}" * bool(
        dimensions
    )
    console.print(
        Text.assemble(("applied", "green"), f": this environment's values recorded{counted}")
    )


@config_app.command("apply")
def apply(
    yes: bool = typer.Option(False, "--yes", help="Apply without asking."),
    drop_older: bool = DropOlderOption,
    as_json: bool = JsonOption,
) -> None:
    """Record the environment's values where they change what the store recorded, and
    recompute what they shape from the retained raw events. Stop the workers first."""
    from behavioral_analytics.recount_reads import retained_events
    from behavioral_analytics.verification import compare, horizon_of, older_refusal

    settings = load_config()
    require_data(settings)
    with user_errors():
        check_local_store(settings, for_writing=True)
        current = build_store_with(settings, settings.stored_config())
        recorded = current.recorded_config()
        current.close()
    wanted = as_recorded_zone(settings.stored_config(), recorded)
    if recorded is None:
        _record_first(settings, yes, as_json)
        return
    target, changes = plan_apply(recorded, wanted, settings.shaping_set())
    if not changes:
        document = {"changes": [], "applied": False, "older_recounted": 0, "older_kept": 0}
        if as_json:
            print_json(document)
        else:
            console.print("nothing to change: the store counts by this environment's values")
        return
    # What will change is said before anything is asked: on stdout, or beside a `--json`
    # document on stderr where a prompt follows.
    telling = console if not as_json else None if yes else err_console
    if telling is not None:
        for change in changes:
            telling.print(f"will change {change.describe()}", highlight=False)
    recounted = recounted_dimensions(recorded, target)
    if recounted:  # session counts are recounted with any dimension: entry and exit pages too
        recounted += SESSION_DIMENSIONS
    progress = progress_lines("config apply")
    with user_errors():
        store = build_store_with(settings, target)
        try:
            retention_s = settings.raw_retention_days * 86400.0
            horizon = horizon_of(time.time(), retention_s, settings.limits)
            assert horizon is not None  # a retention is always set
            report = compare(
                store.snapshot(),
                retained_events(store, progress),
                Periods(target.timezone),
                horizon,
                store.rules if store.behavioral else None,
                store.stored_links(),
                # Stores that keep breakdowns say so (the port's `keeps_breakdowns`).
                breakdowns=bool(getattr(store, "keeps_breakdowns", False)),
                settle=False,  # every retained figure the change moves is recomputed
            )
            older = report.not_checked
            # A new count of values per breakdown recounts every breakdown from the raw events
            # kept (`record_config`), whatever the comparison found.
            rebuilds = not report.ok and not report.copies_only
            recounts = rebuilds or any(c.field == "breakdown_values" for c in changes)
            if older and recounts and not drop_older:
                fail(older_refusal("config apply", older, horizon))
            if older and recounts and telling is not None:
                telling.print(
                    f"will recount {plural(older, 'aggregate')} older than the raw-event "
                    "retention from the raw events kept (--drop-older)",
                    highlight=False,
                    soft_wrap=True,
                )
            if not yes:
                confirm_or_stop("Record these values and recompute?")
            if recounted:
                dimensions = plural(len(recounted), "breakdown dimension")
                progress(f"recounting {dimensions} from the raw events", True)
            store.record_config(replace=True)
            if rebuilds:
                progress("rebuilding the aggregates", True)
                store.rebuild(retained_events(store, progress))
            elif report.copies_only:  # stale under the new rules (a funnel's steps)
                store.drop_copies(*report.copy_owners())
        finally:
            store.close()
    links, state = report.links_drifted, report.state_drifted
    dropped = sum(map(len, report.copy_owners())) if report.copies_only else 0
    if as_json:
        print_json(
            {
                "changes": [change.describe() for change in changes],
                "applied": True,
                "rebuilt": rebuilds,
                "recomputed": report.figures_drifted,
                "links_changed": links,
                "copies_dropped": dropped,
                "breakdowns_recounted": recounted,
                "older_recounted": older if recounts else 0,
                "older_kept": 0 if recounts else older,
            }
        )
    else:
        console.print(
            Text.assemble(
                ("applied", "green"),
                f": {len(changes)} change(s) recorded; "
                f"{plural(report.figures_drifted, 'aggregate')} recomputed"
                + (f", {plural(links, 'identity link')} re-decided" if links else "")
                + (
                    f", {plural(state, 'item')} of the people's kept state rewritten"
                    * (rebuilds and state > 0)
                )
                + (
                    f", the stale copies of raw events of {plural(dropped, 'person')} dropped"
                    * (dropped > 0)
                )
                + (
                    f"; breakdowns recounted from the raw events: {', '.join(recounted)}"
                    if recounted
                    else ""
                ),
            ),
            soft_wrap=True,
        )
        if older:
            console.print(
                f"{plural(older, 'aggregate')} older than the raw-event retention "
                + (
                    "recounted from the raw events kept"
                    if recounts
                    else "keep the figures counted under the previous values"
                ),
                highlight=False,
                soft_wrap=True,
            )
