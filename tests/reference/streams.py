"""Generated streams for the differential tests: raw messages, a commit plan, the rules.

A stream is a handful of people (users `u1`…`u3`, anonymous ids `a1`, `a2`) around one
instant where the reporting zone's clocks change (or midnight UTC), over 60 hours: recipe
events and Segment track calls (with `sentAt` clock correction and retries whose `sentAt` or
who-fields changed), crawlers, identify calls, client session ids reused or missing, funnel
steps with typed property values. The commit plan shuffles them into random batches with
redeliveries, optionally forgets a user in the middle and then delivers events dated after the
forget as well as redeliveries of older ones.

Times sit on a 30 s grid and every configured duration (gap, cap, windows) is 15 s off the
grid, so no generated stream lands on a boundary the docs leave open (tests/reference/
QUESTIONS.md); every event of a stream has its own time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.segment import Receipt, from_segment, prepare
from tests.reference.model import RefFunnel, RefRules, RefStep

GRID_S = 30.0
DAY_S = 86400.0
SPAN_S = 60 * 3600.0
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HUMAN_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"

# Instants where clocks change (UTC), per zone: fall-back first, then spring-forward.
CHANGES: dict[str, list[str]] = {
    "UTC": ["2026-11-01T00:00:00"],
    "America/New_York": ["2026-11-01T06:00:00", "2026-03-08T07:00:00"],
    "Europe/Berlin": ["2026-10-25T01:00:00", "2026-03-29T01:00:00"],
    "Australia/Lord_Howe": ["2026-04-04T15:00:00", "2026-10-03T15:30:00"],
}
ALL_CHANGES = [(zone, instant) for zone, instants in CHANGES.items() for instant in instants]
# Zones and instants with no repeated wall-clock hour: UTC and the spring-forward days.
NO_REPEAT = [(zone, instants[-1]) for zone, instants in CHANGES.items()]
REPEAT = [(zone, instants[0]) for zone, instants in CHANGES.items() if zone != "UTC"]

FUNNEL_JSON: list[dict[str, Any]] = [
    {
        "name": "buy",
        "steps": ["page_view", "search", {"event_type": "purchase", "where": {"qty": 1}}],
        "window_s": 3615,
    },
    {
        "name": "books",
        "steps": [{"event_type": "search", "where": {"item.kind": "book"}}, "add_to_cart"],
        "window_s": 7215,
    },
]
REF_FUNNELS = tuple(
    RefFunnel(
        f["name"],
        tuple(
            RefStep(s, ())
            if isinstance(s, str)
            else RefStep(s["event_type"], tuple(s["where"].items()))
            for s in f["steps"]
        ),
        float(f["window_s"]),
    )
    for f in FUNNEL_JSON
)
TYPES = ["page_view", "search", "purchase", "add_to_cart", "identify"]
QTY = [None, 1, True, "1", 2]
KIND = [None, "book", "pen"]


@dataclass
class Stream:
    """Rules, the clock's instants, the canonical events and the plan of operations:
    `("commit", [index, …])`, `("forget", user)` or `("clock", instant)`."""

    rules: RefRules
    start: float
    end: float  # clock during the first phase and at the forget; every first-phase event <=
    later: float  # clock after the forget (and received_at of the events dated after it)
    read_at: float
    events: list[Event] = field(default_factory=list)
    plan: list[tuple[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        rows = [
            f"tz={self.rules.timezone} relink={self.rules.allow_relink} "
            f"window={self.rules.identity_window_s} read_at=end+{self.read_at - self.end:.0f}"
        ]
        for i, e in enumerate(self.events):
            rows.append(
                f"  [{i}] t=start+{e.timestamp - self.start:.0f} {e.event_type} u={e.user_id} "
                f"a={e.anonymous_id} s={e.session_id} id={e.event_id} kind={e.id_kind} "
                f"props={ {k: v for k, v in e.properties.items() if k != 'context'} }"
            )
        rows.extend(f"  {op}" for op in self.plan)
        return "\n".join(rows)


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).isoformat().replace("+00:00", "Z")


def recipe_event(n: int, fields: dict[str, Any], received_at: float) -> Event:
    parsed = parse_message(json.dumps(fields).encode(), message_id=f"m{n}", received_at=received_at)
    assert isinstance(parsed, Event), parsed
    return parsed


def segment_event(call: dict[str, Any], received_at: float) -> Event:
    """A track call through the collector's normalization, then the worker's parser."""
    payload = from_segment(call, "track", receipt=Receipt(received_at))
    done = prepare([(call, payload)], received_at=received_at)
    assert not done.rejected, done.rejected
    ((_, _, data),) = done.accepted
    parsed = parse_message(data, message_id="unused", received_at=received_at)
    assert isinstance(parsed, Event), parsed
    return parsed


@st.composite
def streams(
    draw: st.DrawFn,
    *,
    changes: list[tuple[str, str]] | None = None,
    relink: list[bool] | None = None,
    ids_across_visits: bool = True,
    most: int = 30,
) -> Stream:
    """A stream around one of `changes` ((zone, instant) pairs; default: all of CHANGES),
    relinking as drawn from `relink` (default: both), client session ids reused across visits
    (a day or more apart) or only within one visit, at most `most` messages."""
    zone, instant = draw(st.sampled_from(changes or ALL_CHANGES))
    change = datetime.fromisoformat(instant).replace(tzinfo=UTC)
    start = change.timestamp() - SPAN_S / 2
    end = start + SPAN_S
    later = end + 3600.0
    rules = RefRules(
        timezone=zone,
        gap_s=1815.0,
        cap_s=86415.0,
        identity_window_s=draw(st.sampled_from([7215.0, 86415.0])),
        allow_relink=draw(st.sampled_from(relink or [False, True])),
        lateness_s=3 * 86400.0,
        funnels=REF_FUNNELS,
    )
    client_sessions = draw(st.booleans())
    n = draw(st.integers(1, most))
    # Events cluster in six two-hour visits 10 h apart, the fourth around the change.
    slots = draw(
        st.lists(
            st.tuples(st.integers(0, 5), st.integers(0, 239)), min_size=n, max_size=n, unique=True
        )
    )
    stream = Stream(rules, start, end, later, later + draw(st.sampled_from([0.0, 2, 5])) * 86400)
    after: list[int] = []
    used: set[float] = set()
    for i, (visit, step) in enumerate(slots):
        dated_after = draw(st.integers(0, 9)) == 0  # dated after the forget, delivered then
        if dated_after:
            timestamp = end + GRID_S * (step % 100 + 1)
        else:
            timestamp = change.timestamp() + (visit - 3) * 36000.0 - 3600 + GRID_S * step
        while timestamp in used:  # one time per event: ties are a docs question (Q3)
            timestamp += GRID_S
        used.add(timestamp)
        kind = draw(st.sampled_from(TYPES))
        user = draw(st.sampled_from([None, "u1", "u2", "u3"]))
        anon = draw(st.sampled_from([None, "a1", "a2"]))
        if kind == "identify":
            user, anon = user or "u1", anon or "a1"
        elif user is None and anon is None:
            anon = "a1"
        props: dict[str, Any] = {"user_agent": HUMAN_AGENT}
        if kind != "identify" and draw(st.integers(0, 7)) == 0:
            props["user_agent"] = BOT_AGENT
        if (qty := draw(st.sampled_from(QTY))) is not None:
            props["qty"] = qty
        if (item := draw(st.sampled_from(KIND))) is not None:
            props["item"] = {"kind": item}
        received = later if dated_after else end
        segment = not client_sessions and kind != "identify" and draw(st.booleans())
        if segment:
            drift = GRID_S * draw(st.integers(-240, 240))  # the device's clock, off
            call: dict[str, Any] = {
                "messageId": f"msg{i}",
                "event": kind,
                "timestamp": _iso(timestamp + drift),
                "sentAt": _iso(received + drift),
                "properties": props,
            }
            if user:
                call["userId"] = user
            if anon:
                call["anonymousId"] = anon
            stream.events.append(segment_event(call, received))
            if draw(st.integers(0, 3)) == 0:  # a retry: new sentAt, maybe a taught userId
                retry = dict(call)
                retry["sentAt"] = _iso(received + drift + GRID_S * draw(st.integers(-4, 4)))
                if draw(st.booleans()):
                    retry["userId"] = draw(st.sampled_from(["u1", "u2"]))
                stream.events.append(segment_event(retry, received))
                if dated_after:
                    after.append(len(stream.events) - 2)
        else:
            fields: dict[str, Any] = {
                "event_id": f"e{i}",
                "event_type": kind,
                "timestamp": timestamp,
                "properties": props,
            }
            if user:
                fields["user_id"] = user
            if anon:
                fields["anonymous_id"] = anon
            if client_sessions:
                client_id = draw(st.sampled_from(["s1", "s2", "-1"]))
                fields["session_id"] = client_id if ids_across_visits else f"{client_id}.{visit}"
            stream.events.append(recipe_event(i, fields, received))
        if dated_after:
            after.append(len(stream.events) - 1)
    _plan(draw, stream, after)
    return stream


def _plan(draw: st.DrawFn, stream: Stream, after: list[int]) -> None:
    """Random batches of a shuffled first phase with redeliveries; maybe a forget, then the
    events dated after it and redeliveries of earlier ones."""
    first = [i for i in range(len(stream.events)) if i not in after]
    order = draw(st.permutations(first))
    deliveries: list[int] = list(order)
    for _ in range(draw(st.integers(0, 4))):
        if order:
            deliveries.insert(draw(st.integers(0, len(deliveries))), draw(st.sampled_from(order)))
    _batches(draw, stream, deliveries)
    if draw(st.booleans()):
        stream.plan.append(("forget", draw(st.sampled_from(["u1", "u2"]))))
    second = list(after)
    if first:
        second += draw(st.lists(st.sampled_from(first), max_size=4))
    second = draw(st.permutations(second))
    stream.plan.append(("clock", stream.later))
    _batches(draw, stream, list(second))


def _batches(draw: st.DrawFn, stream: Stream, deliveries: list[int]) -> None:
    """Commits of 1-12 deliveries each, in order."""
    cut = 0
    while cut < len(deliveries):
        size = draw(st.integers(1, 12))
        batch: list[int] = []
        for i in deliveries[cut : cut + size]:
            if batch and _retry_of(stream, i, batch):
                break  # two copies of one message id in a batch: see KNOWN_DISAGREEMENTS.md
            batch.append(i)
        stream.plan.append(("commit", batch))
        cut += len(batch)


def _retry_of(stream: Stream, i: int, batch: list[int]) -> bool:
    """Whether event `i` is another copy of a message id already in `batch`."""
    event = stream.events[i]
    return event.id_kind == "message" and any(
        stream.events[j].event_id == event.event_id and j != i for j in batch
    )


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def stream_of(
    rows: list[dict[str, Any]],
    *,
    timezone: str = "UTC",
    batches: list[list[int]] | None = None,
    read_after_s: float = 3600.0,
    **rules: Any,
) -> Stream:
    """Recipe events `rows` (fields as sent; `event_id` defaults to e{i}), committed in
    `batches` (default: one each, in order), read `read_after_s` after the newest."""
    newest = max(float(r["timestamp"]) for r in rows)
    ref_rules = RefRules(
        timezone=timezone,
        lateness_s=rules.pop("lateness_s", 3 * DAY_S),
        funnels=rules.pop("funnels", REF_FUNNELS),
        **rules,
    )
    stream = Stream(ref_rules, newest - 3 * DAY_S, newest, newest, newest + read_after_s)
    for i, row in enumerate(rows):
        fields = {"event_id": f"e{i}", "event_type": "page_view", **row}
        stream.events.append(recipe_event(i, fields, newest))
    for batch in batches or [[i] for i in range(len(rows))]:
        stream.plan.append(("commit", batch))
    return stream
