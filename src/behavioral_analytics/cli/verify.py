"""`verify`: recount every aggregate from the retained raw events, report drift, and with
`--repair` rebuild the drifted aggregates. Events older than the raw retention cannot be
recounted and are reported as not checked.

Both count by the configuration recorded with the data (funnels, sessions, identity, time
zone: `stored_config`), never by a shell's different environment, so a repair rebuilds what the
workers counted; a repair that would drop aggregates it cannot recount changes nothing. Like
the queries, it records nothing the environment adds, and in a folder without data it exits 1
naming the folder instead of checking a new, empty store.

Dead letters are judged as the worker judges them (BA_MAX_EVENT_AGE_DAYS, BA_MAX_FUTURE_SKEW):
those a replay would count are listed with the `dlq replay` that counts them; those refused for
their time are counted apart as not replayable, since a replay keeps their first receipt time."""

from __future__ import annotations

import time

import typer

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    load_config,
    open_reader,
    print_json,
)

__all__ = ["verify"]


def verify(
    repair: bool = typer.Option(False, "--repair", help="Rebuild the aggregates from raw events."),
    as_json: bool = JsonOption,
) -> None:
    """Recount every aggregate from the retained raw events; exit 1 on any drift."""
    from behavioral_analytics.verification import verify as run_verify

    config, store = open_reader(load_config())
    with user_errors():
        report = run_verify(
            store,
            Periods(config.timezone),
            now=time.time(),
            retention_s=config.raw_retention_days * 86400.0,
            repair=repair,
            limits=config.limits,
        )
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(
            f"raw events {report.raw_events} · buckets checked {report.buckets_checked} · "
            f"profiles checked {report.profiles_checked} · older than retention "
            f"{report.not_checked}"
        )
        for drift in report.drift[:20]:
            console.print(
                f"[red]drift[/red] {drift.what} {drift.key}: stored {drift.stored} "
                f"expected {drift.expected}"
            )
        if report.valid_dead_letters:
            ids = report.valid_dead_letters
            console.print(
                f"[yellow]{len(ids)} dead letters are valid events counted nowhere[/yellow]: "
                f"behavioral-analytics dlq replay --id {' --id '.join(ids[:5])}"
            )
        if report.unreplayable_dead_letters:
            by_reason = report.unreplayable_dead_letters
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
            console.print(
                f"[yellow]{sum(by_reason.values())} dead letters are events outside the accepted "
                f"time window, counted nowhere and not replayable[/yellow] ({reasons}): a replay "
                "keeps their first receipt time (a too-old one is taken once the workers' "
                "BA_MAX_EVENT_AGE_DAYS reaches it)",
                highlight=False,
            )
        if report.ok:
            console.print("[green]no drift[/green]")
        elif report.repaired:
            console.print(f"[yellow]{len(report.drift)} drifted aggregates rebuilt[/yellow]")
            if report.final_periods:
                console.print(
                    f"[yellow]final periods changed ({len(report.final_periods)}): "
                    f"{', '.join(report.final_periods)}[/yellow]"
                )
    if not report.ok and not report.repaired:
        raise typer.Exit(1)
