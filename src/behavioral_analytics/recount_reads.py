"""What a recount reads: every retained raw event, each repeated value held once, and word of
how far the reading is. Pure: the reading itself is the store's (`iter_raw_events`).

`verify`, its repair's rebuild and `config apply` recount from every retained raw event at once
(`verification`); `shared_values` keeps their memory down, and `Progress` lets a command say
what a long recount is doing (the CLI prints it on stderr once the recount has run a while).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from behavioral_analytics.events import Event
from behavioral_analytics.shared_values import shared_events
from behavioral_analytics.store import Auditable

__all__ = ["PROGRESS_EVERY_EVENTS", "Progress", "no_progress", "retained_events"]

# What a long recount reports as it goes: a line, and whether it starts a step (reading the
# aggregates, reading the raw events, a repair's rebuild) rather than counting within one.
Progress = Callable[[str, bool], None]
PROGRESS_EVERY_EVENTS = 50_000


def no_progress(line: str, step: bool) -> None:
    """`Progress` told to no one."""


def retained_events(store: Auditable, progress: Progress = no_progress) -> Iterator[Event]:
    """Every raw event `store` retains, as a recount reads them: each repeated value held once
    (`shared_values`), since the recount holds them all at once. `progress` is told
    `"{n} raw events read"` every `PROGRESS_EVERY_EVENTS` events (False: a count within the
    step) and, once every event is read, `"all {n} raw events read"` (True: the step ends and
    the recount goes on with them)."""
    read = 0
    for read, event in enumerate(shared_events(store.iter_raw_events()), 1):
        if read % PROGRESS_EVERY_EVENTS == 0:
            progress(f"{read:,} raw events read", False)
        yield event
    progress(f"all {read:,} raw events read", True)
