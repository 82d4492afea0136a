"""`up`: the local stack in one command — worker processes, the API and dashboard in a child
process, demo traffic from a thread (`live_traffic`: the load generator's model in real time),
and the live terminal view (`cli.live_view`), until Ctrl-C. Children write to `$BA_DATA_DIR/up.log`;
stopping drains the workers.

The API's address is checked before anything starts, so a second `up` on a port in use stops
with one line instead of doubling the traffic (one on another port, or without the API, on
the same data folder is warned about: `up.pid`, locked while an `up` runs); a child that dies
later (the API losing a race for its port, a worker crashing) stops `up` with one line and
exit 1."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import typer
from rich.text import Text

from behavioral_analytics.broker import Broker, OutgoingMessage
from behavioral_analytics.cli.errors import err_console, fail, user_errors
from behavioral_analytics.cli.live_view import TrafficStats
from behavioral_analytics.cli.pipeline import (
    first_exit,
    spawn_workers,
    stop_processes,
    stopped_by_signal,
)
from behavioral_analytics.cli.shared import check_address, console, load_config, plural
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.live_traffic import LiveTraffic, describe, live_traffic, scheduled_events
from behavioral_analytics.settings import Settings
from behavioral_analytics.wiring import build_broker_and_store

__all__ = ["up"]

_TICK_S = 0.1


def up(
    workers: int = typer.Option(
        2, "--workers", "-n", min=1, max=16, help="Worker processes to start."
    ),
    rate: float = typer.Option(20.0, "--rate", "-r", min=0, help="Demo events/s (0: none)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the demo traffic."),
    api: bool = typer.Option(True, "--api/--no-api", help="Serve the API and dashboard too."),
    port: int | None = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="API port (default PORT or BA_API_PORT)."
    ),
) -> None:
    """The local stack: workers, demo traffic and a live view, until Ctrl-C."""
    from behavioral_analytics.cli.live_view import run_live_view

    config = load_config()
    if "funnels" not in config.model_fields_set:
        # The demo traffic walks the generator's purchase funnel: show it.
        os.environ["BA_FUNNELS"] = PURCHASE_FUNNEL
        config = load_config()
    if port is not None:
        config = config.model_copy(update={"api_port": port})
    if api:
        check_address(config.api_host, config.api_port)
    if config.backend != "local":
        err_console.print(
            Text.assemble(("note:", "yellow"), f" running against BA_BACKEND={config.backend}")
        )
    with user_errors():
        broker, store = build_broker_and_store(config)
    claim, other = _claim(config.data_dir) if config.backend == "local" else (None, None)
    if claim is not None and other is not None:
        threading.Thread(target=_take_over, args=(claim,), daemon=True).start()
        err_console.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" another `up` (pid {other or '?'}) runs on {config.data_dir}: both send demo "
                "traffic as the same users and write up.log; stop one unless you want both",
            ),
            soft_wrap=True,
        )
    plan = live_traffic(rate, seed) if rate > 0 else None
    log_path = config.data_dir / "up.log"
    log_file = log_path.open("ab")
    children = spawn_workers(workers, [], log_file)
    api_url = api_process = None
    if api:
        api_process, api_url = _start_api(config, log_file)
        if api_process is not None:
            children.append(api_process)
    stop = threading.Event()
    stats = TrafficStats(target_rate=rate, description=describe(plan) if plan else None)
    died: list[str] = []
    threading.Thread(target=_watch, args=(children, api_process, stop, died), daemon=True).start()
    if plan is not None:
        threading.Thread(target=_traffic, args=(broker, plan, stats, stop), daemon=True).start()
    if not console.is_terminal:
        _announce(config, workers, api_url, log_path, describe(plan) if plan else None)
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, `timeout`: stop as Ctrl-C does
    try:
        run_live_view(
            config,
            store,
            broker,
            stop,
            api_url=api_url,
            traffic=stats if plan else None,
            workers=workers,
            log=log_path,
        )
    except KeyboardInterrupt:
        interrupted = True  # the children got the signal too: their exits are expected
    finally:
        stop.set()
        # A second Ctrl-C must not cut the drain short (the children stop on the first).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not console.is_terminal:  # the live view's last frame ends without a line break
            print(flush=True)
        err_console.print("stopping: draining workers…")
        stop_processes(children)
        log_file.close()
        if claim is not None:
            claim.close()
        err_console.print(f"stopped; logs in {log_path} (data in {config.data_dir})")
    if died and not interrupted:
        reason = _last_error(log_path)
        fail(f"{died[0]}{f' ({reason})' if reason else ''}; see {log_path}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _last_error(log: Path) -> str | None:
    """The last `error: …` line the children wrote to `log` (a worker's reason to exit)."""
    with log.open("rb") as file:
        file.seek(max(0, file.seek(0, 2) - 65536))
        lines = file.read().decode(errors="replace").splitlines()
    found = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return found[-1] if found else None


def _announce(
    config: Settings, workers: int, api_url: str | None, log: Path, traffic: str | None
) -> None:
    """Where to look, printed and flushed at once when stdout is not a terminal: the live
    view then draws only its last frame, at exit, so `up > file &` would show nothing."""
    where = f"dashboard {api_url} · " if api_url else ""
    print(
        f"up: {where}{plural(workers, 'worker')} · backend {config.backend} · "
        f"data {config.data_dir} · logs {log}",
        flush=True,
    )
    if traffic:
        print(traffic, flush=True)


def _start_api(
    config: Settings, log_file: IO[bytes]
) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    try:
        import behavioral_analytics.api.server  # noqa: F401
    except ImportError as exc:
        err_console.print(
            Text.assemble(("no API/dashboard", "yellow"), f" ({exc}): pip install '.[api]'")
        )
        return None, None
    process = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "api", "--port", str(config.api_port)],
        stdout=log_file,
        stderr=log_file,
    )
    return process, f"http://{config.api_host}:{config.api_port}/"


def _watch(
    children: list[subprocess.Popen[bytes]],
    api_process: subprocess.Popen[bytes] | None,
    stop: threading.Event,
    died: list[str],
) -> None:
    """Stop `up` when a child exits (`pipeline.first_exit`, as `worker --workers N` does); one
    that failed says so in `died`."""
    exited = first_exit(children, stop)
    if exited is None:
        return
    child = children[exited]
    code = child.poll()
    # Stopped by a signal (Ctrl-C reaches the children as well as `up`): not a failure.
    if code is not None and not stopped_by_signal(code):
        role = "the API" if child is api_process else "a worker"
        died.append(f"{role} exited with code {code}")


def _traffic(broker: Broker, plan: LiveTraffic, stats: TrafficStats, stop: threading.Event) -> None:
    """Publish each demo event when its moment comes, stamped with that moment."""
    wall_start, clock_start = time.time(), time.monotonic()
    due: list[OutgoingMessage] = []
    for offset_s, payload in scheduled_events(plan, wall_start):
        if stop.is_set():
            return
        wait_s = offset_s - (time.monotonic() - clock_start)
        if wait_s > 0:
            _send(broker, due, stats)
            due = []
            if stop.wait(max(wait_s, _TICK_S)):
                return
        payload["timestamp"] = round(wall_start + offset_s, 3)
        due.append(OutgoingMessage(json.dumps(payload).encode()))
        if len(due) >= 1000:
            _send(broker, due, stats)
            due = []


def _send(broker: Broker, messages: list[OutgoingMessage], stats: TrafficStats) -> None:
    if not messages:
        return
    try:
        broker.publish(messages)
    except Exception as exc:
        stats.failed(len(messages), str(exc))
    else:
        stats.published(len(messages))


def _claim(folder: Path) -> tuple[IO[str], int | None]:
    """The data folder's `up.pid`, locked (`flock`) for as long as the returned file stays
    open, which the system ends with the process however it ends; and the pid of another `up`
    holding it (0 when it wrote none yet), None when none does."""
    handle = (folder / "up.pid").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        text = handle.read().strip()
        return handle, int(text) if text.isdigit() else 0
    _write_pid(handle)
    return handle, None


def _take_over(handle: IO[str]) -> None:
    """Wait for the `up` that holds the data folder's `up.pid` (`_claim`) to end, then hold it
    and write this process's pid: a later `up` is then told of this one. Returns quietly if the
    file is closed meanwhile."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _write_pid(handle)
    except (OSError, ValueError):
        return


def _write_pid(handle: IO[str]) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
