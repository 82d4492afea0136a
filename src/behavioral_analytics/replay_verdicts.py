"""Dead letters judged as a replay would judge them: which ones the worker would now take as
events, and which it would refuse again, and why.

Dead letters that parse as valid events today (the broker gave up on them after a crash loop,
say) are counted nowhere: the aggregates agree with the raw events, yet a user's numbers are
short. `verify` lists them (`valid_dead_letters`, not yet replayed) so the shortfall is seen;
`dlq replay` counts them once. They are judged as the worker judges them, under the configured
`Limits`: a replay keeps the message's first receipt time (`ORIGINAL_PUBLISH_TIME`), so an
event outside the accepted time window (`timestamp_too_old`, `timestamp_in_future`) stays
outside it however often it is replayed. Those are counted apart, by reason
(`unreplayable_dead_letters`): a shortfall no replay can make up.
"""

from __future__ import annotations

from collections.abc import Iterator

from behavioral_analytics.events import DEFAULT_LIMITS, UNPROCESSABLE, Event, Limits
from behavioral_analytics.letter_events import counted_letters
from behavioral_analytics.named_calls import judged
from behavioral_analytics.segment import KEPT_AS, KEPT_EVENT, TIME_WINDOW_REASONS
from behavioral_analytics.store import DeadLetter, DeadLetterBox

__all__ = [
    "FROM_COLLECTOR",
    "TIME_WINDOW_REASONS",
    "judged_dead_letters",
    "replay_refusal",
    "replayable_dead_letters",
    "valid_dead_letters",
]


# `replay_refusal` of a dead letter the collector recorded: the client's call, not the worker's.
FROM_COLLECTOR = "from_collector"


def valid_dead_letters(
    box: DeadLetterBox, page_size: int = 500, limits: Limits = DEFAULT_LIMITS
) -> list[str]:
    """Ids of the dead letters, not replayed, that the worker would now take as events
    (`replayable_dead_letters`)."""
    return replayable_dead_letters(box, page_size, limits)[0]


def replay_refusal(letter: DeadLetter, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why the worker would refuse `letter` were it replayed now (the reason it would record),
    or None when it would take it as an event. Judged under `limits` (the worker's) against the
    letter's first receipt time, as a replay is: it parses as an event, and an alias or group
    call passes its rules (`named_calls.rejection`). A refusal in `TIME_WINDOW_REASONS` comes
    back however often the letter is replayed; a letter whose parsing raises is
    `UNPROCESSABLE`, as the worker records it.

    The collector's dead letters (`source` "collector") hold the request's item as its client
    sent it (a Segment call, or an item of `POST /v1/events`), not the event the collector
    makes of it (ids, receipt time, Segment's fields translated): `FROM_COLLECTOR`, never the
    worker's to take. Its client sends it again, fixed. One refused for its time alone keeps
    that event instead (attribute `kept_as: event`, `segment.Outcome.kept_events`) and is
    judged as the worker's are."""
    if letter.source == "collector" and letter.attributes.get(KEPT_AS) != KEPT_EVENT:
        return FROM_COLLECTOR
    try:
        parsed = judged(
            letter.data,
            message_id=letter.message_id,
            received_at=letter.received_at,
            limits=limits,
        )
    except Exception:  # as the worker records a message whose parsing raised
        return UNPROCESSABLE
    return None if isinstance(parsed, Event) else parsed.reason


def judged_dead_letters(
    box: DeadLetterBox, page_size: int = 500, limits: Limits = DEFAULT_LIMITS
) -> Iterator[tuple[DeadLetter, str | None]]:
    """Each dead letter in `box` not yet replayed, newest first, with `replay_refusal`'s
    verdict under `limits`: (letter, None) when a replay would count it, else (letter, reason);
    one whose event the store holds already (`letter_events`) is counted, and left out.
    Raises StoreError."""
    cursor: str | None = None
    get_events = getattr(box, "get_events", None)
    while True:
        page = box.dead_letters(page_size, cursor)
        verdicts = [(d, replay_refusal(d, limits)) for d in page.items if d.replayed_at is None]
        open_ = [d for d, why in verdicts if why is None or why in TIME_WINDOW_REASONS]
        counted = counted_letters(open_, get_events, limits) if get_events and open_ else set()
        yield from ((d, why) for d, why in verdicts if d.id not in counted)
        cursor = page.next_cursor
        if cursor is None or not page.items:
            return


def replayable_dead_letters(
    box: DeadLetterBox, page_size: int = 500, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[str], dict[str, int]]:
    """The dead letters, not replayed, that a replay would count, and those it never can
    (`judged_dead_letters`): the ids of those the worker would now take as events, then, by
    reason, how many it refuses only for a reason a replay keeps (`TIME_WINDOW_REASONS`). The
    collector's own rejections are left out of both, but for those that keep their event
    (`replay_refusal`). Raises StoreError."""
    found: list[str] = []
    unreplayable: dict[str, int] = {}
    for letter, refusal in judged_dead_letters(box, page_size, limits):
        if refusal is None:
            found.append(letter.id)
        elif refusal in TIME_WINDOW_REASONS:
            unreplayable[refusal] = unreplayable.get(refusal, 0) + 1
    return found, unreplayable
