"""`init`, `publish` and `worker`: set up the broker and the store, publish NDJSON, and run
the workers — in this process, or as child processes (`spawn_workers`, `first_exit` and
`stop_processes`, which `up` uses too: a child exiting on its own stops them all)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec
import typer
from rich.text import Text

from behavioral_analytics.broker import BrokerError, OutgoingMessage
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.shared import console, load_config, plural
from behavioral_analytics.telemetry import WorkerMetrics, configure_logging
from behavioral_analytics.wiring import (
    build_broker,
    build_broker_and_store,
    build_exporter,
    build_worker,
    check_local_store,
    local_broker_path,
)
from behavioral_analytics.worker import WorkerStageFailed

__all__ = [
    "EMPTY_LINE",
    "exit_reason",
    "first_exit",
    "init",
    "publish",
    "spawn_workers",
    "stop_processes",
    "stopped_by_signal",
    "worker",
]


def init() -> None:
    """Create the topic, subscription, dead-letter path and store if missing."""
    config = load_config()
    local = config.backend == "local"
    new_folder = local and not config.data_dir.exists()
    broker_file = local_broker_path(config)
    new_broker = local and (not broker_file.exists() or broker_file.stat().st_size == 0)
    with user_errors():
        broker, store = build_broker_and_store(config)
        if new_folder:
            console.print(f"• created the data folder {config.data_dir}")
        # The local broker creates its topic and subscription when it opens its file, so its
        # own report says "exists" for what this command just made.
        made = [
            line.replace(": exists", ": created") if new_broker else line for line in broker.init()
        ]
        for line in [*made, *store.init()]:
            console.print(f"• {line}")
        console.print(Text.assemble(("ready", "green"), f" (backend {config.backend})"))


def publish(
    source: str = typer.Argument("-", metavar="[FILE|-]", help="NDJSON file, or - for stdin."),
    batch_size: int = typer.Option(1000, min=1, max=10000, help="Messages per publish call."),
    ordering_key: str | None = typer.Option(None, help="Ordering key for every message."),
) -> None:
    """Publish NDJSON lines as they are, one message per line (malformed lines included: the
    worker dead-letters them with a reason, a blank one as empty_message; the newline ending
    the input is not a line)."""
    config = load_config()
    stream = sys.stdin.buffer if source == "-" else _open_input(source)
    with user_errors(), stream:
        broker = build_broker(config)
        sent = 0
        first = 1  # the input line of pending[0]
        pending: list[OutgoingMessage] = []
        not_objects = 0  # lines, blank ones aside, that no worker will take as an event
        try:
            for number, raw in enumerate(stream, 1):
                line = raw.rstrip(b"\r\n")
                # Pub/Sub refuses a message with neither data nor attributes ("Some messages
                # are empty"), and the whole batch with it: an empty line carries its number,
                # and so does a blank one, for `dlq list` to say where it was.
                attributes = {} if line.strip() else {EMPTY_LINE: str(number)}
                not_objects += bool(line.strip()) and not _is_object(line)
                pending.append(OutgoingMessage(line, attributes, ordering_key=ordering_key))
                if len(pending) >= batch_size:
                    sent += len(broker.publish(pending))
                    pending, first = [], number + 1
            if pending:
                sent += len(broker.publish(pending))
        except BrokerError as exc:
            raise BrokerError(f"{exc}; {_resume_hint(sent, first, source)}") from exc
        broker.close()
    where = f" ({config.data_dir})" if config.backend == "local" else ""
    err_console.print(f"published {plural(sent, 'message')} to {config.pubsub_topic}{where}")
    if not_objects:
        err_console.print(
            Text.assemble(
                ("note:", "yellow"),
                f" {plural(not_objects, 'line')} of the input {'is' if not_objects == 1 else 'are'}"
                " not a JSON object: publish takes one event per line (NDJSON; an array or a "
                "document over several lines is not), and the worker dead-letters each such "
                "line with its reason (`dlq list`)",
            )
        )


# The attribute of a message published for an empty or blank input line: the line's number.
EMPTY_LINE = "ba_empty_line"


def _is_object(line: bytes) -> bool:
    """Whether `line` is one JSON object (what an event is, docs/events.md); its contents are
    the worker's to judge."""
    try:
        return isinstance(msgspec.json.decode(line), dict)
    except msgspec.DecodeError:
        try:  # what msgspec refuses and a lenient reader takes: `1e400`, `NaN`
            return isinstance(json.loads(line), dict)
        except (ValueError, RecursionError):
            return False
    except RecursionError:
        # Nested deeper than the decoder follows (the worker refuses it as `too_deep`).
        return line.lstrip()[:1] == b"{"


def _resume_hint(sent: int, first: int, source: str) -> str:
    """What a publish stopped by an error had done, and how to go on without sending the lines
    before `first` (the first line of the batch that failed) again."""
    done = (
        f"lines 1-{first - 1} were published ({plural(sent, 'message')})"
        if sent
        else ("nothing was published")
    )
    if not sent:
        return done
    command = "behavioral-analytics publish -"
    if source == "-":
        return f"{done}; to go on, send the input from line {first} on to `{command}`"
    return f"{done}; to go on from line {first}: tail -n +{first} {source} | {command}"


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
        broker, store = build_broker_and_store(config)
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


def first_exit(
    children: Sequence[subprocess.Popen[bytes]],
    stop: threading.Event,
    *,
    finished_ok: bool = False,
    interval_s: float = 0.5,
) -> int | None:
    """Wait until `stop` is set or a child exits; return the index of the first child that
    exited, or None when `stop` was set first. With `finished_ok` a child that exits 0 has
    finished its work (`worker --until-idle`): the others are waited for, and None is returned
    once every one has. Sets `stop` before returning. The supervision of `worker --workers N`
    and of `up` (which runs it in a thread beside its live view)."""
    try:
        while not stop.wait(interval_s):
            running = False
            for index, child in enumerate(children):
                code = child.poll()
                if code is None:
                    running = True
                elif not (finished_ok and code == 0):
                    return index
            if not running:
                return None
        return None
    finally:
        stop.set()


def stopped_by_signal(code: int) -> bool:
    """Whether a child's exit code is that of a stop asked by SIGINT or SIGTERM: it drained
    and exited 0, or the signal came before its handler was set. Ctrl-C reaches every process
    of the terminal's group, so a child may exit so before its parent sees its own interrupt."""
    return code in (0, -signal.SIGINT, -signal.SIGTERM)


def exit_reason(code: int) -> str:
    """`code -9 (SIGKILL)`: a child's exit code, with the signal's name when one killed it."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


def stop_processes(
    children: Sequence[subprocess.Popen[bytes]], grace_s: float = 8.0, reap_s: float = 5.0
) -> None:
    """SIGTERM every child still running, and SIGKILL those not gone within `grace_s` seconds
    (the workers' drain takes at most 8 s), waiting at most `reap_s` more for each of them."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            try:
                child.wait(reap_s)
            except subprocess.TimeoutExpired:
                err_console.print(
                    Text.assemble(("note:", "yellow"), f" process {child.pid} outlived SIGKILL")
                )


def worker(
    workers: int = typer.Option(1, "--workers", "-n", min=1, max=64, help="Worker processes."),
    until_idle: bool = typer.Option(
        False,
        "--until-idle",
        help="Exit once every message published before it started is acked (by it or by "
        "another worker); on Pub/Sub, once the subscription has had nothing to deliver for "
        "2 s.",
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
    # What each process would refuse at its start, refused once, before any starts.
    config = load_config()
    with user_errors():
        build_broker(config).close()
        check_local_store(config, for_writing=True)
    children = spawn_workers(workers, ["--until-idle"] if until_idle else [])
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A child exiting on its own (a crash, SIGKILL, the out-of-memory killer) stops them all,
    # with exit 1: running on with fewer workers, or none moving the dead letters, would
    # go unnoticed by a supervisor that restarts a command that fails.
    exited = first_exit(children, stopping, finished_ok=until_idle, interval_s=0.2)
    if exited is not None:
        code = children[exited].returncode
        err_console.print(
            Text.assemble(
                ("error:", "red"),
                f" {_worker_name(exited, children)} exited with {exit_reason(code)}; "
                "stopping the other workers",
            ),
            soft_wrap=True,
        )
        stop_processes(children)
        raise typer.Exit(1)
    stop_processes(children)
    codes = [c.returncode for c in children]
    if any(code not in (0, -signal.SIGTERM) for code in codes):
        fail(f"worker processes exited with {codes}")


def _worker_name(index: int, children: Sequence[subprocess.Popen[bytes]]) -> str:
    """`worker 1 of 2 (pid 123, the one moving the broker's dead letters)`."""
    role = ", the one moving the broker's dead letters into the store" if index == 0 else ""
    return f"worker {index + 1} of {len(children)} (pid {children[index].pid}{role})"
