"""Synthetic traffic whose behaviour looks real, with its ground truth. Pure: no I/O, no clock.

Humans browse in sessions: exponential gaps between events within a session, more than the
inactivity timeout (30 min) between sessions, page popularity following Zipf's law, a funnel
page_view → search → add_to_cart → purchase with a drop-off at each step, a device and a
referrer mix, purchases with amounts and currencies. Crawlers (bot user agents) hit pages in
fast bursts. Each actor sends from one public IPv4 address (`ip`: `synthetic_addresses`). On
top, the generator injects what production traffic carries: duplicates (the same message sent
again, byte for byte), late events (sent minutes to hours after their timestamp) and
malformed messages of several kinds, each with the rejection reason the worker must record.

Everything is drawn from one `random.Random(seed)`, and every time is `start` plus a simulated
offset, so a seed and a start reproduce the same bytes. See docs/loadtest.md.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from behavioral_analytics.drawn_events import DrawnEvent, Visit, agent_for
from behavioral_analytics.synthetic_addresses import client_ip

__all__ = [
    "BOT_USER_AGENTS",
    "EVENT_TYPES",
    "FUNNEL",
    "MALFORMED_KINDS",
    "Generated",
    "GeneratorConfig",
    "Message",
    "SessionTruth",
    "anchored_start",
    "expected_session_events",
    "generate",
    "iter_messages",
    "synthetic_stream",
    "with_seed",
]

EVENT_TYPES = ("page_view", "button_click", "purchase", "search", "signup", "login")
FUNNEL = ("page_view", "search", "add_to_cart", "purchase")
BOT_USER_AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.32.3",
)
# Kind of malformed message → the reason code the worker records for it (events.py).
MALFORMED_KINDS: dict[str, str] = {
    "not_json": "not_json",
    "not_an_object": "not_an_object",
    "missing_user_id": "missing_field:user_id",
    "missing_event_type": "missing_field:event_type",
    "bad_timestamp": "invalid_timestamp",
    "future_timestamp": "timestamp_in_future",
    "bad_properties": "invalid_type:properties",
}
SEARCH_TERMS = (
    "shoes", "laptop", "coffee", "gift", "headphones", "backpack", "watch", "jacket",
    "phone case", "desk lamp", "running shoes", "tea", "camera", "keyboard", "sunglasses",
)  # fmt: skip
BUTTONS = ("add_to_wishlist", "share", "newsletter_signup", "filter", "sort", "next_page")
_TEN_YEARS = 10 * 365 * 86400.0

MessageKind = Literal["event", "duplicate", "malformed"]


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """The model's parameters. Rates are probabilities per message; times are seconds."""

    events: int | None = 1000  # messages to emit (duplicates and malformed included); None: endless
    users: int = 100
    user_prefix: str = "user_"  # user ids are the prefix and 1 … users
    seed: int | None = None
    start: float = 1_764_320_000.0  # epoch seconds of simulated time zero
    # sessions
    session_timeout_s: float = 1800.0  # inactivity that ends a session
    mean_gap_s: float = 30.0  # within a session: exponential, truncated below the timeout
    mean_idle_s: float = 3600.0  # between sessions: timeout + exponential with this mean
    mean_page_views: float = 5.0  # per session, geometric (at least 1)
    click_rate: float = 0.4  # chance of a button_click after each page view
    new_user_rate: float = 0.2  # users whose first session starts with a signup
    login_rate: float = 0.3  # returning users' sessions that start with a login
    # pages and funnel
    pages: int = 50
    zipf_s: float = 1.1
    funnel_dropoff: tuple[float, float, float] = (0.4, 0.6, 0.5)  # per step after page_view
    # mixes (weights)
    devices: tuple[tuple[str, float], ...] = (("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.1))
    referrers: tuple[tuple[str, float], ...] = (
        ("direct", 0.35), ("google.com", 0.3), ("twitter.com", 0.1), ("facebook.com", 0.1),
        ("newsletter", 0.1), ("bing.com", 0.05),
    )  # fmt: skip
    currencies: tuple[tuple[str, float], ...] = (("USD", 0.7), ("EUR", 0.2), ("GBP", 0.1))
    median_amount: float = 60.0  # log-normal purchase amounts
    # dirt
    duplicate_rate: float = 0.01
    late_rate: float = 0.02
    late_min_s: float = 120.0  # late events are sent this long (log-uniform) after their time
    late_max_s: float = 6 * 3600.0
    # Late shares stamped back in time: ((share, up_to_s), …), e.g. ((0.05, 3600), (0.01, 3 days)).
    # A share's delay is log-uniform from the previous tier's up_to_s (first: late_min_s).
    late_tiers: tuple[tuple[float, float], ...] = ()
    malformed_rate: float = 0.005
    bot_rate: float = 0.05  # share of events from crawlers
    bots: int = 3
    bot_burst_pages: float = 40.0  # mean pages per crawl burst
    bot_mean_gap_s: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "events": self.events is None or self.events >= 0,
            "users": self.users >= 1,
            "pages": self.pages >= 1,
            "bots": self.bots >= 1,
            "mean_gap_s": 0 < self.mean_gap_s < self.session_timeout_s,
            "mean_idle_s": self.mean_idle_s >= 0,
            "mean_page_views": self.mean_page_views >= 1,
            "late_min_s": 0 < self.late_min_s <= self.late_max_s,
            "zipf_s": self.zipf_s >= 0,
            "funnel_dropoff": len(self.funnel_dropoff) == len(FUNNEL) - 1
            and all(0 <= p <= 1 for p in self.funnel_dropoff),
            "bot_rate": 0 <= self.bot_rate < 1,
        }
        for name in ("click_rate", "new_user_rate", "login_rate", "duplicate_rate", "late_rate"):
            checks[name] = 0 <= getattr(self, name) <= 1
        checks["malformed_rate"] = 0 <= self.malformed_rate < 1
        bounds = [self.late_min_s, *(up_to for _, up_to in self.late_tiers)]
        checks["late_tiers"] = sum(share for share, _ in self.late_tiers) <= 1 and all(
            share >= 0 and low < high
            for (share, _), low, high in zip(self.late_tiers, bounds, bounds[1:], strict=False)
        )
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            rule = f" (above 0, below session_timeout_s {self.session_timeout_s:g} s)"
            named = [name + rule * (name == "mean_gap_s") for name in bad]
            raise ValueError(f"invalid generator parameter(s): {', '.join(named)}")

    @property
    def funnel_rates(self) -> tuple[float, ...]:
        """Conversion of each funnel step from the previous one."""
        return tuple(1.0 - p for p in self.funnel_dropoff)


@dataclass(frozen=True, slots=True)
class Message:
    """One message as sent. `sent_at` is its simulated send time (its timestamp, unless late)."""

    data: bytes
    kind: MessageKind
    sent_at: float
    late: bool = False
    bot: bool = False
    reason: str | None = None  # for malformed messages: the expected rejection reason

    def payload(self) -> Any:
        return json.loads(self.data)


@dataclass(slots=True)
class SessionTruth:
    session_id: str
    user_id: str
    funnel_depth: int  # 1 = page views only … 4 = purchase
    page_views: int
    planned_events: int
    emitted_events: int = 0

    @property
    def complete(self) -> bool:
        return self.emitted_events == self.planned_events


@dataclass(slots=True)
class Generated:
    """The messages, in send order, and what the generator knows about them."""

    config: GeneratorConfig
    messages: list[Message]
    sessions: dict[str, SessionTruth]

    def counts(self) -> dict[str, int]:
        kinds = Counter(m.kind for m in self.messages)
        return {
            "messages": len(self.messages),
            "events": kinds["event"],
            "duplicates": kinds["duplicate"],
            "malformed": kinds["malformed"],
            "late": sum(1 for m in self.messages if m.late and m.kind == "event"),
            "bot": sum(1 for m in self.messages if m.bot and m.kind == "event"),
            "sessions": len(self.sessions),
        }

    @property
    def span_s(self) -> float:
        if not self.messages:
            return 0.0
        return max(m.sent_at for m in self.messages) - self.config.start


def expected_session_events(config: GeneratorConfig) -> float:
    """Mean events in a returning user's session the parameters imply: the optional login,
    the page views and their clicks, and the funnel steps reached."""
    funnel = sum(math.prod(config.funnel_rates[: i + 1]) for i in range(len(FUNNEL) - 1))
    return config.login_rate + config.mean_page_views * (1 + config.click_rate) + funnel


def generate(config: GeneratorConfig) -> Generated:
    """Every message of a finite run, with the ground truth."""
    if config.events is None:
        raise ValueError("generate() needs a finite number of events")
    sessions: dict[str, SessionTruth] = {}
    messages = list(_Simulation(config, sessions).run())
    return Generated(config, messages, sessions)


def iter_messages(config: GeneratorConfig) -> Iterator[Message]:
    """The messages in send order, without keeping them (for large or endless runs)."""
    return _Simulation(config, None).run()


def anchored_start(config: GeneratorConfig, end: float) -> float:
    """The start that makes the last message of this run be sent at `end` (e.g. now).

    Runs the simulation once from time zero to measure its span, so it needs a seed (see
    `with_seed`)."""
    if config.events is None:
        return end
    if config.seed is None:
        raise ValueError("anchored_start needs a seeded config: with_seed(config)")
    last = 0.0
    for message in iter_messages(replace(config, start=0.0)):
        last = max(last, message.sent_at)
    return end - last


def with_seed(config: GeneratorConfig) -> GeneratorConfig:
    """The config with a fresh random seed if it has none, so that the run can be repeated."""
    if config.seed is not None:
        return config
    return replace(config, seed=random.SystemRandom().randrange(2**31))


def synthetic_stream(seed: int | None = None, users: int = 100) -> Iterator[dict[str, Any]]:
    """An endless stream of valid recipe-shaped events stamped with the current time, for live
    traffic: the model's users, sessions, funnel and crawlers, without the injected dirt."""
    config = GeneratorConfig(
        events=None, users=users, seed=seed, duplicate_rate=0, late_rate=0, malformed_rate=0
    )
    for message in iter_messages(config):
        payload = message.payload()
        payload["timestamp"] = round(time.time(), 3)
        yield payload


class _Weighted:
    """Draws from a fixed discrete distribution with one bisection (deterministic)."""

    def __init__(self, items: tuple[tuple[Any, float], ...]) -> None:
        self.values = [value for value, _ in items]
        self.cumulative = list(itertools.accumulate(weight for _, weight in items))

    def draw(self, rng: random.Random) -> Any:
        point = rng.random() * self.cumulative[-1]
        index = min(bisect.bisect_right(self.cumulative, point), len(self.values) - 1)
        return self.values[index]


@dataclass(slots=True)
class _Planned:
    """An event an actor will emit at `offset` seconds after start: a crawler's payload, or a
    person's draws, made into a payload only when sent (`payload`)."""

    offset: float
    made: dict[str, Any] | DrawnEvent
    session: SessionTruth | None = None
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        """The event as sent, its `timestamp` 0 until the sender stamps it."""
        return self.made if isinstance(self.made, dict) else self.made.payload()


@dataclass(slots=True)
class _User:
    user_id: str
    device: str
    new: bool
    sessions: int = 0
    queue: list[_Planned] = field(default_factory=list)


class _Simulation:
    def __init__(self, config: GeneratorConfig, sessions: dict[str, SessionTruth] | None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.sessions = sessions
        self.pages = _Weighted(
            tuple((k, 1.0 / k**config.zipf_s) for k in range(1, config.pages + 1))
        )
        self._page_paths = {k: f"/page/{k}" for k in range(1, config.pages + 1)}
        self.terms = _Weighted(tuple((t, 1.0 / (i + 1)) for i, t in enumerate(SEARCH_TERMS)))
        self.devices = _Weighted(config.devices)
        self.referrers = _Weighted(config.referrers)
        self.currencies = _Weighted(config.currencies)
        self.session_counter = itertools.count(1)
        # Each person's first session is planned first in every run, so ids from a counter
        # alone would repeat in the next run for the same person, and a client session id
        # joins events whatever the gap between them (docs/behavior.md): the ids carry the run.
        run = random.Random(None if config.seed is None else f"{config.seed}/{config.start!r}")
        self.session_prefix = f"sess_{run.getrandbits(24):06x}_"
        self.mu_amount = math.log(config.median_amount)

    # -- humans -----------------------------------------------------------------------------

    def _gap(self) -> float:
        """Exponential, truncated below the inactivity timeout (resampled), so that a session
        never splits."""
        limit = self.config.session_timeout_s
        for _ in range(100):
            gap = self.rng.expovariate(1.0 / self.config.mean_gap_s)
            if gap < limit:
                return gap
        return limit / 2

    def _idle(self) -> float:
        # strictly more than the timeout, so sessionizing by inactivity finds the same sessions
        return (
            self.config.session_timeout_s
            + 1.0
            + self.rng.expovariate(1.0 / max(self.config.mean_idle_s, 1e-9))
        )

    def _plan_session(self, user: _User, begin: float) -> None:
        cfg, rng = self.config, self.rng
        session_id = f"{self.session_prefix}{next(self.session_counter)}"
        referrer = self.referrers.draw(rng)
        device = user.device if rng.random() < 0.8 else self.devices.draw(rng)
        types: list[str] = []
        if user.sessions == 0 and user.new:
            types.append("signup")
        elif user.sessions > 0 and rng.random() < cfg.login_rate:
            types.append("login")
        page_views = 1
        p_more = 1.0 - 1.0 / cfg.mean_page_views
        while rng.random() < p_more:
            page_views += 1
        browse: list[str] = []
        for _ in range(page_views):
            browse.append("page_view")
            if rng.random() < cfg.click_rate:
                browse.append("button_click")
        depth = 1
        for rate in cfg.funnel_rates:
            if rng.random() >= rate:
                break
            depth += 1
        # funnel steps happen in order, each after a page view
        funnel = list(FUNNEL[1:depth])
        view_positions = [i for i, t in enumerate(browse) if t == "page_view"]
        anchors = sorted(rng.choice(view_positions) for _ in funnel)
        for step, anchor in zip(reversed(funnel), reversed(anchors), strict=True):
            browse.insert(anchor + 1, step)
        types.extend(browse)
        truth = SessionTruth(session_id, user.user_id, depth, page_views, len(types))
        if self.sessions is not None:
            self.sessions[session_id] = truth
        product = f"sku_{self.pages.draw(rng) * 7 + rng.randint(0, 6)}"
        visit = Visit(
            user.user_id, session_id, referrer, device, product, agent_for(user.user_id, device)
        )
        offset = begin
        for i, event_type in enumerate(types):
            if i:
                offset += self._gap()
            user.queue.append(_Planned(offset, self._draw(visit, event_type), truth))
        user.sessions += 1

    def _draw(self, visit: Visit, event_type: str) -> DrawnEvent:
        rng = self.rng
        if event_type == "search":
            page = "/search"
        elif event_type in ("add_to_cart", "purchase"):
            page = "/checkout" if event_type == "purchase" else f"/product/{visit.product}"
        elif event_type in ("signup", "login"):
            page = f"/{event_type}"
        else:
            page = self._page_paths[self.pages.draw(rng)]
        extra: str | tuple[float, str] | None = None
        if event_type == "search":
            extra = self.terms.draw(rng)
        elif event_type == "button_click":
            extra = rng.choice(BUTTONS)
        elif event_type == "purchase":
            amount = math.exp(rng.gauss(self.mu_amount, 0.8))
            extra = (round(max(amount, 1.0), 2), self.currencies.draw(rng))
        return DrawnEvent(visit, event_type, page, extra, rng.randint(100000, 999999))

    # -- crawlers ---------------------------------------------------------------------------

    def _bot_idle_mean(self) -> float:
        """Mean pause between a bot's bursts that gives crawlers `bot_rate` of all events."""
        cfg = self.config
        if cfg.bot_rate <= 0:
            return math.inf
        cycle = (
            cfg.session_timeout_s
            + cfg.mean_idle_s
            + (expected_session_events(cfg) - 1) * cfg.mean_gap_s
        )
        human_rate = cfg.users * expected_session_events(cfg) / cycle
        per_bot = human_rate * cfg.bot_rate / (1 - cfg.bot_rate) / cfg.bots
        return max(cfg.bot_burst_pages / per_bot - cfg.bot_burst_pages * cfg.bot_mean_gap_s, 0.0)

    def _plan_burst(self, bot: _User, begin: float) -> None:
        cfg, rng = self.config, self.rng
        agent = BOT_USER_AGENTS[(int(bot.user_id.rsplit("_", 1)[1]) - 1) % len(BOT_USER_AGENTS)]
        pages = 1
        p_more = 1.0 - 1.0 / max(cfg.bot_burst_pages, 1.0)
        while rng.random() < p_more:
            pages += 1
        offset = begin
        for i in range(pages):
            if i:
                offset += rng.expovariate(1.0 / cfg.bot_mean_gap_s)
            payload = {
                "event_id": f"evt_{rng.randint(100000, 999999)}",
                "anonymous_id": bot.user_id,
                "event_type": "page_view",
                "timestamp": 0.0,
                "properties": {
                    "page_url": f"/page/{rng.randint(1, cfg.pages)}",
                    "referrer": "direct",
                    "device_type": "bot",
                    "user_agent": agent,
                    "ip": client_ip(bot.user_id),
                },
            }
            bot.queue.append(_Planned(offset, payload, None, bot=True))
        bot.sessions += 1

    # -- the run ----------------------------------------------------------------------------

    def _actors(self) -> list[_User]:
        cfg, rng = self.config, self.rng
        actors = [
            _User(f"{cfg.user_prefix}{i}", self.devices.draw(rng), rng.random() < cfg.new_user_rate)
            for i in range(1, cfg.users + 1)
        ]
        cycle = cfg.session_timeout_s + cfg.mean_idle_s
        for user in actors:
            self._plan_session(user, rng.uniform(0, cycle))
        bot_idle = self._bot_idle_mean()
        if math.isfinite(bot_idle):
            for i in range(1, cfg.bots + 1):
                bot = _User(f"crawler_{i}", "bot", False)
                self._plan_burst(bot, rng.uniform(0, bot_idle + 1.0))
                actors.append(bot)
        return actors

    def _next_of(self, actor: _User) -> _Planned:
        if not actor.queue:
            last = self._last_offset[id(actor)]
            if actor.device == "bot":
                idle = self.rng.expovariate(1.0 / max(self._bot_idle, 1e-9))
                self._plan_burst(actor, last + idle)
            else:
                self._plan_session(actor, last + self._idle())
        planned = actor.queue.pop(0)
        self._last_offset[id(actor)] = planned.offset
        return planned

    def run(self) -> Iterator[Message]:
        cfg, rng = self.config, self.rng
        self._bot_idle = self._bot_idle_mean()
        self._last_offset: dict[int, float] = {}
        actors = self._actors()
        heap: list[tuple[float, int, _Planned]] = []
        for index, actor in enumerate(actors):
            planned = self._next_of(actor)
            heap.append((planned.offset, index, planned))
        heapq.heapify(heap)
        # Late events and duplicates wait here until the simulated clock reaches their send
        # time. Scheduling uses offsets from start only (never start + offset), so the same
        # seed makes the same choices whatever the start: `anchored_start` relies on it.
        pending: list[tuple[float, int, Message, SessionTruth | None]] = []
        order = itertools.count()
        emitted = 0
        limit = cfg.events

        def emit(message: Message, offset: float, session: SessionTruth | None) -> Message:
            if message.kind == "event":
                if session is not None:
                    session.emitted_events += 1
                if rng.random() < cfg.duplicate_rate:
                    resend = offset + rng.expovariate(1 / 5.0)
                    duplicate = Message(
                        message.data, "duplicate", cfg.start + resend, message.late, message.bot
                    )
                    heapq.heappush(pending, (resend, next(order), duplicate, None))
            return message

        while limit is None or emitted < limit:
            now = heap[0][0]
            if pending and pending[0][0] <= now:
                offset, _, message, session = heapq.heappop(pending)
                emitted += 1
                yield emit(message, offset, session)
                continue
            _, index, planned = heapq.heappop(heap)
            following = self._next_of(actors[index])
            heapq.heappush(heap, (following.offset, index, following))
            sent_at = cfg.start + planned.offset
            back_s = self._late_tier_delay() if cfg.late_tiers else 0.0
            payload = planned.payload()
            payload["timestamp"] = round(sent_at - back_s, 3)
            if cfg.malformed_rate and rng.random() < cfg.malformed_rate:
                emitted += 1
                yield self._malformed(payload, sent_at)
                if limit is not None and emitted >= limit:
                    break
            data = _dumps(payload).encode()
            if cfg.late_rate and rng.random() < cfg.late_rate:
                delay = math.exp(rng.uniform(math.log(cfg.late_min_s), math.log(cfg.late_max_s)))
                late = planned.offset + delay
                message = Message(data, "event", cfg.start + late, late=True, bot=planned.bot)
                heapq.heappush(pending, (late, next(order), message, planned.session))
                continue
            emitted += 1
            message = Message(data, "event", sent_at, late=back_s > 0, bot=planned.bot)
            yield emit(message, planned.offset, planned.session)

    def _late_tier_delay(self) -> float:
        """How far back `late_tiers` stamps this event (0: on time). Sent in its place in the
        stream, so the stated shares hold from a run's first message, however short the run."""
        point, low = self.rng.random(), self.config.late_min_s
        for share, up_to in self.config.late_tiers:
            if point < share:
                return math.exp(self.rng.uniform(math.log(low), math.log(up_to)))
            point, low = point - share, up_to
        return 0.0

    def _malformed(self, template: dict[str, Any], sent_at: float) -> Message:
        rng = self.rng
        kind = rng.choice(tuple(MALFORMED_KINDS))
        payload = json.loads(_dumps(template))
        payload["event_id"] = f"evt_bad_{rng.randint(100000, 999999)}"
        if kind == "not_json":
            text = _dumps(payload)
            data = text[: 1 + int(rng.random() * (len(text) - 2))]  # draws never depend on start
        elif kind == "not_an_object":
            data = _dumps([payload["event_type"], payload["timestamp"]])
        else:
            if kind == "missing_user_id":
                payload.pop("user_id", None)
                payload.pop("anonymous_id", None)
            elif kind == "missing_event_type":
                del payload["event_type"]
            elif kind == "bad_timestamp":
                payload["timestamp"] = rng.choice(("yesterday", "2026-13-45T99:00:00Z", "soon"))
            elif kind == "future_timestamp":
                payload["timestamp"] = round(sent_at + _TEN_YEARS, 3)
            elif kind == "bad_properties":
                payload["properties"] = "page_url=/page/1"
            data = _dumps(payload)
        return Message(data.encode(), "malformed", sent_at, reason=MALFORMED_KINDS[kind])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
