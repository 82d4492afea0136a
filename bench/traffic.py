"""The benchmarks' inputs, from the project's own generator (`behavioral_analytics.loadgen`).

- `live` (the default): what a running site sends, in time order at the model's rate: many
  people (20,000 by default) in sessions with the generator's funnel, 5 % crawler traffic, and a
  stated late share stamped back in time (`LATE_TIERS`: 5 % late by 2 min to 1 h, 1 % by 1 h to
  3 days), ending a minute before now. A share of the people (`IDENTIFY_SHARE`, 30 %) arrive
  anonymous and sign in during their first visit (`identified`), so identity stitching links
  and moves events as on a real site.
- `backfill`: the same model spread over `days` days (the idle time between sessions is
  stretched to fit the events in) and ingested at once, as an import of history would be.
- `narrow`: the earlier input: 1,000 users' random events squeezed into two hours, a random
  session id per event.

Duplicates and malformed messages are off (each benchmark counts stored events against what it
sent; the load test covers them). Everything is drawn from the seed, which is printed.

Also what the benchmarks share besides their inputs: argparse types that refuse, with a usage
error, a count below 1 (`positive_int`) or 0 (`count_or_none`), a span not above 0
(`positive_float`) and a share outside 0 to 1 (`share`); the generator's arguments
(`add_generator_arguments`); and a process's own peak memory (`rss_bytes`).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from behavioral_analytics.loadgen import (
    GeneratorConfig,
    anchored_start,
    expected_session_events,
    iter_messages,
)

INPUTS = ("live", "backfill", "narrow")
LATE_TIERS = ((0.05, 3600.0), (0.01, 3 * 86400.0))
TYPES = ("page_view", "button_click", "purchase", "search", "signup", "login")
IDENTIFY_SHARE = 0.3  # people who arrive anonymous and sign in during their first session
SIGN_IN_AFTER = 8  # they sign in after 1 to 8 of its events, drawn uniformly


def positive_int(text: str) -> int:
    """An argparse `type`: an integer of at least 1."""
    return _integer(text, least=1)


def count_or_none(text: str) -> int:
    """An argparse `type`: an integer of at least 0 (0: none)."""
    return _integer(text, least=0)


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"takes at least {least}, not {value}")
    return value


def share(text: str) -> float:
    """An argparse `type`: a share from 0 to 1."""
    return _number(text, lambda value: 0 <= value <= 1, "a share from 0 to 1")


def positive_float(text: str) -> float:
    """An argparse `type`: a number above 0."""
    return _number(text, lambda value: value > 0, "a number above 0")


def _number(text: str, fits: Callable[[float], bool], what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not fits(value):  # NaN never fits
        raise argparse.ArgumentTypeError(f"takes {what}, not {text}")
    return value


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    """`--seed` and `--days`, as every benchmark on these inputs takes them."""
    parser.add_argument(
        "--seed",
        type=int,
        default=17,
        help="the generator's seed (the narrow input's is fixed at 7)",
    )
    parser.add_argument("--days", type=positive_float, default=6.0, help="the backfill's span")


def rss_bytes(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (the peak) of this process, from /proc/self/status: unlike
    `getrusage`'s peak, which a process started by `subprocess` inherits from its parent,
    `VmHWM` starts again with the program."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def live_config(events: int, users: int, seed: int) -> GeneratorConfig:
    """The generator's model with the benchmark's late shares and no duplicates or malformed."""
    return GeneratorConfig(
        events=events,
        users=users,
        seed=seed,
        duplicate_rate=0.0,
        late_rate=0.0,
        malformed_rate=0.0,
        late_tiers=LATE_TIERS,
    )


def model_rate(config: GeneratorConfig) -> float:
    """Events/s the model's users make on average (crawlers included)."""
    per_session = expected_session_events(config)
    cycle_s = (
        config.session_timeout_s + 1 + config.mean_idle_s + (per_session - 1) * config.mean_gap_s
    )
    return config.users * per_session / cycle_s / (1 - config.bot_rate)


def backfill_config(events: int, users: int, seed: int, days: float) -> GeneratorConfig:
    """The model with the idle time between sessions stretched so `events` span `days` days;
    no late tiers (history arrives all at once anyway)."""
    base = replace(live_config(events, users, seed), late_tiers=())
    per_session = expected_session_events(base)
    rate = events / (days * 86400.0) * (1 - base.bot_rate)
    cycle_s = users * per_session / rate
    span_s = (per_session - 1) * base.mean_gap_s
    idle_s = max(cycle_s - base.session_timeout_s - 1 - span_s, 0.0)
    return replace(base, mean_idle_s=idle_s)


def describe(config: GeneratorConfig) -> str:
    """The generator's parameters and seed on one line, to print with the figures."""
    tiers = ", ".join(f"{share:.0%} up to {up_to:g} s" for share, up_to in config.late_tiers)
    rate = model_rate(config)
    return (
        f"generator: {config.events:,} events, {config.users:,} users, seed {config.seed}, "
        f"model rate {f'{rate:,.1f}' if rate >= 1 else f'{rate:.2g}'} events/s, sessions of "
        f"{expected_session_events(config):.1f} events ({config.mean_gap_s:g} s apart, "
        f"{config.mean_idle_s:,.0f} s mean idle after the {config.session_timeout_s:g} s "
        f"timeout), funnel continuing at "
        + "/".join(f"{rate:.0%}" for rate in config.funnel_rates)
        + f", crawlers {config.bot_rate:.0%}, late: {tiers or 'none'}; "
        f"{IDENTIFY_SHARE:.0%} of people anonymous until an identify in their first session; "
        "one public IPv4 address per person (`ip`)"
    )


def identified(
    pairs: Iterable[tuple[float, bytes]], seed: int | None, share: float = IDENTIFY_SHARE
) -> Iterator[tuple[float, bytes]]:
    """`pairs` ((sent_at, message), in send order) as a site with sign-ins sends them: `share`
    of the people (drawn from `seed`) arrive anonymous. Their first session's events carry
    only an anonymous id (`anon_<user id>`) until they sign in: an `identify` with both ids is
    sent after 1 to `SIGN_IN_AFTER` of that session's events (drawn uniformly), just before
    the next one, or before their first event of a later session if the first ended sooner
    (never, if they do not come back); every later event carries both ids, as analytics.js
    sends them. Crawlers (no `user_id`) and the generator's malformed messages pass unchanged.
    One `identify` more per person signed in."""
    rng = random.Random(f"identify:{seed}")
    sign_in_at: dict[str, int] = {}  # person → index of the event the identify precedes
    first_session: dict[str, str] = {}
    seen: dict[str, int] = {}  # person → their events so far, while anonymous
    for sent_at, data in pairs:
        payload = _event(data)
        user = payload.get("user_id") if payload is not None else None
        if payload is None or user is None:
            yield sent_at, data
            continue
        if user not in sign_in_at:
            anonymous = rng.random() < share
            sign_in_at[user] = rng.randint(1, SIGN_IN_AFTER) if anonymous else -1
            first_session[user] = payload["session_id"]
            seen[user] = 0
        if sign_in_at[user] < 0:
            yield sent_at, data
            continue
        payload["anonymous_id"] = f"anon_{user}"
        count = seen.get(user)
        if count is not None:
            if count < sign_in_at[user] and payload["session_id"] == first_session[user]:
                seen[user] = count + 1
                del payload["user_id"]
                yield sent_at, _encoded(payload)
                continue
            del seen[user]
            yield sent_at, _encoded(_identify(payload))
        yield sent_at, _encoded(payload)


def _event(data: bytes) -> dict[str, Any] | None:
    """A message as the generator makes a well-formed event, or None (a malformed one)."""
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("timestamp"), float):
        return None
    if not isinstance(payload.get("properties"), dict) or "session_id" not in payload:
        return None
    return payload


def _identify(before: dict[str, object]) -> dict[str, object]:
    """The `identify` sent just before the event `before` (its ids, session and context)."""
    properties = before["properties"]
    assert isinstance(properties, dict)
    timestamp = before["timestamp"]
    assert isinstance(timestamp, float)
    return {
        "event_id": f"idf_{before['user_id']}",
        "user_id": before["user_id"],
        "anonymous_id": before["anonymous_id"],
        "event_type": "identify",
        "timestamp": round(timestamp - 0.001, 3),
        "session_id": before["session_id"],
        "properties": {
            key: properties[key]
            for key in ("page_url", "referrer", "device_type", "user_agent", "ip")
            if key in properties
        },
    }


def _encoded(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def generated(config: GeneratorConfig, end: float) -> list[bytes]:
    """The run's messages, its last one sent at `end` (epoch seconds)."""
    return [data for _, data in timed(config, end)]


def timed(config: GeneratorConfig, end: float) -> list[tuple[float, bytes]]:
    """The run's `(sent_at, message)` pairs in send order, the last one sent at `end`, with
    sign-ins (`identified`)."""
    return list(identified(generator_pairs(config, end), config.seed))


def generator_pairs(config: GeneratorConfig, end: float) -> Iterator[tuple[float, bytes]]:
    """The generator's own `(sent_at, message)` pairs, the last one sent at `end`: every
    person identified by `user_id` from their first event."""
    start = anchored_start(config, end)
    for message in iter_messages(replace(config, start=start)):
        yield message.sent_at, message.data


def streamed(config: GeneratorConfig, end: float) -> Iterator[bytes]:
    """Like `generated`, without keeping the messages: the start is estimated from the model's
    rate (with a margin, so no event lies in the future), for long growth runs."""
    assert config.events is not None
    start = end - 1.5 * config.events / model_rate(config)
    messages = iter_messages(replace(config, start=start))
    for _, data in identified(((m.sent_at, m.data) for m in messages), config.seed):
        yield data


def narrow(count: int, users: int, seed: int = 7) -> list[bytes]:
    """The earlier input: `users` users' random events over the last two hours."""
    rng = random.Random(seed)
    now = time.time()
    lines = []
    for i in range(count):
        event_type = rng.choice(TYPES)
        properties: dict[str, object] = {
            "page_url": f"/page/{rng.randint(1, 50)}",
            "referrer": rng.choice(["google.com", "direct", "twitter.com"]),
            "device_type": rng.choice(["mobile", "desktop", "tablet"]),
            "user_agent": "BehavioralAnalytics/1.0",
        }
        if event_type == "purchase":
            properties.update(amount=round(rng.uniform(5, 500), 2), currency="USD")
        lines.append(
            json.dumps(
                {
                    "event_id": f"evt_{i:08d}",
                    "user_id": f"user_{rng.randint(1, users)}",
                    "event_type": event_type,
                    "timestamp": now - 7200 + 7200 * i / count,
                    "session_id": f"sess_{rng.randint(1000, 9999)}",
                    "properties": properties,
                }
            ).encode()
        )
    return lines


def lines_for(kind: str, events: int, users: int, seed: int, days: float) -> list[bytes]:
    """The input `kind` (one of INPUTS) as message bytes."""
    end = time.time() - 60.0
    if kind == "live":
        return generated(live_config(events, users, seed), end)
    if kind == "backfill":
        return generated(backfill_config(events, users, seed, days), end)
    return narrow(events, min(users, 1000))


def describe_input(kind: str, events: int, users: int, seed: int, days: float) -> str:
    if kind == "live":
        return "live traffic; " + describe(live_config(events, users, seed))
    if kind == "backfill":
        return f"backfill over {days:g} days; " + describe(
            backfill_config(events, users, seed, days)
        )
    return (
        f"narrow: {events:,} random events from {min(users, 1000):,} users over 2 hours, "
        "a random session id per event, seed 7"
    )
