"""Where a benchmarked worker process spends its time: the store's write lock, and CPU by stage.

`Timings.attach` wraps, in one process, the worker's broker calls, its parsing and the store's
commit (`stores.sqlite.commit`: its raw-event insert and its transaction) with clocks:

  pull + ack         the broker's `pull`, `ack`, `nack` and `give_back`
  parse + enrich     the worker's `_prepare`: parse, validate, enrich (user agent, bot flag)
  raw insert         the commit's insert of the raw events (`_insert_new`)
  derivation         the rest of the commit: everything derived from the raw events (identity
                     links, the fold of buckets, profiles and breakdowns, sessions, funnels, bot
                     counts) with its reads and writes, before and inside the transaction
  COMMIT             the transaction's `COMMIT` statement: the write-ahead log written (and,
                     every `wal_autocheckpoint` pages, a checkpoint)

Each stage's figure is the CPU time (`time.thread_time`) of the thread that ran it, so the
feeder's parsing and the committer's commit are told apart even where they run at once; the
process's other CPU (thread switches, the worker's own bookkeeping) is in none of them. The lock
is timed in wall seconds from `BEGIN IMMEDIATE` granted to `COMMIT` done. A package shaped
otherwise (a `--baseline` of another layout) gets only the stages it has.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

STAGES = ("pull + ack", "parse + enrich", "raw insert", "derivation", "COMMIT")
_WHOLE_COMMIT = "store commit"  # the store's `commit` call, which the derivation is the rest of


class Timings:
    """One process's figures: `lock_held_s` (wall seconds) and `cpu_s` (stage → CPU seconds,
    the stages of `STAGES` but the derivation, and the whole commit's)."""

    def __init__(self) -> None:
        self.lock_held_s = 0.0
        self.cpu_s = dict.fromkeys((*STAGES, _WHOLE_COMMIT), 0.0)
        self._adding = threading.Lock()  # the feeder and the committer both pull, ack, parse

    def as_result(self) -> dict[str, float]:
        """The figures as a result's entries: `lock_held_s` and `cpu_<stage>` for each stage."""
        cpu = dict(self.cpu_s)
        whole = cpu.pop(_WHOLE_COMMIT)
        cpu["derivation"] = max(0.0, whole - cpu["raw insert"] - cpu["COMMIT"])
        return {"lock_held_s": self.lock_held_s, **{f"cpu_{k}": v for k, v in cpu.items()}}

    def attach(self, broker: Any, worker: Any, store: Any) -> None:
        """Time, from now on, `broker`'s calls, `worker`'s parsing and `store`'s commits (as
        instance attributes: other brokers, workers and stores of the process are untouched;
        the commit module's insert and transaction are timed for the whole process)."""
        for name in ("pull", "ack", "nack", "give_back"):
            if hasattr(broker, name):
                setattr(broker, name, self._timed(getattr(broker, name), "pull + ack"))
        if hasattr(worker, "_prepare"):
            worker._prepare = self._timed(worker._prepare, "parse + enrich")
        store.commit = self._timed(store.commit, _WHOLE_COMMIT)
        try:
            from behavioral_analytics.stores.sqlite import commit as commit_module
        except ImportError:
            return
        if hasattr(commit_module, "_insert_new"):
            commit_module._insert_new = self._timed(commit_module._insert_new, "raw insert")
        if hasattr(commit_module, "transaction"):
            commit_module.transaction = self._timed_transaction(commit_module.transaction)

    def _timed(self, call: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self._add(stage, time.thread_time() - start)

        return timed

    def _add(self, stage: str, seconds: float) -> None:
        with self._adding:
            self.cpu_s[stage] += seconds

    def _timed_transaction(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.contextmanager
        def timed(db: sqlite3.Connection, *args: Any) -> Iterator[sqlite3.Connection]:
            manager = original(db, *args)  # a stopping worker's `waiting`, where it is taken
            granted = manager.__enter__()
            start = time.perf_counter()
            try:
                yield granted
            except BaseException:
                if not manager.__exit__(*sys.exc_info()):
                    raise
                return
            cpu = time.thread_time()
            manager.__exit__(None, None, None)
            self._add("COMMIT", time.thread_time() - cpu)
            self.lock_held_s += time.perf_counter() - start  # commits are one thread's

        return timed


def summed(parts: list[dict[str, float]]) -> dict[str, float]:
    """The `Timings.as_result` entries of several processes, added up."""
    keys = ["lock_held_s", *(f"cpu_{stage}" for stage in STAGES)]
    return {key: sum(part.get(key, 0.0) for part in parts) for key in keys}


def split_line(name: str, result: dict[str, float], bare_cpu_s: float) -> str:
    """One line: `name`'s CPU seconds by stage with their shares of its CPU, and the ratio to
    the bare insert's CPU it would reach if the derivation cost nothing (the ceiling for any
    work on the derivation alone)."""
    total = result["cpu_seconds"]
    parts = "   ".join(
        f"{stage} {result.get(f'cpu_{stage}', 0.0):.1f} s "
        f"({result.get(f'cpu_{stage}', 0.0) / total:.0%})"
        for stage in STAGES
    )
    underived = total - result.get("cpu_derivation", 0.0)
    return (
        f"{name} CPU {total:.1f} s: {parts}   without the derivation: "
        f"{bare_cpu_s / underived:.0%} of (c) by CPU"
    )
