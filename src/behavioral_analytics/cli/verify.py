"""`verify`: recount every aggregate from the retained raw events, report drift, and with
`--repair` rebuild the drifted aggregates. Events older than the raw retention cannot be
recounted and are reported as not checked."""

from __future__ import annotations

import time

import typer

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.cli.errors import user_errors
from behavioral_analytics.cli.shared import (
    JsonOption,
    console,
    load_config,
    open_store,
    print_json,
)

__all__ = ["verify"]


def verify(
    repair: bool = typer.Option(False, "--repair", help="Rebuild the aggregates from raw events."),
    as_json: bool = JsonOption,
) -> None:
    """Recount every aggregate from the retained raw events; exit 1 on any drift."""
    from behavioral_analytics.verification import verify as run_verify

    config = load_config()
    with user_errors():
        store = open_store(config)
        report = run_verify(
            store,
            Periods(config.timezone),
            now=time.time(),
            retention_s=config.raw_retention_days * 86400.0,
            repair=repair,
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
        if report.ok:
            console.print("[green]no drift[/green]")
        elif report.repaired:
            console.print(f"[yellow]{len(report.drift)} drifted aggregates rebuilt[/yellow]")
    if not report.ok and not report.repaired:
        raise typer.Exit(1)
