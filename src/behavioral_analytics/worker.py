"""The worker: pull a batch → validate → fold → commit → ack, between the two ports.

A batch is flushed when it holds `flush_max_events` messages or `flush_interval_s` after its
first message arrived; its raw events, aggregate deltas, dead letters and acks go together.
Messages are acked only after the commit that holds their effect.

Poison messages. Every message is judged alone (`delivery_parsing`): a message the core cannot
take (too deep, not JSON, or one whose parsing raises) becomes a dead letter with its reason,
committed with its batch-mates. A message that kills the process instead (out of memory, a
native crash) cannot be judged in-process; it is isolated by its delivery attempt
(`isolation.py` holds the schedule), parsed and committed by the committing thread with no
batch-mate in flight.

A fault in a stage of the worker (the feeder thread: pull, parse) is logged at ERROR and ends
`run` with `WorkerStageFailed`, so the process exits non-zero and the platform restarts it; it
never returns as if the work were done. So does a write that finds the store changed under the
worker (`ConfigChanged`: another configuration recorded by `config apply` or by a process that
added a funnel, or the files upgraded by a newer release): the batches it holds are given back,
and `run` raises it; the restarted process counts by what is recorded. A broker error marked
`permanent` (Pub/Sub's subscription does not exist) is raised as it is, not retried.

A stop (SIGTERM; Cloud Run allows about 10 s before SIGKILL) commits the batch in flight (or,
if none, the next one handed over) and any batch begun within `stop_grace_s` of a thread first
seeing it (each looks every 0.25 s). The rest is given back (`Broker.give_back`, its count
logged: a delivery attempt each where the broker counts them, no failure-log write on Pub/Sub;
on redelivery, `isolation.py`'s slower path), as are redelivered messages still in the feeder
and the halves of a failing batch; a commit failing then is not retried (it and all after it
go back). A commit still waiting for the store's write lock once the stop is `stop_grace_s` old
(SQLite: another worker process holds it) stops waiting (`Store.commit`'s `give_up`) and goes
back too, so workers sharing a store do not stop one commit each in turn; after a stop the
feeder hands over unparsed (the committer parses a batch only to commit it). So a slow store
stops one commit attempt after `stop_grace_s`, whatever the worker holds.

`--until-idle` gives nothing back unless stopped: once idle, it asks a broker that has one to
`stop_receiving` (Pub/Sub's streaming pull), then commits whatever was delivered before the
stream stopped, since every message given back costs a delivery attempt.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.broker import (
    Broker,
    BrokerError,
    Delivery,
    end_logged_by,
    is_permanent,
    logged_ends,
    was_reported,
)
from behavioral_analytics.broker_letters import to_dead_letter
from behavioral_analytics.delivery_parsing import parse_deliveries
from behavioral_analytics.events import DEFAULT_LIMITS, Event, Limits
from behavioral_analytics.isolation import isolation_units
from behavioral_analytics.stall_watch import StallWatch
from behavioral_analytics.store import (
    CommitAbandoned,
    CommitResult,
    ConfigChanged,
    EventSink,
    NewDeadLetter,
)
from behavioral_analytics.telemetry import WorkerMetrics, log

__all__ = ["Worker", "WorkerOptions", "WorkerStageFailed"]

_PULL_SLICE_S = 0.25  # how often the loop looks at the stop flag while waiting for messages
# Seconds of failed pulls in a row after which a run until idle gives up (exits 1).
UNTIL_IDLE_PULL_FAILURES_S = 30.0
_COMMIT_RETRIES = (0.1, 0.5, 1.5)
_CONFIG_CHANGED = "worker stopping: the store's configuration or layout changed"  # nack reason


class WorkerStageFailed(RuntimeError):
    """A stage of the worker (the feeder thread) died: the process must exit non-zero."""


@dataclass(frozen=True, slots=True)
class _Batch:
    deliveries: Sequence[Delivery]
    events: list[Event]
    dead_letters: list[NewDeadLetter]
    rejected: dict[str, int]
    # A redelivered message travels alone and unparsed: the committing thread parses it, so
    # that a message that kills the process does so with no batch-mate in flight. After a stop,
    # what the feeder hands over travels unparsed too (`_parsed_unless_stopped`).
    deferred: bool = False


_NO_BATCH = _Batch((), [], [], {})


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    flush_interval_s: float = 1.0
    flush_max_events: int = 5000
    ack_deadline_s: float = 60.0
    limits: Limits = DEFAULT_LIMITS
    drain_dead_letters: bool = True
    drain_interval_s: float = 5.0
    purge_interval_s: float = 600.0
    report_interval_s: float = 10.0
    stall_warning_s: float = 5.0  # a store or broker call blocked this long is logged
    idle_after_s: float = 2.0  # --until-idle: stop after this long with nothing to do
    stop_grace_s: float = 0.25  # after a stop, batches not begun by then are given back
    # Privacy scrubbing and bot flags, applied to each event before it is stored.
    rules: BehaviorRules = field(default_factory=BehaviorRules)


class Worker:
    def __init__(
        self,
        broker: Broker,
        store: EventSink,
        *,
        options: WorkerOptions | None = None,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.store = store
        self.options = options or WorkerOptions()
        self.metrics = metrics or WorkerMetrics()
        self._clock = clock
        self._stopped_at: float | None = None  # monotonic; when a thread first saw the stop
        self._stop = threading.Event()  # `run`'s
        # Parsing and committing take turns when a commit is CPU work in this process (`run`).
        in_process = getattr(store, "commits_in_process", False)
        self._turn_lock = threading.Lock() if in_process else None
        self._turn = self._turn_lock or contextlib.nullcontext()
        self._watch = StallWatch(
            lambda: self.metrics.snapshot().to_dict(),
            warn_after_s=self.options.stall_warning_s,
            report_interval_s=self.options.report_interval_s,
        )

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> None:
        """Process until `stop` is set (then drain as the module's docstring says), or, with
        `until_idle`, until every message published before it started is acked (by this
        worker or another one: new traffic, say from a running `up`, does not keep it going),
        or, where the broker cannot tell that, until the subscription has had nothing to
        deliver for a while.

        Two stages overlap: a feeder thread pulls and parses the next batch while this thread
        commits the previous one (SQLite and the gRPC clients release the GIL while they wait).
        A parsed batch waits in a queue of one: at most three are held (committing, queued, and
        the feeder's next). Where a commit is this process's CPU work (`Store.commits_in_process`:
        SQLite), the feeder parses only between commits: beside one it only took turns at the
        GIL, and stretched the write lock's hold that other worker processes wait on.
        """
        opts = self.options
        for port in (self.store, self.broker):
            # The embedded files' every page, before any work (a damaged one is one line).
            check_files = getattr(port, "check_files", None)
            if check_files is not None:
                check_files()
        log.info(
            "worker started",
            extra={
                "flush_interval_s": opts.flush_interval_s,
                "flush_max_events": opts.flush_max_events,
                "funnels": [f.name for f in opts.rules.funnels],
            },
        )
        prepared: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._stopped_at, self._stop = None, stop
        failure: list[BaseException] = []
        feeder = threading.Thread(
            target=self._feed,
            args=(stop, until_idle, prepared, failure),
            name="ba-feeder",
            daemon=True,
        )
        feeder.start()
        self._watch.start()
        try:
            self._main_loop(prepared, stop)
        except BaseException as exc:
            reason = _CONFIG_CHANGED if isinstance(exc, ConfigChanged) else None
            if reason:
                log.error("worker stopped: the store changed under it", extra={"error": str(exc)})
            stop.set()  # the feeder ends, handing over what it holds, given back here
            while (batch := prepared.get()) is not None:
                self._give_back(batch.deliveries, reason)
            raise
        finally:
            feeder.join()
            self._watch.stop()
        if failure:
            log.error(
                "worker stopped: a stage failed",
                extra={"stage": "feeder", "error": f"{type(failure[0]).__name__}: {failure[0]}"},
            )
            if is_permanent(failure[0]):
                raise failure[0]
            raise WorkerStageFailed(f"the feeder stage failed: {failure[0]!r}") from failure[0]
        if opts.drain_dead_letters and self._stopped_at is None:  # stopped: the next one drains
            self.drain_dead_letters()
        self._stopped_at = None  # `process` and `drain_dead_letters` may follow
        log.info("worker stopped", extra={"metrics": self.metrics.snapshot().to_dict()})

    def _main_loop(self, prepared: queue.Queue[_Batch | None], stop: threading.Event) -> None:
        """Settle the feeder's batches until it says it is done (None), with housekeeping;
        once `stop` has been set for `stop_grace_s`, give them back instead."""
        opts = self.options
        next_drain = next_purge = next_report = 0.0
        settled_stopping = False  # a batch was settled since the stop was seen
        while True:
            try:
                batch = prepared.get(timeout=_PULL_SLICE_S)
            except queue.Empty:
                batch = _NO_BATCH
            if batch is None:
                return
            self._stop_seen(stop)
            if batch is not _NO_BATCH and self._late() and settled_stopping:
                self._give_back(batch.deliveries)
            elif batch is not _NO_BATCH:
                try:
                    self._settle(batch)
                except ConfigChanged:
                    self._give_back(batch.deliveries, _CONFIG_CHANGED)
                    raise
                except CommitAbandoned as exc:
                    log.info("commit abandoned: stopping", extra={"detail": str(exc)})
                    self._give_back(batch.deliveries)
                except Exception as exc:
                    # E.g. the ack failed after the commit: given back, the messages come back
                    # and their dedupe keys make the second commit a no-op. (Left alone, a
                    # broker that holds leases, as Pub/Sub's does, would extend them for ever.)
                    log.exception("batch left unsettled", extra={"messages": len(batch.deliveries)})
                    self._give_back(batch.deliveries, f"batch left unsettled: {exc}")
                settled_stopping = self._stop_seen(stop) is not None
            now = time.monotonic()
            stopping = self._stopped_at is not None
            if opts.drain_dead_letters and now >= next_drain and not stopping:
                next_drain = now + opts.drain_interval_s
                self.drain_dead_letters()
            if now >= next_purge and not stopping:
                next_purge = now + opts.purge_interval_s
                self._purge()
            if now >= next_report:
                next_report = now + opts.report_interval_s
                log.info("worker progress", extra={"metrics": self.metrics.snapshot().to_dict()})

    def _stop_seen(self, stop: threading.Event) -> float | None:
        """When a thread first saw `stop` set (monotonic seconds), None while it is not."""
        if self._stopped_at is None and stop.is_set():
            self._stopped_at = time.monotonic()
        return self._stopped_at

    def _late(self) -> bool:
        """Whether a thread first saw the stop `stop_grace_s` or more ago."""
        at = self._stopped_at
        return at is not None and time.monotonic() >= at + self.options.stop_grace_s

    def _give_up_waiting(self) -> bool:
        """A commit's `give_up` (`Store.commit`): whether the stop is `stop_grace_s` old, seen
        here too (the feeder may be waiting for its turn, not looking at the stop)."""
        self._stop_seen(self._stop)
        return self._late()

    def _give_back(self, deliveries: Sequence[Delivery], reason: str | None = None) -> None:
        """Give back what a stopping worker will not begin (`Broker.give_back`), or nack what it
        could not settle with `reason`, logged with its count; should that fail, the leases run
        out instead and the messages come back all the same."""
        ack_ids = [d.ack_id for d in deliveries]
        extra = {"messages": len(ack_ids), "reason": reason or "worker stopping"}
        try:
            if reason is None:
                self.broker.give_back(ack_ids)
            else:
                self.broker.nack(ack_ids, reason)
        except Exception:
            log.exception("giving back messages failed", extra=extra)
        else:
            log.info("gave back messages", extra=extra)

    def _feed(
        self,
        stop: threading.Event,
        until_idle: bool,
        out: queue.Queue[_Batch | None],
        failure: list[BaseException],
    ) -> None:
        try:
            self._feed_loop(stop, until_idle, out)
        except BaseException as exc:
            if not is_permanent(exc):  # a permanent broker error is its own one line
                log.exception("worker stage failed", extra={"stage": "feeder"})
            failure.append(exc)
        finally:
            out.put(None)

    def _feed_loop(
        self, stop: threading.Event, until_idle: bool, out: queue.Queue[_Batch | None]
    ) -> None:
        opts = self.options
        held: list[Delivery] = []
        flush_at = 0.0
        idle_since: float | None = None
        failures = 0
        failing_since, failing_ends = 0.0, 0  # when the run of failures began, `logged_ends`
        mark = self.broker.backlog_mark() if until_idle else None
        drained = False  # receiving stopped: what the broker still hands out is all there is
        while not stop.is_set():
            now = time.monotonic()
            wait = max(0.0, flush_at - now) if held else _PULL_SLICE_S
            try:
                with self._watch.call("broker", "pull", end_logged_by(self.broker, pull=True)):
                    got = self.broker.pull(
                        opts.flush_max_events - len(held), min(wait, _PULL_SLICE_S)
                    )
                if failures and logged_ends(self.broker) == failing_ends:  # else the broker's line
                    self._watch.recovered("broker", "pull", failures)
                failures = 0
            except Exception as exc:
                if is_permanent(exc):
                    raise
                failures += 1
                if failures == 1:
                    failing_since, failing_ends = now, logged_ends(self.broker)
                if not was_reported(exc):
                    log.error("pull failed", extra={"error": str(exc), "failures": failures})
                if until_idle and time.monotonic() - failing_since >= UNTIL_IDLE_PULL_FAILURES_S:
                    raise BrokerError(
                        f"no pull succeeded for {UNTIL_IDLE_PULL_FAILURES_S:g} s "
                        f"({failures} tries), the last: {exc}",
                        permanent=True,
                    ) from exc
                stop.wait(min(10.0, 0.5 * 2**failures))
                continue
            now = time.monotonic()
            if got:
                if not held:
                    flush_at = now + opts.flush_interval_s
                held.extend(got)
                idle_since = None
            if held and (
                len(held) >= opts.flush_max_events or now >= flush_at or (drained and not got)
            ):
                self._hand_over(held, out, stop)
                held = []
            if until_idle and not held:
                if drained:
                    idle = not got
                elif mark is not None:
                    idle = not self.broker.backlog(through=mark)
                elif not got:
                    idle_since = idle_since or now
                    idle = (
                        now - idle_since >= opts.idle_after_s
                        and out.empty()
                        and not self.broker.backlog()
                    )
                else:
                    idle = False
                if idle:
                    if drained or not self.broker.stop_receiving():
                        break
                    # Nothing more is delivered; what came before the stream stopped is next.
                    drained = True
        self._stop_seen(stop)
        if held:
            self._hand_over(held, out, stop)

    def _hand_over(
        self, held: list[Delivery], out: queue.Queue[_Batch | None], stop: threading.Event
    ) -> None:
        """First deliveries go as one parsed batch; redelivered ones unparsed, in the units of
        `isolation_units`, their leases extended while they wait (given back on stop)."""
        first = [d for d in held if d.delivery_attempt <= 1]
        if first:
            batch = self._parsed_unless_stopped(first, stop)
            while True:  # in slices, so that a stop is seen while the committer is busy
                try:
                    out.put(batch, timeout=_PULL_SLICE_S)
                    break
                except queue.Full:
                    self._stop_seen(stop)
        units = isolation_units([d for d in held if d.delivery_attempt > 1])
        extended_at = time.monotonic()
        for index, unit in enumerate(units):
            while True:
                if stop.is_set():
                    self._give_back([d for later in units[index:] for d in later])
                    return
                try:
                    out.put(_Batch(unit, [], [], {}, deferred=True), timeout=_PULL_SLICE_S)
                    break
                except queue.Full:
                    if time.monotonic() - extended_at >= self.options.ack_deadline_s / 3:
                        rest = [d.ack_id for later in units[index:] for d in later]
                        self.broker.extend(rest, self.options.ack_deadline_s)
                        extended_at = time.monotonic()

    def _parsed_unless_stopped(self, deliveries: list[Delivery], stop: threading.Event) -> _Batch:
        """`deliveries` parsed, in turn with commits (`run`); once `stop` is set, left unparsed
        for the committer, which parses a batch only if it commits it (after a stop, most go
        back as they came)."""
        unparsed = _Batch(deliveries, [], [], {}, deferred=True)
        if self._turn_lock is None:
            return unparsed if stop.is_set() else self._prepare(deliveries)
        while not self._turn_lock.acquire(timeout=_PULL_SLICE_S):
            if stop.is_set():
                return unparsed
        try:
            return unparsed if stop.is_set() else self._prepare(deliveries)
        finally:
            self._turn_lock.release()

    # -- one batch --------------------------------------------------------------------------

    def process(self, deliveries: Sequence[Delivery]) -> CommitResult | None:
        """Commit one batch and ack it; on failure nack what could not be committed."""
        return self._settle(self._prepare(deliveries))

    def _prepare(self, deliveries: Sequence[Delivery]) -> _Batch:
        return _Batch(deliveries, *self._parse(deliveries))

    def _settle(self, batch: _Batch) -> CommitResult | None:
        if batch.deferred:
            batch = self._prepare(batch.deliveries)
        deliveries, events, dead_letters, rejected = (
            batch.deliveries,
            batch.events,
            batch.dead_letters,
            batch.rejected,
        )
        try:
            result, latency = self._commit_with_retries(deliveries, events, dead_letters)
        except BrokerError:  # extending the leases between attempts failed: counted all the same
            self.metrics.record_commit_failure()
            raise
        if result is None:
            self.metrics.record_commit_failure()
            self._isolate(deliveries)
            return None
        quiet = end_logged_by(self.broker)
        with self._watch.call("broker", "ack", quiet, messages=len(deliveries)):
            self.broker.ack([d.ack_id for d in deliveries])
        self.metrics.record_batch(
            result.created_by_type,
            rejected,
            result.duplicates,
            latency,
            result.max_lag_s,
            forgotten=result.forgotten,
        )
        log.debug(
            "batch committed",
            extra={
                "messages": len(deliveries),
                "events_created": result.created,
                "duplicates": result.duplicates,
                "forgotten": result.forgotten,
                "rejected": result.dead_letters,
                "rejected_forgotten": result.letters_forgotten,
                "commit_ms": round(latency * 1000, 2),
            },
        )
        return result

    def _parse(
        self, deliveries: Sequence[Delivery]
    ) -> tuple[list[Event], list[NewDeadLetter], dict[str, int]]:
        opts = self.options
        return parse_deliveries(
            deliveries, limits=opts.limits, enrich=opts.rules.enrich, now=self._clock
        )

    def _commit_with_retries(
        self,
        deliveries: Sequence[Delivery],
        events: list[Event],
        dead_letters: list[NewDeadLetter],
    ) -> tuple[CommitResult | None, float]:
        """The commit's result (None: every attempt failed) and its seconds, from the first
        attempt's start (its turn taken: not the wait for the feeder's parse) to the end."""
        started = 0.0
        for attempt, pause in enumerate((*_COMMIT_RETRIES, None)):
            if attempt and self._stop.is_set():  # stopping: given back (`_isolate`), not retried
                break
            try:
                with self._turn, self._watch.call("store", "commit", messages=len(deliveries)):
                    started = started or time.perf_counter()
                    result = self.store.commit(events, dead_letters, give_up=self._give_up_waiting)
                if attempt:
                    self._watch.recovered("store", "commit", attempt)
                return result, time.perf_counter() - started
            except (ConfigChanged, CommitAbandoned):
                raise
            except Exception as exc:
                self._last_failure = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "commit failed",
                    extra={
                        "attempt": attempt + 1,
                        "messages": len(deliveries),
                        "error": self._last_failure,
                    },
                )
                if pause is None:
                    break
                self.broker.extend([d.ack_id for d in deliveries], self.options.ack_deadline_s)
                time.sleep(pause)
        return None, 0.0

    def _isolate(self, deliveries: Sequence[Delivery]) -> None:
        """A batch that keeps failing: if the store is down, give every message back; else
        commit halves, so that only the messages that fail on their own are nacked (and end in
        the broker's dead letters with the reason) while their batch mates go through. In a
        stop it goes back, as does every batch after it; late in one, so do uncommitted halves."""
        if self._stop.is_set():
            self._stopped_at = float("-inf")
            self._give_back(deliveries)
            return None
        try:
            self.store.ping()
        except Exception as exc:
            self.broker.nack([d.ack_id for d in deliveries], f"store unavailable: {exc}"[:500])
            return None
        if len(deliveries) == 1:
            self.broker.nack([deliveries[0].ack_id], self._last_failure)
            return None
        middle = len(deliveries) // 2
        for half in (deliveries[:middle], deliveries[middle:]):
            if self._late():
                self._give_back(half)
                continue
            events, dead_letters, rejected = self._parse(half)
            try:
                with self._turn, self._watch.call("store", "commit", messages=len(half)):
                    result = self.store.commit(events, dead_letters, give_up=self._give_up_waiting)
            except ConfigChanged:
                raise
            except Exception as exc:
                self._last_failure = f"{type(exc).__name__}: {exc}"[:500]
                self._isolate(half)
                continue
            self.broker.ack([d.ack_id for d in half])
            self.metrics.record_batch(
                result.created_by_type,
                rejected,
                result.duplicates,
                0.0,
                result.max_lag_s,
                forgotten=result.forgotten,
            )
        return None

    # -- housekeeping -----------------------------------------------------------------------

    def drain_dead_letters(self) -> int:
        """Move what the broker dead-lettered into the store's dead letters, with the reason.
        Raises ConfigChanged when the store refuses this process's writes (the rest stays)."""
        drained = forgotten = 0
        try:
            while self._stopped_at is None and (messages := self.broker.pull_dead_letters(100)):
                forgotten += self.store.add_dead_letters([to_dead_letter(m) for m in messages])
                self.broker.ack_dead_letters([m.handle for m in messages])
                drained += len(messages)
                if len(messages) < 100:
                    break
        except ConfigChanged:
            raise  # a newer release upgraded the store: the worker stops (`run`)
        except Exception as exc:
            if not was_reported(exc):  # an unreachable broker is logged once per outage
                log.warning("dead-letter drain failed", extra={"error": str(exc)})
        if drained:
            self.metrics.record_drained(drained)
            log.warning(
                "dead-lettered messages recorded",
                extra={"count": drained - forgotten, "forgotten": forgotten},
            )
        return drained

    def _purge(self) -> None:
        try:
            purged = self.store.purge_expired(self._clock())
        except ConfigChanged:
            raise
        except Exception as exc:
            log.warning("purge of expired raw events failed", extra={"error": str(exc)})
            return
        if purged:
            log.info("purged expired raw events", extra={"count": purged})

    _last_failure: str = ""
