"""`behavioral-analytics generate` and `behavioral-analytics loadtest` (registered by `root`),
and `script_main`, which the repository's scripts use to run one of them with their defaults."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from behavioral_analytics.cli.errors import err_console, fail, plain_console, user_errors
from behavioral_analytics.cli.shared import plural, require_collector
from behavioral_analytics.cli.tables import TextTable
from behavioral_analytics.loadgen import (
    GeneratorConfig,
    Message,
    anchored_start,
    iter_messages,
    with_seed,
)
from behavioral_analytics.loadtest import (
    BrokerSink,
    HttpSink,
    LoadTestError,
    LoadTestOptions,
    LoadTestReport,
    Pacer,
    Sink,
    WorkerProcesses,
    default_users,
    run_loadtest,
)
from behavioral_analytics.settings import ConfigError, Settings, load_settings
from behavioral_analytics.wiring import build_broker, check_local_store

__all__ = ["generate", "loadtest", "script_main"]

out_console = plain_console()

# Options shared by both commands (the generator's model; docs/loadtest.md explains each).
SeedOption = typer.Option(
    None, "--seed", help="Seed: the same seed and --start give the same bytes."
)
DuplicateOption = typer.Option(
    0.01, "--duplicate-rate", min=0, max=1, help="Messages sent twice, byte for byte."
)
LateOption = typer.Option(
    0.02, "--late-rate", min=0, max=1, help="Events sent minutes to hours after their timestamp."
)
MalformedOption = typer.Option(
    0.005, "--malformed-rate", min=0, max=0.99, help="Malformed messages added (several kinds)."
)
BotOption = typer.Option(0.05, "--bot-rate", min=0, max=0.95, help="Share of events from crawlers.")
FunnelOption = typer.Option(
    "0.4,0.6,0.5",
    "--funnel-dropoff",
    help="Drop-off at search, add_to_cart and purchase (each of the previous step).",
)
PageViewsOption = typer.Option(5.0, "--mean-page-views", min=1, help="Page views per session.")
GapOption = typer.Option(
    30.0,
    "--mean-gap",
    min=0.1,
    help="Mean seconds between session events, below the 1800 s session timeout.",
)


def _funnel(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise ValueError(
            f"--funnel-dropoff {text!r}: expected three numbers in [0, 1], e.g. 0.4,0.6,0.5"
        )
    return values


def _start(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"--start {text!r}: expected epoch seconds or ISO 8601") from None
    if moment.tzinfo is None:
        raise ValueError(f"--start {text!r}: give a UTC offset or Z")
    return moment.timestamp()


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), 2)


def _model(
    events: int,
    users: int,
    seed: int | None,
    duplicate_rate: float,
    late_rate: float,
    malformed_rate: float,
    bot_rate: float,
    funnel_dropoff: str,
    mean_page_views: float,
    mean_gap: float,
) -> GeneratorConfig:
    return GeneratorConfig(
        events=events,
        users=users,
        seed=seed,
        duplicate_rate=duplicate_rate,
        late_rate=late_rate,
        malformed_rate=malformed_rate,
        bot_rate=bot_rate,
        funnel_dropoff=_funnel(funnel_dropoff),
        mean_page_views=mean_page_views,
        mean_gap_s=mean_gap,
    )


def generate(
    events: int = typer.Option(1000, "--events", "-n", min=0, help="Messages to produce."),
    via: str = typer.Option("ndjson", "--via", help="ndjson (stdout or --out), broker or http."),
    out: Path | None = typer.Option(None, "--out", "-o", help="NDJSON file (default: stdout)."),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="Collector, for --via http."),
    rate: float = typer.Option(0.0, "--rate", "-r", min=0, help="Messages/s (0: unpaced)."),
    users: int = typer.Option(100, "--users", min=1, help="Users user_1 … user_N."),
    start: str | None = typer.Option(
        None, "--start", help="Simulated start (epoch s or ISO 8601); default: ends now."
    ),
    seed: int | None = SeedOption,
    duplicate_rate: float = DuplicateOption,
    late_rate: float = LateOption,
    malformed_rate: float = MalformedOption,
    bot_rate: float = BotOption,
    funnel_dropoff: str = FunnelOption,
    mean_page_views: float = PageViewsOption,
    mean_gap: float = GapOption,
) -> None:
    """Synthetic users with sessions, a funnel, crawlers, duplicates, late and malformed events:
    as NDJSON, published through the broker, or posted to the HTTP collector."""
    if via not in ("ndjson", "broker", "http"):
        fail(f"--via {via!r}: expected ndjson, broker or http", 2)
    if via == "http":
        require_collector(url)
    with user_errors(ValueError, LoadTestError):
        config = _model(
            events, users, seed, duplicate_rate, late_rate, malformed_rate, bot_rate,
            funnel_dropoff, mean_page_views, mean_gap,
        )  # fmt: skip
        config = with_seed(config)
        begin = _start(start)
        config = replace(
            config, start=begin if begin is not None else anchored_start(config, time.time())
        )
        tally: Counter[str] = Counter()
        if via == "ndjson":
            if not _write_ndjson(iter_messages(config), out, tally):
                # How many the reader took is unknown (buffered): no tally.
                err_console.print(
                    f"generation stopped: the reader closed stdout (--seed {config.seed} "
                    f"--start {config.start})",
                    highlight=False,
                )
                return
            where = str(out) if out else "stdout"
        else:
            sink: Sink
            if via == "broker":
                settings = _settings()
                broker = build_broker(settings)
                if settings.backend == "local":
                    broker.init()
                sink = BrokerSink(broker)
                where = f"topic {settings.pubsub_topic} ({settings.backend})"
            else:
                sink = HttpSink(url, os.environ.get("BA_WRITE_KEY"))
                where = url
            try:
                rejected = _send(list(iter_messages(config)), sink, rate, tally)
            except LoadTestError as exc:
                if not tally["message"]:
                    raise
                fail(  # a failure part way, not a usage error: exit 1
                    f"{exc}\n{tally['message']:,} of {config.events:,} messages were sent; "
                    f"`{_again(config.seed, config.start)}` sends the same ones again, and "
                    "the events stored already count once"
                )
            if rejected:
                tally["rejected by the collector"] = rejected
    summary = ", ".join(_counted(name, count) for name, count in tally.items() if count)
    err_console.print(
        f"generated {summary or 'nothing'} → {where} (--seed {config.seed} --start {config.start})",
        highlight=False,
    )


def _again(seed: int | None, start: float) -> str:
    """This command line with the `--seed` and `--start` that repeat its messages."""
    args = sys.argv[1:]
    for name, value in (("--seed", seed), ("--start", start)):
        if name not in args and not any(a.startswith(f"{name}=") for a in args):
            args = [*args, name, str(value)]
    return shlex.join(["behavioral-analytics", *args])


def _write_ndjson(messages: Iterator[Message], out: Path | None, tally: Counter[str]) -> bool:
    """Write `messages` as NDJSON to `out` (stdout when None); False when the reader of stdout
    stopped early (`| head`), which ends the generation quietly: it has what it wanted."""
    stream = out.open("wb") if out else sys.stdout.buffer
    try:
        for message in messages:
            stream.write(message.data + b"\n")
            _count(message, tally)
        stream.flush()
        return True
    except BrokenPipeError:
        if out:
            raise
        # Python would report the unflushed rest again at exit: stdout now goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    finally:
        if out:
            stream.close()


def _count(message: Message, tally: Counter[str]) -> None:
    tally["message"] += 1
    if message.kind != "event":
        tally[message.kind] += 1
    elif message.late:
        tally["late"] += 1


def _counted(name: str, count: int) -> str:
    """`1 message`, `2 duplicates`, `3 late`: a tally's entry in the summary line."""
    return plural(count, name) if name in ("message", "duplicate") else f"{count} {name}"


def _send(messages: list[Message], sink: Sink, rate: float, tally: Counter[str]) -> int:
    rejected = 0
    with _bar() as bar:
        task = bar.add_task("publishing", total=len(messages), count="")
        if isinstance(sink, HttpSink):
            sink.on_wait = lambda why: bar.update(task, description=why or "publishing")
        try:
            for begin, end in Pacer(len(messages), rate).batches():
                rejected += sink.send([m.data for m in messages[begin:end]])
                for message in messages[begin:end]:
                    _count(message, tally)
                bar.update(task, completed=end, count=f"{end}/{len(messages)}")
        finally:
            sink.close()
    return rejected


# Redrawn in place: its lines are cut at the width, never left to the terminal to wrap.
_bar_console = plain_console(stderr=True, soft_wrap=False)


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<40}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        console=_bar_console,
    )


class _RichProgress:
    """The load test's display: a status line and two bars, on stderr."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}

    def status(self, text: str) -> None:
        if "status" not in self.tasks:
            self.tasks["status"] = self.bar.add_task(text, total=None, count="")
        self.bar.update(self.tasks["status"], description=text)

    def _task(self, name: str, total: int) -> Any:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total, count="")
        return self.tasks[name]

    def published(self, done: int, total: int) -> None:
        self.bar.update(self._task("published", total), completed=done, count=f"{done}/{total}")

    def processed(self, done: int, total: int) -> None:
        self.bar.update(self._task("queryable", total), completed=done, count=f"{done}/{total}")


def loadtest(
    events: int = typer.Option(1000, "--events", "-n", min=1, help="Messages to publish."),
    rate: float = typer.Option(100.0, "--rate", "-r", min=0, help="Messages/s (0: unpaced)."),
    via: str = typer.Option("broker", "--via", help="broker, or http (the collector at --url)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Worker processes."),
    start_workers: bool | None = typer.Option(
        None,
        "--start-workers/--no-start-workers",
        help="Run the workers here (default: on the local backend or an emulator).",
    ),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="Collector, for --via http."),
    timeout: float = typer.Option(
        120.0, "--timeout", min=1, help="Seconds after the last publish for events to show up."
    ),
    warmup: float = typer.Option(
        30.0, "--warmup", min=0, help="At most this long for the workers to start pulling."
    ),
    users: int | None = typer.Option(None, "--users", min=1, help="Default: max(100, N/800)."),
    start: str | None = typer.Option(
        None, "--start", help="Simulated start (epoch s or ISO 8601); default: ends now."
    ),
    seed: int | None = SeedOption,
    duplicate_rate: float = DuplicateOption,
    late_rate: float = LateOption,
    malformed_rate: float = MalformedOption,
    bot_rate: float = BotOption,
    funnel_dropoff: str = FunnelOption,
    mean_page_views: float = PageViewsOption,
    mean_gap: float = GapOption,
    run_verify: bool = typer.Option(True, "--verify/--no-verify", help="Run verify at the end."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Publish generated traffic at a rate, wait until every event is queryable, and report the
    achieved rate, publish → queryable latency, duplicates absorbed, rejects and verify. Exits 1
    if an event is missing or counted twice, 2 if the test could not run."""
    if via not in ("broker", "http"):
        fail(f"--via {via!r}: expected broker or http", 2)
    if via == "http":
        require_collector(url, code=2)
    settings = _settings()
    with user_errors(ValueError, LoadTestError, failed_code=2):
        model = _model(
            events, users or default_users(events), seed, duplicate_rate, late_rate,
            malformed_rate, bot_rate, funnel_dropoff, mean_page_views, mean_gap,
        )  # fmt: skip
        options = LoadTestOptions(
            events=events,
            rate=rate,
            via=via,  # type: ignore[arg-type]  # broker or http: checked above
            workers=workers,
            start_workers=start_workers,
            url=url,
            timeout_s=timeout,
            warmup_s=warmup,
            run_verify=run_verify,
            start=_start(start),
            generator=model,
        )
        report = _run(settings, options)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _run(settings: Settings, options: LoadTestOptions) -> LoadTestReport:
    from behavioral_analytics.aggregation import Periods
    from behavioral_analytics.wiring import open_configured

    # Not a deployment on Google Cloud: the local broker, or the emulators.
    local = settings.backend == "local" or bool(os.environ.get("PUBSUB_EMULATOR_HOST"))
    start_workers = local if options.start_workers is None else options.start_workers
    if start_workers:  # refused here once, not by each worker at its start
        check_local_store(settings, for_writing=True)
    # The configuration recorded with the data: verify recounts by it, in its time zone.
    settings, store = open_configured(settings)
    broker = build_broker(settings)
    if local:
        broker.init()
    else:
        # A deployment's topic and subscriptions are its own: `init` would set their delivery
        # settings to this shell's (BA_MAX_DELIVERY_ATTEMPTS, ...).
        broker.ping()
    sink: Sink = (
        BrokerSink(broker)
        if options.via == "broker"
        else HttpSink(options.url, os.environ.get("BA_WRITE_KEY"))
    )
    verify = _verifier(settings, Periods(settings.timezone)) if options.run_verify else None
    # Workers started here are local processes (often against emulators): they do not export
    # to Cloud Monitoring unless asked to explicitly.
    env = {**os.environ}
    env.setdefault("BA_METRICS_EXPORTER", "none")
    pool = WorkerProcesses(options.workers, env) if start_workers else None
    try:
        with _bar() as bar:
            return run_loadtest(
                options,
                backend=settings.backend,
                store=store,
                sink=sink,
                limits=settings.limits,
                workers=pool,
                verify=verify,
                progress=_RichProgress(bar),
            )
    finally:
        if options.via == "http":
            broker.close()
        store.close()


def _verifier(settings: Settings, periods: Any) -> Callable[[Any], Any]:
    from behavioral_analytics.verification import verify
    from behavioral_analytics.wiring import open_configured

    retention_s = settings.raw_retention_days * 86400.0

    def run(store: Any) -> Any:
        # By the configuration recorded now, not the one read when the run began: beside live
        # traffic (`up`, production) another process may have recorded more meanwhile (its
        # funnels, its breakdown dimensions), and those are counted from the raw events too.
        _, recorded = open_configured(settings)
        try:
            return verify(
                recorded,
                periods,
                now=time.time(),
                retention_s=retention_s,
                limits=settings.limits,
            )
        finally:
            recorded.close()

    return run


def _print_report(report: LoadTestReport) -> None:
    doc = report.to_dict()
    table = TextTable(title=f"load test · {report.backend} · via {report.via}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    lat = doc["latency_s"]
    rows = [
        (
            "messages",
            f"{report.messages} (seed {report.seed}; workers: "
            f"{report.workers or 'not started here'})",
        ),
        ("run", f"{report.run_id}: type {report.event_type}, users {report.user_prefix}…"),
        (
            "rate",
            f"{doc['rate']['achieved']}/s achieved of {report.rate_target:g}/s "
            f"({doc['rate']['publish_s']} s)",
        ),
        (
            "events",
            f"{report.expected_events} distinct · {report.found} queryable · "
            f"{report.missing} missing · {report.counted_extra} counted extra",
        ),
        ("", f"{report.late_sent} late · {report.bot_events} from crawlers"),
        ("duplicates", f"{report.duplicates_sent} sent · {report.duplicates_absorbed} absorbed"),
        (
            "rejects",
            f"{report.rejects_recorded} recorded of {report.rejects_expected} expected "
            + (
                "(" + ", ".join(f"{k} {v}" for k, v in report.rejects_by_reason.items()) + ")"
                if report.rejects_by_reason
                else ""
            ),
        ),
        (
            "latency",
            "publish → queryable: "
            + (
                " · ".join(
                    f"{name} {lat[name] * 1000:.0f} ms" for name in ("p50", "p95", "p99", "max")
                )
                if lat
                else "-"
            ),
        ),
        (
            "drain",
            "-" if report.drain_s is None else f"{report.drain_s:.2f} s after the last publish",
        ),
        (
            "verify",
            "skipped"
            if report.verify is None
            else (
                "ok" if report.verify.get("ok") else f"drift ({report.verify.get('drift_count')})"
            ),
        ),
    ]
    if report.already_stored:
        rows.append(("note", f"{report.already_stored} events were already stored (same run)"))
    for name, value in rows:
        table.add_row(name, value)
    out_console.print(table)
    for problem in report.problems:
        out_console.print(Text.assemble(("problem:", "red"), f" {problem}"))
    if report.worker_log:
        out_console.print(f"worker log: {report.worker_log}", highlight=False)
    out_console.print(Text("ok", "green") if report.ok else Text("FAILED", "red"))


def _recipe_backend_hint(prog_name: str) -> None:
    """The recipe runs its scripts after deploying with PROJECT_ID exported, and expects them to
    reach that deployment; they go where the settings say (local unless BA_BACKEND=gcp). When
    PROJECT_ID is set and the settings say local, one line on stderr says so, and how to reach
    the project."""
    project = os.environ.get("PROJECT_ID")
    if not project or "--help" in sys.argv or "ndjson" in sys.argv or "--via=ndjson" in sys.argv:
        return
    try:
        backend = load_settings().backend
    except ConfigError:
        return  # the command itself says what is wrong
    if backend == "local":
        err_console.print(
            Text.assemble(
                ("note:", "yellow"),
                f" {prog_name} uses the local broker; PROJECT_ID is set: to send to that "
                f"project's Pub/Sub, export BA_BACKEND=gcp GOOGLE_CLOUD_PROJECT={project}",
            ),
            soft_wrap=True,
        )


def script_main(command: Callable[..., Any], defaults: dict[str, Any], prog_name: str) -> None:
    """Run one command as a whole program with other defaults (by parameter name), as the
    repository's scripts do; the user's options still win and --help shows the defaults."""
    _recipe_backend_hint(prog_name)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(context_settings={"default_map": defaults})(command)
    app(prog_name=prog_name)
