"""A load test's run: what should happen (`Expected`), the options, the report, and
`run_loadtest`, which publishes, waits until every event is queryable and judges the result.

Each run marks its messages as its own (`marking`: the event type `loadtest.<run id>`, a user-id
prefix) and judges itself only by its own records: its events found by their dedupe keys, its
type's count in the daily aggregates, its rejected messages among the dead letters recorded
since it began. A backlog of other messages, or live traffic on the same store, changes none of
these."""

import math
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from behavioral_analytics.bots import bot_name, is_bot
from behavioral_analytics.events import Event, Limits, parse_message
from behavioral_analytics.loadgen import GeneratorConfig, anchored_start, generate, with_seed
from behavioral_analytics.loadtest.marking import RunMark, new_run_id
from behavioral_analytics.loadtest.sinks import (
    BROKER_BATCH,
    HTTP_BATCH,
    LoadTestError,
    Pacer,
    Sink,
)
from behavioral_analytics.loadtest.workers import StoreProbe, WorkerProcesses
from behavioral_analytics.store import Store, StoredEvent

Via = Literal["broker", "http"]


# -- what should happen ---------------------------------------------------------------------


@dataclass(slots=True)
class Expected:
    """What the store must hold once the messages are processed, computed with the worker's
    own parser: the distinct dedupe keys (and who they belong to) and the rejections."""

    keys: dict[str, str] = field(default_factory=dict)  # dedupe key → who
    valid_messages: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    rejected_bodies: set[bytes] = field(default_factory=set)
    bots: int = 0  # distinct events from crawlers (counted apart from the types)

    @property
    def duplicates(self) -> int:
        return self.valid_messages - len(self.keys)


def expected_outcome(
    messages: Sequence[bytes], limits: Limits, received_at: float, spacing_s: float = 0.0
) -> Expected:
    """`received_at + i * spacing_s` is when message i is expected to be published: the time
    checks (future skew, maximum age) depend on it."""
    expected = Expected()
    for index, data in enumerate(messages):
        result = parse_message(
            data,
            message_id=f"m{index}",
            received_at=received_at + index * spacing_s,
            limits=limits,
        )
        if isinstance(result, Event):
            expected.valid_messages += 1
            if result.key not in expected.keys and bot_name(result.properties) is not None:
                expected.bots += 1
            expected.keys[result.key] = result.who
        else:
            expected.rejects[result.reason] += 1
            expected.rejected_bodies.add(data)
    return expected


# -- sending --------------------------------------------------------------------------------


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadTestOptions:
    events: int = 1000
    rate: float = 100.0  # messages/s; 0 = as fast as possible
    via: Via = "broker"
    workers: int = 1
    start_workers: bool | None = None  # None: yes on the local backend or an emulator
    url: str = "http://127.0.0.1:8080"
    write_key: str | None = None
    timeout_s: float = 120.0  # after the last publish, for every event to become queryable
    warmup_s: float = 30.0  # at most, for the started workers to be pulling
    run_verify: bool = True
    start: float | None = None  # simulated start; None: the run's last message is sent now
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    run_id: str | None = None  # None: a new random one (`marking.new_run_id`)


@dataclass(slots=True)
class LoadTestReport:
    backend: str
    via: str
    workers: int | None  # None: workers not started by the load test
    seed: int | None = None
    run_id: str = ""
    event_type: str = ""  # the run's own event type
    user_prefix: str = ""
    messages: int = 0
    rate_target: float = 0.0
    rate_achieved: float = 0.0
    publish_s: float = 0.0
    expected_events: int = 0  # distinct events among the messages
    already_stored: int = 0  # of those, present before the run (a re-run with the same seed)
    duplicates_sent: int = 0
    duplicates_absorbed: int = 0  # duplicates sent that did not add to any count
    late_sent: int = 0
    bot_events: int = 0
    found: int = 0
    missing: int = 0
    counted_extra: int = 0  # change of the run's type's aggregate beyond its new human events
    rejects_expected: int = 0
    rejects_recorded: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    drain_s: float | None = None  # last publish → last event committed
    latency_s: dict[str, float] = field(default_factory=dict)
    verify: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    worker_log: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "via": self.via,
            "workers": self.workers,
            "seed": self.seed,
            "run_id": self.run_id,
            "event_type": self.event_type,
            "user_prefix": self.user_prefix,
            "messages": self.messages,
            "rate": {
                "target": self.rate_target,
                "achieved": round(self.rate_achieved, 1),
                "publish_s": round(self.publish_s, 3),
            },
            "events": {
                "expected": self.expected_events,
                "already_stored": self.already_stored,
                "found": self.found,
                "missing": self.missing,
                "counted_extra": self.counted_extra,
                "late": self.late_sent,
                "bot": self.bot_events,
            },
            "duplicates": {"sent": self.duplicates_sent, "absorbed": self.duplicates_absorbed},
            "rejects": {
                "expected": self.rejects_expected,
                "recorded": self.rejects_recorded,
                "by_reason": self.rejects_by_reason,
            },
            "drain_s": None if self.drain_s is None else round(self.drain_s, 3),
            "latency_s": {k: round(v, 4) for k, v in self.latency_s.items()},
            "verify": self.verify,
            "problems": self.problems,
            "worker_log": self.worker_log,
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50/p95/p99, max and mean; empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * n) - 1)]

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": ordered[-1],
        "mean": sum(ordered) / n,
        "count": float(n),
    }


class Progress(Protocol):
    """What the run tells its display (rich in the CLI; nothing in tests)."""

    def status(self, text: str) -> None: ...

    def published(self, done: int, total: int) -> None: ...

    def processed(self, done: int, total: int) -> None: ...


class _Silent:
    def status(self, text: str) -> None:
        pass

    def published(self, done: int, total: int) -> None:
        pass

    def processed(self, done: int, total: int) -> None:
        pass


def default_users(events: int) -> int:
    """Enough users that their simulated history stays within a week (about 800 each)."""
    return max(100, math.ceil(events / 800))


def run_loadtest(
    options: LoadTestOptions,
    *,
    backend: str,
    store: Store,
    sink: Sink,
    limits: Limits,
    workers: WorkerProcesses | None,
    verify: Callable[[Store], Any] | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> LoadTestReport:
    """Run one load test against the given store and sink. `workers` is started here and
    stopped before returning; `verify(store)` returns an object with `.ok` and `.to_dict()`."""
    show = progress or _Silent()
    report = LoadTestReport(
        backend=backend,
        via=options.via,
        workers=workers.count if workers else None,
        rate_target=options.rate,
    )
    show.status("generating events")
    config = with_seed(replace(options.generator, events=options.events))
    report.seed = config.seed
    now = clock()
    start = options.start if options.start is not None else anchored_start(config, now)
    generated = generate(replace(config, start=start))
    mark = RunMark(options.run_id or new_run_id())
    report.run_id, report.event_type, report.user_prefix = (
        mark.run_id,
        mark.event_type,
        mark.user_prefix,
    )
    messages = mark.mark(m.data for m in generated.messages)
    if generated.span_s > limits.max_age_s * 0.8:
        raise LoadTestError(
            f"{options.events} events from {config.users} users span "
            f"{generated.span_s / 86400:.0f} days, close to the event age limit: pass more --users"
        )
    spacing = 1.0 / options.rate if options.rate > 0 else 0.0
    expected = expected_outcome(messages, limits, now, spacing)
    counts = generated.counts()
    report.messages = len(messages)
    report.late_sent = counts["late"]
    report.bot_events = counts["bot"]

    probe = StoreProbe(store)
    show.status("reading the store")
    before = probe.find(expected.keys)
    own_before = probe.own_total(mark.event_type)
    # Dead letters are stamped by the workers' clocks: allow them a little skew.
    since = clock() - 5.0

    try:
        if workers is not None:
            show.status(f"starting {workers.count} worker(s)")
            workers.start()
            _warm_up(workers, options.warmup_s)
        # the worker checks times (future skew, maximum age) against the publish time
        expected = expected_outcome(messages, limits, clock(), spacing)
        report.expected_events = len(expected.keys)
        report.duplicates_sent = expected.duplicates
        report.rejects_expected = sum(expected.rejects.values())
        report.rejects_by_reason = dict(sorted(expected.rejects.items()))
        report.already_stored = sum(1 for key in expected.keys if key in before)
        new_keys = {k: who for k, who in expected.keys.items() if k not in before}
        show.status("publishing")
        rejected_on_the_way = 0
        pacer = Pacer(
            len(messages),
            options.rate,
            max_batch=HTTP_BATCH * 10 if options.via == "http" else BROKER_BATCH,
        )
        began = time.monotonic()
        for start, end in pacer.batches():
            rejected_on_the_way += sink.send(messages[start:end])
            show.published(end, len(messages))
            if workers is not None and not workers.alive():
                raise LoadTestError("the workers exited while publishing:\n" + workers.tail())
        published_at = time.monotonic()
        published_wall = clock()
        report.publish_s = published_at - began
        report.rate_achieved = len(messages) / report.publish_s if report.publish_s > 0 else 0.0
        sink.close()

        show.status("waiting until every event is queryable")
        found, drained = _wait_for(
            probe, new_keys, mark.event_type, own_before, since, expected, options, workers,
            show, rejected_on_the_way,
        )  # fmt: skip
        if drained and found:
            # when the last event was committed, not when the poll noticed
            last_commit = max(item.processed_at for item in found.values())
            report.drain_s = max(0.0, last_commit - published_wall)
    finally:
        if workers is not None:
            show.status("stopping the workers")
            code = workers.stop()
            if code not in (None, 0, -signal.SIGTERM):
                report.problems.append(f"the workers exited with code {code}")

    own_delta = probe.own_total(mark.event_type) - own_before
    humans = sum(1 for item in found.values() if not is_bot(item.event.properties))
    report.found = len(found) + report.already_stored
    report.missing = len(new_keys) - len(found)
    report.counted_extra = own_delta - humans
    report.duplicates_absorbed = max(0, expected.duplicates - max(0, report.counted_extra))
    own_dead = probe.own_dead_letters(expected.rejected_bodies, since)
    report.rejects_recorded = max(own_dead, rejected_on_the_way)
    report.latency_s = percentiles(
        [max(0.0, item.processed_at - item.event.received_at) for item in found.values()]
    )
    if report.missing:
        report.problems.append(
            f"{report.missing} events not queryable {options.timeout_s:g} s after the last publish"
        )
    if report.counted_extra:
        report.problems.append(
            f"{mark.event_type} counted {own_delta} times in the daily aggregates, expected "
            f"{humans} (its events not from crawlers): counted twice"
        )
    if report.rejects_recorded < report.rejects_expected:
        report.problems.append(
            f"{report.rejects_expected - report.rejects_recorded} rejected messages not recorded"
        )
    if verify is not None and options.run_verify:
        show.status("verifying the aggregates")
        result = verify(store)
        report.verify = result.to_dict()
        if not result.ok:
            report.problems.append("verify found drift between aggregates and raw events")
    if workers is not None:
        if report.ok:
            workers.discard_log()
        else:
            report.worker_log = str(workers.log_path)
    return report


def _warm_up(workers: WorkerProcesses, seconds: float) -> None:
    """Wait until the workers are pulling (so start-up is not counted as latency), at most
    `seconds`; then go on regardless."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not workers.alive():
            raise LoadTestError("the workers exited at start:\n" + workers.tail())
        if workers.ready():
            return
        time.sleep(0.1)


def _wait_for(
    probe: StoreProbe,
    keys: dict[str, str],
    event_type: str,
    own_before: int,
    since: float,
    expected: Expected,
    options: LoadTestOptions,
    workers: WorkerProcesses | None,
    show: Progress,
    rejected_on_the_way: int,
) -> tuple[dict[str, StoredEvent], bool]:
    """Poll until every new key is stored and the run's rejects are recorded, or the
    deadline."""
    deadline = time.monotonic() + options.timeout_s
    want_rejects = sum(expected.rejects.values()) - rejected_on_the_way
    found: dict[str, StoredEvent] = {}
    last_full = 0.0
    while True:
        now = time.monotonic()
        created = probe.own_total(event_type) - own_before
        show.processed(min(created, len(keys)), len(keys))
        cheap_done = created >= len(keys) - expected.bots
        if cheap_done or now - last_full >= 5.0 or now >= deadline:
            last_full = now
            found = probe.find(keys)
            recorded = probe.own_dead_letters(expected.rejected_bodies, since)
            if len(found) == len(keys) and recorded >= want_rejects:
                show.processed(len(keys), len(keys))
                return found, True
        if now >= deadline:
            return found, False
        if workers is not None and not workers.alive():
            found = probe.find(keys)
            return found, len(found) == len(keys)
        time.sleep(0.2)
