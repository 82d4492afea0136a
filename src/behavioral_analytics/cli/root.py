"""The root `behavioral-analytics` command: its options (`--version`), every command and
group registered in the order `--help` lists them, and `main`, the console script's entry
point (pyproject.toml). Each command lives in the module of its group; this module only
assembles them."""

from __future__ import annotations

import typer

from behavioral_analytics import __version__
from behavioral_analytics.cli import (
    api,
    backup,
    behavior,
    doctor,
    groups,
    loadgen,
    pipeline,
    retention,
    up,
    verify,
)
from behavioral_analytics.cli.config import config_app
from behavioral_analytics.cli.dlq import dlq_app
from behavioral_analytics.cli.help_text import plain_metavars
from behavioral_analytics.cli.query import query_app
from behavioral_analytics.cli.shared import console

__all__ = ["app", "main"]

app = typer.Typer(
    help="Real-time behavioral analytics: exact counts under redelivery and crashes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


query_app.command("group")(groups.query_group)
query_app.command("retention")(retention.query_retention)
app.add_typer(query_app, name="query")
app.add_typer(dlq_app, name="dlq")
app.add_typer(config_app, name="config")
app.command("init")(pipeline.init)
app.command("publish")(pipeline.publish)
app.command("worker")(pipeline.worker)
app.command("verify")(verify.verify)
app.command("doctor")(doctor.doctor)
app.command("backup")(backup.backup)
app.command("up")(up.up)
app.command("forget")(behavior.forget)
app.command("api")(api.api)
app.command("generate")(loadgen.generate)
app.command("loadtest")(loadgen.loadtest)


def main() -> None:
    """Run the command line on `sys.argv` (exits with the command's code)."""
    plain_metavars(typer.main.get_command(app))()
