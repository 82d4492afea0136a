"""What a library's session must have left behind, checked call by call.

For each scripted call the driver reports the message the library built (its `messageId`,
`userId`, `anonymousId`, `timestamp`, `context`). The stored events are matched to calls by
`event_id` == `messageId` (Segment's identity of a message), and every call must be stored
exactly once with the right person, event type, time, properties and context. Problems are
collected, not raised one by one, and reported with the requests that carried the call through
the proxy and the collector's answers to them, so that a failure says what the library sent
and what the collector did with it.

Time: the collector corrects the device clock with `sentAt` (Segment's rule `timestamp =
receivedAt - (sentAt - timestamp as sent)`), so a stored time lies between the time the library
stamped (shifted by the device's clock offset) and that plus the delivery delay;
`TIME_TOLERANCE_S` bounds the delay on a loaded machine, far below the two hours by which the
scripted past event and the skewed browser clock would show a wrong rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from behavioral_analytics.bots import BOT_PROPERTY
from behavioral_analytics.events import Event
from tests.conformance.fault_proxy import Exchange, Fault
from tests.conformance.script import STORE_SIDE_CALLS

__all__ = [
    "TIME_TOLERANCE_S",
    "Outcome",
    "Profile",
    "alias_and_group_answers",
    "fault_problems",
    "store_side_problems",
    "stored_once_problems",
]

TIME_TOLERANCE_S = 30.0
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Profile:
    """What is particular to one library: the `context.library.name` it sends, the statuses
    it counts as delivered (`success`) and after which it gives up (`final`), and for a
    browser library its user agent, page URL and device clock offset."""

    library: str
    success: Callable[[int], bool]
    final: Callable[[int], bool]
    client_side: bool = False
    user_agent: str | None = None
    page_url: str | None = None
    clock_offset_s: float = 0.0


@dataclass
class Outcome:
    """A finished session: the script, the driver's report per call, the proxy's log, and
    everything the store holds (events and dead letters) once the worker has drained."""

    name: str
    profile: Profile
    calls: list[dict[str, Any]]
    results: list[dict[str, Any]]
    exchanges: list[Exchange]
    faults: list[Fault]
    events: list[Event]
    dead_letters: list[Any]
    notes: list[str] = field(default_factory=list)
    identified_user: str | None = None  # browser: a retry may add it to an anonymous call

    def ids(self, kinds: tuple[str, ...] | None = None) -> list[str]:
        return [
            result["messageId"]
            for call, result in zip(self.calls, self.results, strict=True)
            if result.get("messageId") and (kinds is None or call["call"] in kinds)
        ]

    def carrying(self, message_id: str) -> list[Exchange]:
        return [e for e in self.exchanges if message_id in e.message_ids()]

    def transcript(self) -> str:
        """Every exchange of the session, then what was stored and dead-lettered for its calls."""
        lines = [exchange.describe(limit=2000) for exchange in self.exchanges]
        ids = set(self.ids())
        lines += [
            json.dumps(event.to_dict(), ensure_ascii=False, default=str)
            for event in self.events
            if event.event_id in ids
        ]
        lines += [
            f"dead letter {message_id}: {letter.reason}: {letter.detail}"
            for message_id, letters in _dead_letters_by_id(self).items()
            for letter in letters
        ]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def report(self, problems: list[str], message_ids: list[str] | None = None) -> str:
        """The problems, the session's notes, and the exchanges of the calls concerned."""
        lines = [f"{len(problems)} problem(s) in the {self.name} session:"]
        lines += [f"  - {problem}" for problem in problems]
        lines += [f"  note: {note}" for note in self.notes]
        wanted = set(message_ids if message_ids is not None else self.ids())
        shown = [e for e in self.exchanges if wanted & set(e.message_ids())] or self.exchanges
        lines += ["  " + exchange.describe() for exchange in shown[:40]]
        return "\n".join(lines)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _label(call: dict[str, Any]) -> str:
    name = call.get("event") or call.get("name")
    return f"{call['call']} {name!r}" if name else call["call"]


def _expected_type(call: dict[str, Any]) -> str:
    kind = call["call"]
    if kind == "track":
        return str(call["event"])
    return {"page": "page_view", "screen": "screen_view"}.get(kind, kind)


def _sent_properties(call: dict[str, Any]) -> dict[str, Any]:
    properties = dict(call.get("traits") or call.get("properties") or {})
    for key in call.get("truncateMidEmoji", ()):
        properties.pop(key, None)  # checked apart
    if call["call"] in ("page", "screen"):
        if call.get("name") is not None:
            properties["name"] = call["name"]
        if call.get("category") is not None:
            properties["category"] = call["category"]
    return properties


def _call_problems(
    outcome: Outcome, call: dict[str, Any], result: dict[str, Any], event: Event
) -> list[str]:
    profile = outcome.profile
    problems = []
    label = _label(call)

    if event.event_type != _expected_type(call):
        problems.append(f"{label}: stored as type {event.event_type!r}")

    users = {result.get("userId") or None}
    if outcome.identified_user and not result.get("userId"):
        users.add(outcome.identified_user)  # the retry of an anonymous call after identify
    if event.user_id not in users or event.anonymous_id != (result.get("anonymousId") or None):
        problems.append(
            f"{label}: stored for user_id={event.user_id!r} anonymous_id="
            f"{event.anonymous_id!r}, sent by user_id={result.get('userId')!r} "
            f"anonymous_id={result.get('anonymousId')!r}"
        )

    if not result.get("timestamp"):
        return [*problems, f"{label}: the library reported no timestamp ({result})"]
    stamped = _epoch(result["timestamp"]) - profile.clock_offset_s
    if not stamped - 1 <= event.timestamp <= stamped + TIME_TOLERANCE_S:
        problems.append(
            f"{label}: stored at {event.timestamp:.3f}, expected {stamped:.3f} "
            f"(library stamped {result['timestamp']}, device clock offset "
            f"{profile.clock_offset_s:+.0f} s); {event.timestamp - stamped:+.1f} s off"
        )
    if call.get("timestamp") and _epoch(call["timestamp"]) != _epoch(result["timestamp"]):
        problems.append(f"{label}: the library sent {result['timestamp']}, not the script's time")

    properties = event.properties
    for key, value in _sent_properties(call).items():
        if properties.get(key) != value:
            problems.append(f"{label}: properties.{key} = {properties.get(key)!r}, sent {value!r}")
    if BOT_PROPERTY in properties:
        problems.append(f"{label}: flagged as a bot ({properties[BOT_PROPERTY]!r})")

    context = properties.get("context")
    if not isinstance(context, dict):
        return [*problems, f"{label}: no context stored (properties: {sorted(properties)})"]
    library = context.get("library")
    if not isinstance(library, dict) or library.get("name") != profile.library:
        problems.append(f"{label}: context.library = {library!r}")
    for key, value in (call.get("context") or {}).items():
        if context.get(key) != value:
            problems.append(f"{label}: context.{key} = {context.get(key)!r}, sent {value!r}")
    if profile.client_side:
        if context.get("ip") != "127.0.0.1":
            problems.append(
                f"{label}: context.ip = {context.get('ip')!r}, the browser's is 127.0.0.1"
            )
        if context.get("userAgent") != profile.user_agent:
            problems.append(f"{label}: context.userAgent = {context.get('userAgent')!r}")
        page = context.get("page")
        if profile.page_url and (not isinstance(page, dict) or page.get("url") != profile.page_url):
            problems.append(f"{label}: context.page = {page!r}")
    elif "ip" in context:
        problems.append(f"{label}: context.ip = {context['ip']!r} filled in for a server library")
    return problems


def _truncated_problems(
    outcome: Outcome, call: dict[str, Any], stored: list[Event], letters: list[Any]
) -> list[str]:
    """A property cut in the middle of a surrogate pair: stored with U+FFFD in its place, or
    the event alone rejected (one dead letter); either way its neighbours are unaffected."""
    problems = []
    for key in call["truncateMidEmoji"]:
        # The script's value ends with an emoji; the page cuts its last UTF-16 unit, which
        # leaves the pair's high surrogate alone.
        wanted = call["properties"][key][:-1] + REPLACEMENT
        if stored and stored[0].properties.get(key) != wanted:
            problems.append(
                f"track {call['event']}: properties.{key} = {stored[0].properties.get(key)!r}, "
                f"expected the lone surrogate replaced: {wanted!r}"
            )
    if not stored and len(letters) != 1:
        problems.append(
            f"track {call['event']} with a lone surrogate: neither stored nor dead-lettered once "
            f"({len(letters)} dead letters)"
        )
    return problems


def stored_once_problems(outcome: Outcome) -> list[str]:
    """Every call but alias and group (`store_side_problems`) stored exactly once and as sent;
    nothing else stored or dead-lettered for the session's people."""
    problems: list[str] = []
    by_id: dict[str, list[Event]] = {}
    for event in outcome.events:
        by_id.setdefault(event.event_id, []).append(event)
    letters_by_id = _dead_letters_by_id(outcome)
    for call, result in zip(outcome.calls, outcome.results, strict=True):
        message_id = result.get("messageId")
        if not message_id:
            problems.append(f"{call['call']}: the library reported no message ({result})")
            continue
        if call["call"] in STORE_SIDE_CALLS:
            continue
        stored = by_id.get(message_id, [])
        letters = letters_by_id.get(message_id, [])
        if call.get("truncateMidEmoji"):
            problems += _truncated_problems(outcome, call, stored, letters)
            if not stored:
                continue
        if len(stored) != 1:
            reasons = [f"{letter.reason}: {letter.detail}" for letter in letters]
            copies = [f"user_id={e.user_id!r} anonymous_id={e.anonymous_id!r}" for e in stored]
            problems.append(
                f"{_label(call)} ({message_id}): stored {len(stored)} times {copies}; "
                f"dead letters: {reasons or 'none'}"
            )
            continue
        problems += _call_problems(outcome, call, result, stored[0])
        if letters:
            problems.append(
                f"{call['call']} ({message_id}) stored but also dead-lettered: "
                f"{[letter.reason for letter in letters]}"
            )
    problems += _strangers(outcome)
    for message_id, letters in letters_by_id.items():
        if len(letters) > 1:
            problems.append(
                f"{message_id}: dead-lettered {len(letters)} times "
                f"({sorted({letter.reason for letter in letters})}): a retried request's "
                "rejections must be recorded once"
            )
    return problems


def _strangers(outcome: Outcome) -> list[str]:
    ids = set(outcome.ids())
    people = {
        value
        for result in outcome.results
        for value in (result.get("userId"), result.get("anonymousId"))
        if value
    }
    if outcome.identified_user:
        people.add(outcome.identified_user)
    return [
        f"stored an event nobody scripted: {event.event_type!r} {event.event_id!r} for "
        f"{event.user_id or event.anonymous_id!r}"
        for event in outcome.events
        if (event.user_id in people or event.anonymous_id in people) and event.event_id not in ids
    ]


def _dead_letters_by_id(outcome: Outcome) -> dict[str, list[Any]]:
    ids = set(outcome.ids())
    found: dict[str, list[Any]] = {}
    for letter in outcome.dead_letters:
        if letter.message_id in ids:
            found.setdefault(letter.message_id, []).append(letter)
            continue
        text = bytes(letter.data).decode("utf-8", "replace")
        for message_id in ids:
            if message_id in text:
                found.setdefault(message_id, []).append(letter)
    return found


def _answer_lists(exchange: Exchange, message_id: str) -> str | None:
    """Why the collector's answer refuses `message_id`, or None when it does not."""
    try:
        body = json.loads(exchange.upstream_answer)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for rejected in body.get("rejected") or []:
        if isinstance(rejected, dict) and rejected.get("event_id") == message_id:
            return f"{rejected.get('reason')}: {rejected.get('detail')}"
    accepted = body.get("accepted")
    if isinstance(accepted, list) and message_id not in accepted:
        return "not listed as accepted"
    return None


def alias_and_group_answers(outcome: Outcome) -> list[str]:
    """alias and group calls answered as delivered: the library got a status it counts as
    success, and the collector's answer does not reject the message."""
    problems = []
    for call, result in zip(outcome.calls, outcome.results, strict=True):
        message_id = result.get("messageId")
        if call["call"] not in STORE_SIDE_CALLS:
            continue
        if not message_id:
            problems.append(f"{call['call']}: the library reported no message ({result})")
            continue
        answered = [
            e
            for e in outcome.carrying(message_id)
            if e.status is not None and outcome.profile.success(e.status)
        ]
        if not answered:
            statuses = [e.status for e in outcome.carrying(message_id)]
            problems.append(
                f"{call['call']} ({message_id}): never answered as delivered: {statuses}"
            )
            continue
        refusals = [why for e in answered if (why := _answer_lists(e, message_id))]
        if refusals:
            problems.append(f"{call['call']} ({message_id}): the collector refused it: {refusals}")
        if result.get("error") or result.get("failed"):
            problems.append(
                f"{call['call']} ({message_id}): the library reported "
                f"{result.get('error') or result.get('failed')}"
            )
    return problems


def store_side_problems(outcome: Outcome) -> list[str]:
    """alias and group stored exactly once, as the calls they are (`call`, which the store's
    rules read: `named_calls`): an alias with its `previousId`, a group with its `groupId`
    and traits as sent. analytics.js picks an alias's `previousId` itself (the current user
    id), so only its presence is checked."""
    stored: dict[str, list[Event]] = {}
    for event in outcome.events:
        stored.setdefault(event.event_id, []).append(event)
    problems = []
    for call, result in zip(outcome.calls, outcome.results, strict=True):
        if call["call"] not in STORE_SIDE_CALLS:
            continue
        message_id = result.get("messageId")
        if not message_id:
            problems.append(f"{call['call']}: the library reported no message ({result})")
            continue
        copies = stored.get(message_id, [])
        if len(copies) != 1:
            problems.append(f"{call['call']} ({message_id}): stored {len(copies)} times")
            continue
        problems += [f"{call['call']} ({message_id}): {why}" for why in _named(call, copies[0])]
    return problems


def _named(call: dict[str, Any], event: Event) -> list[str]:
    """What is wrong with the stored `event` of the alias or group `call`."""
    problems = []
    if event.call != call["call"]:
        problems.append(f"stored with call {event.call!r}")
    if event.id_kind != "message":
        problems.append(f"stored with id_kind {event.id_kind!r}, not keyed by its messageId")
    properties = event.properties
    if call["call"] == "alias":
        previous = call.get("previousId")
        if not isinstance(properties.get("previousId"), str):
            problems.append(f"no previousId: {properties}")
        elif previous is not None and properties["previousId"] != previous:
            problems.append(f"previousId {properties['previousId']!r}, sent {previous!r}")
    else:
        sent = (call["groupId"], call.get("traits", {}))
        kept = (properties.get("groupId"), properties.get("traits"))
        if kept != sent:
            problems.append(f"groupId and traits {kept!r}, sent {sent!r}")
    return problems


def fault_problems(outcome: Outcome) -> list[str]:
    """Every scheduled fault met a request, and every message of a faulted request was sent
    again afterwards (the library retried, with the dropped answer's events already
    delivered)."""
    problems = [
        f"fault {fault.action} on {fault.marker!r} never met a request"
        for fault in outcome.faults
        if fault.fired_on is None
    ]
    for exchange in outcome.exchanges:
        if exchange.action == "pass":
            continue
        if exchange.action == "drop" and not (
            exchange.upstream_status is not None and exchange.upstream_status < 300
        ):
            problems.append(
                f"the dropped request #{exchange.index} was not accepted by the collector "
                f"({exchange.upstream_status}), so its retry proves nothing"
            )
        for message_id in exchange.message_ids():
            if not any(e.index > exchange.index for e in outcome.carrying(message_id)):
                problems.append(
                    f"{message_id} was not sent again after #{exchange.index} ({exchange.action})"
                )
    return problems
