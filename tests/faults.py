"""The exact-under-faults scenario, shared by the local and the Google Cloud runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from behavioral_analytics.aggregation import Periods, fold
from behavioral_analytics.behavior import BehaviorRules, recount
from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.identity import Link, proposal, resolve
from behavioral_analytics.store import Store
from behavioral_analytics.verification import verify

USERS = [f"user_{i}" for i in range(1, 101)] + ["team/alice", "anon"]
TYPES = ["page_view", "button_click", "purchase", "search", "signup", "checkout.step_2"]


@dataclass
class Workload:
    lines: list[bytes]
    distinct: dict[str, Event]  # dedupe key → event
    malformed: list[bytes]
    duplicates: int = 0
    expected_reasons: dict[bytes, str] = field(default_factory=dict)


BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FUNNEL_STEPS = ["page_view", "search", "add_to_cart", "purchase"]


def _visit(rng: random.Random, now: float, n: int) -> list[dict[str, object]]:
    """A visit without client session ids: events minutes apart walking down the purchase
    funnel; an anonymous visitor may identify at the end (sometimes as a second user)."""
    anonymous = rng.random() < 0.3
    who = f"visitor_{rng.randint(1, 60)}" if anonymous else rng.choice(USERS[:100])
    at = now - rng.uniform(2 * 3600, 4 * 3600)  # ends well before now: no future timestamps
    depth = rng.choice([1, 1, 2, 2, 3, 4])
    events: list[dict[str, object]] = []
    for i in range(rng.randint(1, 8)):
        at += rng.expovariate(1 / 300)
        step = FUNNEL_STEPS[min(i, depth - 1)] if i < depth else "button_click"
        events.append({"event_type": step, "timestamp": round(at, 3)})
    if anonymous and rng.random() < 0.5:
        events.append(
            {
                "event_type": "identify",
                "timestamp": round(at + 1, 3),
                "user_id": rng.choice(USERS[:100]),
            }
        )
    for i, event in enumerate(events):
        event["event_id"] = f"visit_{n}_{i}"
        event["anonymous_id" if anonymous else "user_id"] = who
        event["properties"] = {"ip": f"203.0.113.{rng.randint(1, 254)}"}
    return events


def _bot_event(rng: random.Random, now: float) -> dict[str, object]:
    return {
        "event_id": f"evt_{rng.randint(100000, 999999)}",
        "anonymous_id": f"crawler_{rng.randint(1, 5)}",
        "event_type": "page_view",
        "timestamp": round(now - rng.uniform(0, 3 * 3600), 3),
        "properties": {"user_agent": BOT_AGENT},
    }


def make_workload(count: int, seed: int, now: float, *, behavior: bool = False) -> Workload:
    """`count` messages: about 5 % re-sends of an earlier message, 1 % malformed lines. With
    `behavior`, also visits (sessions cut by gaps, the purchase funnel, anonymous visitors who
    identify) and crawler traffic, all shuffled out of time order."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    malformed: list[bytes] = []
    duplicates = 0
    visits = 0
    while len(lines) < count:
        roll = rng.random()
        if behavior and roll > 0.75:
            if roll > 0.97:
                lines.append(json.dumps(_bot_event(rng, now)).encode())
            else:
                visits += 1
                lines.extend(json.dumps(e).encode() for e in _visit(rng, now, visits))
        elif roll < 0.05 and lines:
            lines.append(rng.choice(lines))
            duplicates += 1
        elif roll < 0.06:
            bad = rng.choice(
                [
                    b"not json at all %d" % len(lines),
                    json.dumps({"event_type": "page_view", "n": len(lines)}).encode(),
                    json.dumps(
                        {"user_id": "u", "event_type": "x", "timestamp": "soon", "n": len(lines)}
                    ).encode(),
                    b"[1, 2, %d]" % len(lines),
                ]
            )
            lines.append(bad)
            malformed.append(bad)
        else:
            user = rng.choice(USERS)
            event = {
                # The recipe's weak ids: six random digits, colliding across users by design.
                "event_id": f"evt_{rng.randint(100000, 999999)}",
                "event_type": rng.choice(TYPES),
                "timestamp": round(now - rng.uniform(0, 3 * 3600), 3),
                "session_id": f"sess_{rng.randint(1000, 9999)}",
                "properties": {"page_url": f"/page/{rng.randint(1, 20)}", "device_type": "mobile"},
            }
            event["anonymous_id" if user == "anon" else "user_id"] = user
            lines.append(json.dumps(event).encode())
    if behavior:
        rng.shuffle(lines)
    distinct: dict[str, Event] = {}
    rules = BehaviorRules()
    for line in lines:
        parsed = parse_message(line, message_id="unused", received_at=now)
        if isinstance(parsed, Event):
            rules.enrich(parsed)
            distinct[parsed.key] = parsed
    return Workload(lines, distinct, malformed, duplicates)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its log goes to a file, not a pipe nobody reads (a full pipe would block the worker).
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the test process
    worker = subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", "worker", "--no-drain"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker.log = log  # type: ignore[attr-defined]
    return worker


def _log_of(worker: subprocess.Popen[bytes]) -> str:
    log = getattr(worker, "log", None)
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode(errors="replace")


def run_with_kills(
    env: dict[str, str],
    publish: Callable[[list[bytes]], None],
    workload: Workload,
    progress: Callable[[], int],
    seed: int,
    kills: int = 3,
    stall_s: float = 300.0,
    deadline_s: float = 900.0,
) -> list[float]:
    """Two worker processes; `kills` times, at a random point of progress, `kill -9` one of them
    and start it again. Returns the progress fractions at which the kills happened.

    Fails when progress stands still for `stall_s` (a killed worker's leases come back after
    the ack deadline; a stall longer than that is a lost message) or the whole run passes
    `deadline_s`: a slow, loaded machine is not a failure while events keep landing."""
    rng = random.Random(seed)
    workers = [start_worker(env), start_worker(env)]
    chunk = 1000
    lines = workload.lines
    total = len(workload.distinct)
    kill_at = sorted(rng.uniform(0.1, 0.85) for _ in range(kills))
    killed_at: list[float] = []
    published = 0
    deadline = time.monotonic() + deadline_s
    last_done, moved_at = -1, time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"not drained in {deadline_s} s: {progress()}/{total}")
            if now - moved_at > stall_s:
                logs = "\n".join(f"worker {i}: {_log_of(w)[-3000:]}" for i, w in enumerate(workers))
                raise AssertionError(f"no progress for {stall_s} s: {progress()}/{total}\n{logs}")
            if published < len(lines):
                publish(lines[published : published + chunk])
                published += chunk
            done = progress()
            if done != last_done:
                last_done, moved_at = done, time.monotonic()
            if kill_at and done >= kill_at[0] * total:
                victim = rng.randrange(2)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(10)
                killed_at.append(done / total)
                kill_at.pop(0)
                workers[victim] = start_worker(env)
            for i, worker in enumerate(workers):
                if worker.poll() is not None:
                    raise AssertionError(f"worker {i} died on its own: {_log_of(worker)[-2000:]}")
            if published >= len(lines) and not kill_at and done >= total:
                return killed_at
            time.sleep(0.05)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


def expected_links(events: Iterable[Event], allow_relink: bool = False) -> list[Link]:
    by_anonymous: dict[str, list[Link]] = {}
    for event in events:
        link = proposal(event)
        if link is not None:
            by_anonymous.setdefault(link.anonymous_id, []).append(link)
    return [link for group in by_anonymous.values() for link in resolve(group, allow_relink)]


def assert_exact(store: Store, workload: Workload, periods: Periods) -> None:
    """Every distinct valid event counted once in every bucket and profile; on a store with
    the behavioral read model, its sessions, funnels, identity links and bot counts equal a
    recount of the distinct events by the same rules."""
    snapshot = store.snapshot()
    if store.behavioral:
        assert store.rules is not None
        from behavioral_analytics.store import NotSupported

        # A store without identity links (Firestore: links() is NotSupported) counts every
        # event for its own actor: the recount then uses no links either.
        try:
            store.links("")
            links = expected_links(workload.distinct.values(), store.rules.allow_relink)
        except NotSupported:
            links = []
        assert sorted(store.stored_links(), key=_link_order) == sorted(links, key=_link_order)
        counted = recount(workload.distinct.values(), links, store.rules, periods)
        expected = counted.deltas
        assert snapshot.bot_events == dict(counted.bot_events)
        assert snapshot.session_stats == counted.session_stats
        assert snapshot.funnel_users == {k: n for k, n in counted.funnel_users.items() if n}
    else:
        expected = fold(workload.distinct.values(), periods)
    want_buckets = {k: (b.total, dict(b.by_type)) for k, b in expected.buckets.items()}
    assert snapshot.buckets == want_buckets
    assert snapshot.unique_users == dict(expected.unique_users())
    assert snapshot.markers == expected.markers
    want_profiles = {
        who: (p.total, dict(p.by_type), p.first_seen, p.last_activity)
        for who, p in expected.profiles.items()
    }
    assert snapshot.profiles == want_profiles
    assert {e.key for e in store.iter_raw_events()} == set(workload.distinct)


def _link_order(link: Link) -> tuple[str, str]:
    return (link.anonymous_id, link.event_key)


def behavior_event(
    n: int,
    timestamp: float,
    *,
    received_at: float,
    user: str | None = None,
    anon: str | None = None,
    kind: str = "page_view",
    session: str | None = None,
    **properties: object,
) -> Event:
    """Event `e{n}` as the worker would store it: parsed, then enriched (bot flag, privacy)."""
    payload: dict[str, object] = {
        "event_id": f"e{n}",
        "event_type": kind,
        "timestamp": timestamp,
        "properties": properties,
    }
    if user:
        payload["user_id"] = user
    if anon:
        payload["anonymous_id"] = anon
    if session:
        payload["session_id"] = session
    parsed = parse_message(
        json.dumps(payload).encode(), message_id=f"m{n}", received_at=received_at
    )
    assert isinstance(parsed, Event), parsed
    BehaviorRules().enrich(parsed)
    return parsed


def assert_recounts(store: Store, now: float) -> None:
    """`verify` of everything the store holds finds no drift."""
    report = verify(store, store.periods, now=now, retention_s=None)  # type: ignore[attr-defined]
    assert report.ok, report.drift[:5]


def commit_shuffled(store: Store, events: list[Event], rng: random.Random) -> None:
    """Commit `events` in random batches of 1-120, redelivering whole or part of some (about
    30 %): every redelivery must create nothing."""
    position = 0
    while position < len(events):
        size = rng.randint(1, 120)
        batch = events[position : position + size]
        store.commit(batch)
        if rng.random() < 0.3:
            assert store.commit(rng.sample(batch, k=max(1, len(batch) // 2))).created == 0
        position += size


def commit_concurrently(stores: Sequence[Store], shares: Sequence[list[Event]], batch: int) -> None:
    """Each store commits its share in batches of `batch`, all in threads at once; any error
    is raised here, and the writers must have got in each other's way (a conflict)."""
    errors: list[BaseException] = []

    def run(store: Store, mine: list[Event]) -> None:
        try:
            for start in range(0, len(mine), batch):
                store.commit(mine[start : start + batch])
        except BaseException as exc:  # reported by the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(stores, shares, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert sum(getattr(store, "conflicts", 0) for store in stores) > 0
