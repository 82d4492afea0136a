"""The `behavioral-analytics` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console
from rich.table import Table

from behavioral_analytics import __version__, cli_behavior
from behavioral_analytics.aggregation import Granularity, Periods
from behavioral_analytics.broker import (
    ORIGINAL_MESSAGE_ID,
    ORIGINAL_PUBLISH_TIME,
    Broker,
    OutgoingMessage,
)
from behavioral_analytics.cli_errors import err_console, fail, user_errors
from behavioral_analytics.config import (
    Settings,
    load_settings,
    make_broker,
    make_metrics_exporter,
    make_store,
)
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.store import Store
from behavioral_analytics.telemetry import WorkerMetrics, configure_logging

app = typer.Typer(
    help="Real-time behavioral analytics: exact counts under redelivery and crashes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
query_app = typer.Typer(help="Read the analytics.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
app.add_typer(query_app, name="query")
app.add_typer(dlq_app, name="dlq")

console = Console()

JsonOption = typer.Option(False, "--json", help="Print one JSON document (shape: docs/cli.md).")


def settings() -> Settings:
    with user_errors():
        return load_settings()


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + "Z"


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


@app.command()
def init() -> None:
    """Create the topic, subscription, dead-letter path and store if missing."""
    config = settings()
    with user_errors():
        broker, store = make_broker(config), make_store(config)
        for line in [*broker.init(), *store.init()]:
            console.print(f"• {line}")
        console.print(f"[green]ready[/green] (backend {config.backend})")


@app.command()
def publish(
    source: str = typer.Argument("-", metavar="[FILE|-]", help="NDJSON file, or - for stdin."),
    batch_size: int = typer.Option(1000, min=1, max=10000, help="Messages per publish call."),
    ordering_key: str | None = typer.Option(None, help="Ordering key for every message."),
) -> None:
    """Publish NDJSON lines as they are, one message per line (malformed lines included: the
    worker dead-letters them with a reason)."""
    config = settings()
    with user_errors():
        broker = make_broker(config)
        stream = sys.stdin.buffer if source == "-" else Path(source).open("rb")  # noqa: SIM115
        sent = 0
        with stream:
            pending: list[OutgoingMessage] = []
            for raw in stream:
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                pending.append(OutgoingMessage(line, ordering_key=ordering_key))
                if len(pending) >= batch_size:
                    sent += len(broker.publish(pending))
                    pending = []
            if pending:
                sent += len(broker.publish(pending))
        broker.close()
    err_console.print(f"published {sent} messages to {config.pubsub_topic}")


def _worker_process(until_idle: bool, drain: bool) -> None:
    config = settings()
    configure_logging(config.log_level)
    from behavioral_analytics.worker import Worker, WorkerOptions

    with user_errors():
        broker, store = make_broker(config), make_store(config)
        metrics = WorkerMetrics()
        exporter = make_metrics_exporter(config)
        if exporter is not None:
            exporter.start(metrics)
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker = Worker(
            broker,
            store,
            options=WorkerOptions.from_settings(config, drain_dead_letters=drain),
            metrics=metrics,
        )
        try:
            worker.run(stop, until_idle=until_idle)
        finally:
            if exporter is not None:
                exporter.close()
            broker.close()
            store.close()


def _spawn_workers(
    count: int, extra: list[str], log_file: IO[bytes] | None = None
) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--workers", "1"]
    return [
        subprocess.Popen(
            [*command, *extra, *([] if i == 0 else ["--no-drain"])],
            stdout=log_file,
            stderr=log_file,
        )
        for i in range(count)
    ]


def _stop(children: list[subprocess.Popen[bytes]], grace_s: float = 8.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


@app.command()
def worker(
    workers: int = typer.Option(1, "--workers", "-n", min=1, max=64, help="Worker processes."),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Exit once the subscription is drained."
    ),
    drain: bool = typer.Option(
        True, "--drain/--no-drain", help="Move the broker's dead letters into the store."
    ),
) -> None:
    """Process events: pull → validate → aggregate → commit → ack. SIGTERM/SIGINT drain and
    exit within 8 s."""
    if workers == 1:
        _worker_process(until_idle, drain)
        return
    children = _spawn_workers(workers, ["--until-idle"] if until_idle else [])
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.is_set() and any(c.poll() is None for c in children):
        stopping.wait(0.2)
    _stop(children)
    codes = [c.returncode for c in children]
    if any(code not in (0, -signal.SIGTERM) for code in codes):
        fail(f"worker processes exited with {codes}")


def _open(config: Settings) -> Store:
    with user_errors():
        return make_store(config)


@query_app.command("profile")
def query_profile(
    user: str = typer.Argument(..., help="User id."), as_json: bool = JsonOption
) -> None:
    """A user's totals, events by type, first seen and last activity."""
    config = settings()
    with user_errors():
        profile = _open(config).profile(user)
    if profile is None:
        if as_json:
            print_json(None)
        fail(f"no profile for user {user!r}")
    if as_json:
        print_json(profile.to_dict())
        return
    table = Table(title=f"profile {user}", show_header=False)
    table.add_row("total events", str(profile.total_events))
    for event_type, count in sorted(profile.events_by_type.items()):
        table.add_row(f"  {event_type}", str(count))
    table.add_row("first seen", fmt_time(profile.first_seen))
    table.add_row("last activity", fmt_time(profile.last_activity))
    console.print(table)


def _print_events(page: Any, title: str, as_json: bool) -> None:
    if as_json:
        print_json({"items": [e.to_dict() for e in page.items], "next_cursor": page.next_cursor})
        return
    table = Table(title=title)
    for column in ("time", "event type", "user", "session", "event id", "properties"):
        table.add_column(column, overflow="fold")
    for stored in page.items:
        event = stored.event
        table.add_row(
            fmt_time(event.timestamp),
            event.event_type,
            event.who,
            event.session_id or "-",
            event.event_id,
            json.dumps(event.properties)[:80],
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@query_app.command("timeline")
def query_timeline(
    user: str = typer.Argument(..., help="User id."),
    limit: int = typer.Option(20, min=1, max=1000),
    cursor: str | None = typer.Option(None, help="From a previous page's next_cursor."),
    as_json: bool = JsonOption,
) -> None:
    """A user's events, newest first."""
    config = settings()
    with user_errors():
        page = _open(config).timeline(user, limit, cursor)
    _print_events(page, f"timeline of {user}", as_json)


@query_app.command("events")
def query_events(
    event_type: str = typer.Option(..., "--type", "-t", help="Event type."),
    limit: int = typer.Option(20, min=1, max=1000),
    cursor: str | None = typer.Option(None, help="From a previous page's next_cursor."),
    as_json: bool = JsonOption,
) -> None:
    """Events of one type, newest first."""
    config = settings()
    with user_errors():
        page = _open(config).events_by_type(event_type, limit, cursor)
    _print_events(page, f"{event_type} events", as_json)


def _period_bound(value: str | None, granularity: Granularity, periods: Periods) -> str | None:
    """A period label as is, or an RFC 3339 time / epoch seconds → the label it falls in."""
    if value is None:
        return None
    from behavioral_analytics.events import parse_timestamp

    try:
        number: float | str = float(value)
    except ValueError:
        number = value
    if isinstance(number, str) and "T" not in number:
        return number
    try:
        return periods.label(granularity, parse_timestamp(number))
    except Exception:
        fail(f"--from/--to: {value!r} is neither a period label nor a time", 2)


@query_app.command("series")
def query_series(
    granularity: str = typer.Option("hour", "--granularity", "-g", help="minute, hour or day."),
    start: str | None = typer.Option(None, "--from", help="Period label or RFC 3339 time."),
    end: str | None = typer.Option(None, "--to", help="Period label or RFC 3339 time."),
    event_type: str | None = typer.Option(None, "--type", "-t", help="Only this event type."),
    as_json: bool = JsonOption,
) -> None:
    """Counts per minute, hour or day: total, by type, unique users (hour and day)."""
    if granularity not in ("minute", "hour", "day"):
        fail("--granularity must be minute, hour or day", 2)
    config = settings()
    periods = Periods(config.timezone)
    g: Granularity = granularity  # type: ignore[assignment]
    with user_errors():
        points = _open(config).series(
            g, _period_bound(start, g, periods), _period_bound(end, g, periods)
        )
    rows = []
    for point in points:
        row = point.to_dict()
        if event_type is not None:
            row["total_events"] = point.events_by_type.get(event_type, 0)
            row["events_by_type"] = {event_type: row["total_events"]}
            row["unique_users"] = None
        rows.append(row)
    if as_json:
        print_json({"granularity": granularity, "timezone": config.timezone, "points": rows})
        return
    types = sorted({t for row in rows for t in row["events_by_type"]})
    table = Table(title=f"{granularity} series ({config.timezone})")
    table.add_column("period")
    table.add_column("total", justify="right")
    table.add_column("unique users", justify="right")
    for t in types:
        table.add_column(t, justify="right")
    for row in rows:
        uniques = "-" if row["unique_users"] is None else str(row["unique_users"])
        table.add_row(
            row["period"],
            str(row["total_events"]),
            uniques,
            *(str(row["events_by_type"].get(t, 0)) for t in types),
        )
    console.print(table)


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(50, min=1, max=1000),
    cursor: str | None = typer.Option(None),
    as_json: bool = JsonOption,
) -> None:
    """Dead letters, newest first: rejected events and messages the broker gave up on."""
    config = settings()
    with user_errors():
        store = _open(config)
        page = store.dead_letters(limit, cursor)
        total = store.count_dead_letters()
    if as_json:
        print_json(
            {
                "total": total,
                "items": [d.to_dict() for d in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return
    table = Table(title=f"dead letters ({total})")
    for column in ("id", "recorded", "source", "reason", "detail", "data", "replayed"):
        table.add_column(column, overflow="fold")
    for d in page.items:
        data = d.data[:60].decode("utf-8", "replace")
        table.add_row(
            d.id,
            fmt_time(d.recorded_at),
            d.source,
            d.reason,
            d.detail[:60],
            data,
            fmt_time(d.replayed_at) if d.replayed_at else "",
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@dlq_app.command("replay")
def dlq_replay(
    ids: list[str] = typer.Option(None, "--id", help="Dead letter id (repeatable)."),
    replay_all: bool = typer.Option(False, "--all", help="Every dead letter not yet replayed."),
) -> None:
    """Publish dead letters again, as they were (after a fix, say). A replayed message keeps
    its identity, so an event already counted is not counted twice."""
    if not ids and not replay_all:
        fail("say which: --id ID (repeatable) or --all", 2)
    config = settings()
    with user_errors():
        store, broker = _open(config), make_broker(config)
        chosen = _chosen_dead_letters(store, ids, replay_all)
        if not chosen:
            err_console.print("nothing to replay")
            return
        messages = [
            OutgoingMessage(
                d.data,
                {
                    **d.attributes,
                    ORIGINAL_MESSAGE_ID: d.message_id,
                    ORIGINAL_PUBLISH_TIME: repr(d.received_at),
                },
            )
            for d in chosen
        ]
        for start in range(0, len(messages), 1000):
            broker.publish(messages[start : start + 1000])
        store.mark_replayed([d.id for d in chosen], time.time())
    err_console.print(f"replayed {len(chosen)} dead letters to {config.pubsub_topic}")


def _chosen_dead_letters(store: Store, ids: list[str] | None, replay_all: bool) -> list[Any]:
    if ids:
        chosen = []
        for dead_letter_id in ids:
            found = store.get_dead_letter(dead_letter_id)
            if found is None:
                fail(f"no dead letter with id {dead_letter_id!r}")
            chosen.append(found)
        return chosen
    chosen, cursor = [], None
    while True:
        page = store.dead_letters(1000, cursor)
        chosen.extend(d for d in page.items if d.replayed_at is None)
        cursor = page.next_cursor
        if cursor is None:
            return chosen


@app.command()
def verify(
    repair: bool = typer.Option(False, "--repair", help="Rebuild the aggregates from raw events."),
    as_json: bool = JsonOption,
) -> None:
    """Recount every aggregate from the retained raw events; exit 1 on any drift."""
    from behavioral_analytics.verification import verify as run_verify

    config = settings()
    with user_errors():
        store = _open(config)
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


@app.command()
def up(
    workers: int = typer.Option(2, "--workers", "-n", min=1, max=16),
    rate: float = typer.Option(20.0, "--rate", "-r", min=0, help="Synthetic events/s (0: none)."),
    api: bool = typer.Option(True, "--api/--no-api", help="Serve the API and dashboard too."),
) -> None:
    """The local stack: workers, synthetic traffic and a live view, until Ctrl-C."""
    from behavioral_analytics.live_view import run_live_view

    config = settings()
    if "funnels" not in config.model_fields_set:
        # The synthetic traffic walks the generator's purchase funnel: show it.
        os.environ["BA_FUNNELS"] = PURCHASE_FUNNEL
        config = settings()
    if config.backend != "local":
        err_console.print(f"[yellow]note:[/yellow] running against BA_BACKEND={config.backend}")
    with user_errors():
        broker, store = make_broker(config), make_store(config)
    log_path = config.data_dir / "up.log"
    log_file = log_path.open("ab")
    children = _spawn_workers(workers, [], log_file)
    api_url = None
    if api:
        api_process, api_url = _start_api(config, log_file)
        if api_process is not None:
            children.append(api_process)
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(broker, rate, stop), daemon=True)
    if rate > 0:
        traffic.start()
    try:
        run_live_view(
            config, store, broker, stop, api_url=api_url, rate=rate, workers=workers, log=log_path
        )
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        err_console.print("stopping: draining workers…")
        _stop(children)
        log_file.close()
        err_console.print(f"stopped; logs in {log_path}")


def _start_api(
    config: Settings, log_file: IO[bytes]
) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    try:
        import behavioral_analytics.api.server  # noqa: F401
    except ImportError as exc:
        err_console.print(f"[yellow]no API/dashboard[/yellow] ({exc}): pip install '.[api]'")
        return None, None
    process = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "api"],
        stdout=log_file,
        stderr=log_file,
    )
    return process, f"http://{config.api_host}:{config.api_port}/"


def _traffic(broker: Broker, rate: float, stop: threading.Event) -> None:
    from behavioral_analytics.loadgen import synthetic_stream

    stream = synthetic_stream()
    tick = 0.1
    per_tick = rate * tick
    owed = 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        owed += per_tick
        count, owed = int(owed), owed - int(owed)
        if count:
            try:
                broker.publish(
                    [OutgoingMessage(json.dumps(next(stream)).encode()) for _ in range(count)]
                )
            except Exception as exc:
                err_console.print(f"[red]publish failed:[/red] {exc}")
        next_at += tick
        stop.wait(max(0.0, next_at - time.monotonic()))


def _register_optional(name: str, module: str, attribute: str) -> None:
    """Commands whose modules need optional extras (the API) or live in their own module."""
    try:
        command: Callable[..., Any] = getattr(__import__(module, fromlist=[attribute]), attribute)
    except ImportError:
        return
    app.command(name)(command)


query_app.command("sessions")(cli_behavior.query_sessions)
query_app.command("funnel")(cli_behavior.query_funnel)
query_app.command("links")(cli_behavior.query_links)
app.command("forget")(cli_behavior.forget)
_register_optional("api", "behavioral_analytics.api.cli", "api")
_register_optional("generate", "behavioral_analytics.loadgen_cli", "generate")
_register_optional("loadtest", "behavioral_analytics.loadgen_cli", "loadtest")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
