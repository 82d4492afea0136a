"""An independent reference for the documented rules, computed straight from raw events.

Written from docs/behavior.md, docs/events.md and docs/api.md alone, not from the live fold:
it shares nothing with `behavioral_analytics` but the `Event` it reads (the parser's output,
taken as the canonical event) and the bot classifier the docs name (crawlerdetect). It is
deliberately plain: every figure is recomputed from the list of surviving raw events, with
loops and dictionaries, no incremental state.

What it keeps between operations is only what the docs say a store keeps: the raw events
(first copy stored wins, by the key rule of docs/events.md "Identity and exactly-once") and
the tombstones of forgotten people (docs/behavior.md "Forgetting a user").

Where the docs leave a number open, the choice made here is named in a comment with a `Q`
number; tests/reference/QUESTIONS.md lists them. The generated streams avoid the boundaries
those questions are about (times on a 30 s grid, durations that are not multiples of 30 s).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from crawlerdetect import CrawlerDetect

from behavioral_analytics.events import Event

STEP_S = 900.0  # every zone the tests use changes offset on a quarter-hour boundary

_crawlers = CrawlerDetect()


@dataclass(frozen=True)
class RefStep:
    """A funnel step: an event type and property paths (dotted) that must equal values."""

    event_type: str
    where: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class RefFunnel:
    name: str
    steps: tuple[RefStep, ...]
    window_s: float


@dataclass(frozen=True)
class RefRules:
    """The settings of docs/behavior.md "Settings", in seconds."""

    timezone: str = "UTC"
    gap_s: float = 1800.0
    cap_s: float = 86400.0
    identity_window_s: float = 86400.0
    allow_relink: bool = False
    lateness_s: float = 7 * 86400.0
    funnels: tuple[RefFunnel, ...] = ()


@dataclass(frozen=True)
class Point:
    """One series period: label, fold (1 only for the second pass of a repeated wall-clock
    period), totals, types, unique users (None for minutes), bot events."""

    label: str
    fold: int
    start: float
    total_events: int
    events_by_type: dict[str, int]
    unique_users: int | None
    bot_events: int


@dataclass(frozen=True)
class SessionFigures:
    label: str
    fold: int
    sessions: int
    duration_ms: int
    bounces: int
    events: int
    final: bool


@dataclass(frozen=True)
class RefLink:
    anonymous_id: str
    user_id: str
    linked_at: float
    event_key: str
    status: str


@dataclass
class Reference:
    """The state the docs say a store keeps: raw events by identity, and tombstones."""

    rules: RefRules
    events: dict[tuple[Any, ...], Event] = field(default_factory=dict)
    tombstones: dict[str, float] = field(default_factory=dict)  # "user" / "anonymous:ID"

    # -- writing ---------------------------------------------------------------------------

    def commit(self, events: Iterable[Event]) -> tuple[int, int, int]:
        """Store each event whose identity is new, unless a tombstone drops it; (created,
        duplicates, forgotten) as docs/behavior.md "Forgetting a user" counts them."""
        created = duplicates = forgotten = 0
        events = list(events)
        owner = self.owners_with(events)
        in_batch: set[object] = set()
        for i, event in enumerate(events):
            identity = event_identity(event)
            # A later copy in the same batch is a duplicate of the first, whatever became of it;
            # a tombstone is checked before the stored keys (QUESTIONS.md 15 and 16).
            if identity in in_batch:
                duplicates += 1
                continue
            in_batch.add(identity)
            if self.dropped_by_tombstone(event, owner[i]):
                forgotten += 1
            elif identity in self.events:
                duplicates += 1
            else:
                self.events[identity] = event
                created += 1
        return created, duplicates, forgotten

    def owners_with(self, batch: Sequence[Event]) -> list[str]:
        """Whom each event of `batch` would count for, were it stored with the stored events
        and the rest of the batch (identity links from all of them)."""
        events = dict(self.events)
        ids = []
        for i, event in enumerate(batch):
            identity = event_identity(event)
            if identity not in events:
                identity = ("batch", i)
                events[identity] = event
            ids.append(identity)
        owner = self.attribution(self.links(events), events)
        return [owner[identity] for identity in ids]

    def dropped_by_tombstone(self, event: Event, person: str) -> bool:
        """docs/behavior.md "Forgetting a user", step 6: an event is dropped when its sender
        (its user id, else `anonymous:ID`) has a tombstone dated at or after the event's time
        or its first publish time, or `person`, whom it counts for, one dated at or after the
        event's time (Q12)."""
        sender, counted_for = self.tombstones.get(actor(event)), self.tombstones.get(person)
        sent = min(event.timestamp, event.received_at)
        return (sender is not None and sent <= sender) or (
            counted_for is not None and event.timestamp <= counted_for
        )

    def forget(self, user: str, now: float) -> None:
        """docs/behavior.md "Forgetting a user" for a user id."""
        links = self.links()
        linked_anons = {
            link.anonymous_id for link in links if link.user_id == user and link.status == "active"
        }
        owner = self.attribution(links)
        # Step 1: who is forgotten. Step 2: a human event goes with whom it counts for, a
        # crawler's with its sender (Q13).
        forgotten = [user, *(f"anonymous:{a}" for a in sorted(linked_anons))]
        doomed: dict[tuple[Any, ...], str] = {}
        for identity, event in self.events.items():
            goes_with = actor(event) if is_bot(event) else owner[identity]
            if goes_with in forgotten:
                doomed[identity] = goes_with
        # Step 1 again: each forgotten person's tombstone is the forget's time, or the newest
        # of their deleted events' when it is later (Q14).
        for who in forgotten:
            stamp = max([now, *(self.events[i].timestamp for i, p in doomed.items() if p == who)])
            self.tombstones[who] = max(self.tombstones.get(who, stamp), stamp)
        for identity in doomed:
            del self.events[identity]

    # -- identity --------------------------------------------------------------------------

    def links(self, events: Mapping[tuple[Any, ...], Event] | None = None) -> list[RefLink]:
        """Every proposal with its status (docs/behavior.md "Identity"): per anonymous id,
        the earliest (time, key) proposal is active; later ones for the same user are
        duplicates; for another user refused, or with relinking the first per user active."""
        proposals: dict[str, list[Event]] = defaultdict(list)
        for event in (self.events if events is None else events).values():
            if is_bot(event):
                continue  # Q9: a crawler's identify proposes no link
            if event.event_type == "identify" and event.user_id and event.anonymous_id:
                proposals[event.anonymous_id].append(event)
        out: list[RefLink] = []
        for anon, found in proposals.items():
            found.sort(key=lambda e: (e.timestamp, e.key))
            linked: list[str] = []
            for event in found:
                user = event.user_id
                assert user is not None
                if user in linked:
                    status = "duplicate"
                elif not linked or self.rules.allow_relink:
                    status = "active"
                    linked.append(user)
                else:
                    status = "refused"
                out.append(RefLink(anon, user, event.timestamp, event.key, status))
        return out

    def attribution(
        self,
        links: Sequence[RefLink] | None = None,
        events: Mapping[tuple[Any, ...], Event] | None = None,
    ) -> dict[tuple[Any, ...], str]:
        """Who each stored event counts for (docs/behavior.md "Identity"): its user id; else,
        with the anonymous id's active links ordered by (time, key), the user of the last link
        made at or before the event; else, if the event is at or after the first link's time
        minus the identity window and after its user's tombstone, if any (Q17), that link's
        user; else `anonymous:ID`."""
        if links is None:
            links = self.links()
        active: dict[str, list[RefLink]] = defaultdict(list)
        for link in links:
            if link.status == "active":
                active[link.anonymous_id].append(link)
        for found in active.values():
            found.sort(key=lambda k: (k.linked_at, k.event_key))
        owner: dict[tuple[Any, ...], str] = {}
        window = self.rules.identity_window_s
        for identity, event in (self.events if events is None else events).items():
            if event.user_id is not None:
                owner[identity] = event.user_id
                continue
            anon = event.anonymous_id or ""
            found = active.get(anon, [])
            made = [k for k in found if k.linked_at <= event.timestamp]
            if made:
                owner[identity] = made[-1].user_id
            elif (
                found
                and found[0].linked_at - window <= event.timestamp
                and event.timestamp > self.tombstones.get(found[0].user_id, float("-inf"))
            ):
                owner[identity] = found[0].user_id
            else:
                owner[identity] = f"anonymous:{anon}"
        return owner

    def human(self) -> list[tuple[str, Event]]:
        """(person, event) of every stored human event, in time order."""
        owner = self.attribution()
        rows = [(owner[i], e) for i, e in self.events.items() if not is_bot(e)]
        rows.sort(key=lambda row: (row[1].timestamp, row[1].key))
        return rows

    # -- reads -----------------------------------------------------------------------------

    def profiles(self) -> dict[str, tuple[int, dict[str, int], float, float]]:
        """person → (total events, by type, first seen, last activity), human events."""
        out: dict[str, tuple[int, dict[str, int], float, float]] = {}
        for person, event in self.human():
            total, types, first, _ = out.get(person, (0, {}, event.timestamp, 0.0))
            types = dict(types)
            types[event.event_type] = types.get(event.event_type, 0) + 1
            out[person] = (total + 1, types, min(first, event.timestamp), event.timestamp)
        return out

    def series(self, granularity: str) -> list[Point]:
        """Periods with events, in time order (docs/api.md `/v1/series`)."""
        zone = ZoneInfo(self.rules.timezone)
        totals: dict[tuple[str, int], int] = defaultdict(int)
        types: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        users: dict[tuple[str, int], set[str]] = defaultdict(set)
        bots: dict[tuple[str, int], int] = defaultdict(int)
        starts: dict[tuple[str, int], float] = {}
        owner = self.attribution()
        for identity, event in self.events.items():
            period = label(event.timestamp, granularity, zone)
            starts[period] = min(starts.get(period, event.timestamp), event.timestamp)
            if is_bot(event):
                bots[period] += 1
                continue
            totals[period] += 1
            types[period][event.event_type] += 1
            users[period].add(owner[identity])
        points = [
            Point(
                label=period[0],
                fold=period[1],
                start=starts[period],
                total_events=totals.get(period, 0),
                events_by_type=dict(types.get(period, {})),
                unique_users=None if granularity == "minute" else len(users.get(period, ())),
                bot_events=bots.get(period, 0),
            )
            for period in starts
        ]
        return sorted(points, key=lambda p: p.start)

    def sessions(self) -> list[tuple[str, list[Event]]]:
        """(person, events) of every session (docs/behavior.md "Sessions"). Without a client
        session id: a new session after more than the gap without events, or once the session
        has lasted the cap from its first event. With one: the person's events with that id,
        whatever the gaps, cut by the same cap (Q4: the cap holds for client sessions)."""
        by_run: dict[tuple[str, str | None], list[Event]] = defaultdict(list)
        for person, event in self.human():
            by_run[(person, event.session_id)].append(event)  # Q5: ids and no ids apart
        out: list[tuple[str, list[Event]]] = []
        for (person, client_id), events in by_run.items():
            current: list[Event] = []
            for event in events:
                if current:
                    since_start = event.timestamp - current[0].timestamp
                    since_last = event.timestamp - current[-1].timestamp
                    if since_start >= self.rules.cap_s or (
                        client_id is None and since_last > self.rules.gap_s
                    ):
                        out.append((person, current))
                        current = []
                current.append(event)
            out.append((person, current))
        return out

    def session_series(self, granularity: str, now: float) -> list[SessionFigures]:
        """Per hour or day a session starts in: sessions, summed duration (ms), one-event
        sessions, events; final once now >= period end + cap + gap + lateness + identity
        window."""
        zone = ZoneInfo(self.rules.timezone)
        figures: dict[tuple[str, int], list[int]] = {}
        starts: dict[tuple[str, int], float] = {}
        for _, events in self.sessions():
            first = events[0].timestamp
            period = label(first, granularity, zone)
            row = figures.setdefault(period, [0, 0, 0, 0])
            row[0] += 1
            row[1] += round((events[-1].timestamp - first) * 1000)
            row[2] += len(events) == 1
            row[3] += len(events)
            starts[period] = min(starts.get(period, first), first)
        wait = (
            self.rules.cap_s
            + self.rules.gap_s
            + self.rules.lateness_s
            + self.rules.identity_window_s
        )
        out = [
            SessionFigures(
                period[0],
                period[1],
                row[0],
                row[1],
                row[2],
                row[3],
                final=now >= period_end(starts[period], granularity, zone) + wait,
            )
            for period, row in figures.items()
        ]
        return sorted(out, key=lambda f: starts[(f.label, f.fold)])

    def funnel(self, name: str) -> dict[str, list[int]]:
        """day → users reaching each step (docs/behavior.md "Funnels"): entries on step-1
        events; from each, greedily the earliest later event — after the previous step's in
        (time, key) order — matching the next step within the window of the entry
        (inclusive); a person counts once per day at their furthest step."""
        funnel = next(f for f in self.rules.funnels if f.name == name)
        zone = ZoneInfo(self.rules.timezone)
        per_person: dict[str, list[Event]] = defaultdict(list)
        for person, event in self.human():
            per_person[person].append(event)
        furthest: dict[tuple[str, str], int] = {}
        for person, events in per_person.items():
            for i, entry in enumerate(events):
                if not matches(funnel.steps[0], entry):
                    continue
                reached = 1
                last = i
                for step in funnel.steps[1:]:
                    found = next(
                        (
                            j
                            for j in range(last + 1, len(events))
                            if events[j].timestamp - entry.timestamp <= funnel.window_s
                            and matches(step, events[j])
                        ),
                        None,
                    )
                    if found is None:
                        break
                    reached += 1
                    last = found
                day = label(entry.timestamp, "day", zone)[0]
                furthest[(day, person)] = max(furthest.get((day, person), 0), reached)
        out: dict[str, list[int]] = {}
        for (day, _), reached in furthest.items():
            row = out.setdefault(day, [0] * len(funnel.steps))
            for k in range(reached):
                row[k] += 1
        return dict(sorted(out.items()))


# -- plain helpers ---------------------------------------------------------------------------


def actor(event: Event) -> str:
    """docs/events.md: aggregates key on the user id, else `anonymous:<anonymous_id>`."""
    return event.user_id if event.user_id is not None else f"anonymous:{event.anonymous_id}"


def event_identity(event: Event) -> tuple[Any, ...]:
    """docs/events.md "Identity and exactly-once": a Segment call (`id_kind: "message"`) is its
    message id alone; anything else is (event id, who, type, the client's time as sent to the
    microsecond)."""
    if event.id_kind == "message":
        return ("message", event.event_id)
    sent = event.client_timestamp if event.client_timestamp is not None else event.timestamp
    return ("event", event.event_id, actor(event), event.event_type, round(sent * 1e6))


def is_bot(event: Event) -> bool:
    """docs/behavior.md "Bots": `properties.user_agent`, or Segment's `context.userAgent`."""
    props = event.properties
    agent = props.get("user_agent")
    if not isinstance(agent, str):
        context = props.get("context")
        agent = context.get("userAgent") if isinstance(context, dict) else None
    return isinstance(agent, str) and bool(_crawlers.isCrawler(agent))


def label(instant: float, granularity: str, zone: ZoneInfo) -> tuple[str, int]:
    """(label in the zone, fold) per docs/behavior.md "Periods when clocks change": minute
    `YYYY-MM-DD-HH-MM`, hour `YYYY-MM-DD-HH`, day `YYYY-MM-DD`; on the second pass of a
    wall-clock time (clocks went back) the hour is written `HHb`, in its minutes too, and
    `fold` is 1."""
    local = datetime.fromtimestamp(instant, UTC).astimezone(zone)
    if granularity == "day":
        return local.strftime("%Y-%m-%d"), 0
    fold = _fold(local, zone)
    hour = local.strftime("%Y-%m-%d-%H") + ("b" if fold else "")
    if granularity == "hour":
        return hour, fold
    return f"{hour}-{local.minute:02d}", fold


def _fold(local: datetime, zone: ZoneInfo) -> int:
    """1 when the same wall-clock time was already passed once at a larger offset."""
    naive = local.replace(tzinfo=None)
    first = naive.replace(fold=0, tzinfo=zone)
    second = naive.replace(fold=1, tzinfo=zone)
    if first.utcoffset() == second.utcoffset():
        return 0
    return int(local.utcoffset() == second.utcoffset())


def period_end(instant: float, granularity: str, zone: ZoneInfo) -> float:
    """The first instant after `instant` in another period, found by stepping through time."""
    here = label(instant, granularity, zone)
    t = (instant // STEP_S + 1) * STEP_S
    if granularity == "minute":
        t = (instant // 60 + 1) * 60
        step = 60.0
    else:
        step = STEP_S
    while label(t, granularity, zone) == here:
        t += step
    return t


def matches(step: RefStep, event: Event) -> bool:
    """The event's type is the step's and each `where` path equals its value, compared as
    JSON values: `true` is not `1`, `"1"` is not `1`, `1` equals `1.0`; a missing property
    matches nothing."""
    if event.event_type != step.event_type:
        return False
    for path, value in step.where:
        here: Any = event.properties
        for part in path.split("."):
            if not isinstance(here, Mapping) or part not in here:
                return False
            here = here[part]
        if not json_equal(here, value):
            return False
    return True


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values by JSON type."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
