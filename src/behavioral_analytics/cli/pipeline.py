"""`init`, `publish` and `worker`: set up the broker and the store, publish NDJSON, and run
the workers — in this process, or as child processes (`spawn_workers`, which `up` uses too)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import typer

from behavioral_analytics.broker import OutgoingMessage
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.shared import console, load_config, plural
from behavioral_analytics.telemetry import WorkerMetrics, configure_logging
from behavioral_analytics.wiring import build_broker, build_exporter, build_store, build_worker
from behavioral_analytics.worker import WorkerStageFailed

__all__ = ["init", "publish", "spawn_workers", "stop_processes", "worker"]


def init() -> None:
    """Create the topic, subscription, dead-letter path and store if missing."""
    config = load_config()
    new_folder = config.backend == "local" and not config.data_dir.exists()
    if new_folder:
        console.print(f"• created the data folder {config.data_dir}")
    with user_errors():
        broker, store = build_broker(config), build_store(config)
        for line in [*broker.init(), *store.init()]:
            if new_folder:
                # The local broker creates its topic and subscription when it opens its
                # file, so its own report says "exists" for what this command just made.
                line = line.replace(": exists", ": created")
            console.print(f"• {line}")
        console.print(f"[green]ready[/green] (backend {config.backend})")


def publish(
    source: str = typer.Argument("-", metavar="[FILE|-]", help="NDJSON file, or - for stdin."),
    batch_size: int = typer.Option(1000, min=1, max=10000, help="Messages per publish call."),
    ordering_key: str | None = typer.Option(None, help="Ordering key for every message."),
) -> None:
    """Publish NDJSON lines as they are, one message per line (malformed lines included: the
    worker dead-letters them with a reason)."""
    config = load_config()
    stream = sys.stdin.buffer if source == "-" else _open_input(source)
    with user_errors(), stream:
        broker = build_broker(config)
        sent = 0
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
    where = f" ({config.data_dir})" if config.backend == "local" else ""
    err_console.print(f"published {plural(sent, 'message')} to {config.pubsub_topic}{where}")


def _open_input(source: str) -> IO[bytes]:
    """`publish`'s input file; one line (`cannot read FILE: reason`) and exit 2 when it
    cannot be opened, before the broker (and a local data folder) is made."""
    try:
        return Path(source).open("rb")
    except OSError as exc:
        fail(f"cannot read {source}: {(exc.strerror or str(exc)).lower()}", 2)


def _worker_process(until_idle: bool, drain: bool) -> None:
    config = load_config()
    if until_idle and config.pubsub_pull == "streaming":
        # A run until idle takes what is there, then stops. A unary pull hands over exactly
        # what the worker commits; a stream buffers ahead, and closing it strands or gives
        # back what it held (the emulator keeps sending to a closed stream).
        config = config.model_copy(update={"pubsub_pull": "sync"})
    configure_logging(config.log_level)

    with user_errors():
        broker, store = build_broker(config), build_store(config)
        metrics = WorkerMetrics()
        exporter = build_exporter(config)
        if exporter is not None:
            exporter.start(metrics)
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker = build_worker(config, broker, store, metrics=metrics, drain_dead_letters=drain)
        try:
            worker.run(stop, until_idle=until_idle)
        except WorkerStageFailed as exc:
            fail(f"worker stopped: {exc}")
        finally:
            if exporter is not None:
                exporter.close()
            broker.close()
            store.close()


def spawn_workers(
    count: int, extra: list[str], log_file: IO[bytes] | None = None
) -> list[subprocess.Popen[bytes]]:
    """`count` single-worker child processes (`python -m behavioral_analytics.cli worker`)
    with the `extra` arguments; only the first drains the broker's dead letters. Their output
    goes to `log_file`, or is inherited when None."""
    command = [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--workers", "1"]
    return [
        subprocess.Popen(
            [*command, *extra, *([] if i == 0 else ["--no-drain"])],
            stdout=log_file,
            stderr=log_file,
        )
        for i in range(count)
    ]


def stop_processes(children: list[subprocess.Popen[bytes]], grace_s: float = 8.0) -> None:
    """SIGTERM every child still running, and kill those not gone within `grace_s` seconds
    (the workers' drain takes at most 8 s)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


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
    children = spawn_workers(workers, ["--until-idle"] if until_idle else [])
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.is_set() and any(c.poll() is None for c in children):
        stopping.wait(0.2)
    stop_processes(children)
    codes = [c.returncode for c in children]
    if any(code not in (0, -signal.SIGTERM) for code in codes):
        fail(f"worker processes exited with {codes}")
