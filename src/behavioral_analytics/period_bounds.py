"""The `from`/`to` bounds of a period range, read alike by the CLI and the API.

A bound is a period label or a time:

- a label of the range's granularity is taken as is (`2026-11-28-13` on an hourly series);
- a coarser label stands for its first instant as `from` and its last as `to`
  (`--from 2026-10-24` on an hourly series is `2026-10-24-00`); a finer one is refused, since
  it names part of a period;
- a time (RFC 3339 with an offset, epoch seconds or milliseconds) stands for the period that
  contains it.

Labels name instants up to LAST_INSTANT, 9999-12-31T23:59:59Z (labelling goes through a UTC
`datetime`), so west of UTC the last hours of 9999-12-31 have none. A coarser `to` whose end
is after it (the day 9999-12-31 on an hourly range, in UTC and west of it) is refused, the
message naming the last period of the range's granularity that has a label: give that
instead.

A string is a label of a granularity when `Periods` gives it back for the instant it starts
at, so every label `Periods` writes is accepted (those of a repeated hour on a clock-change
day included) and anything else (`2026-13-45-99`, an hour skipped when clocks go forward) is
refused.

The comparison range of `from`..`to` (`previous_range`) is the same number of periods of the
range's granularity ending just before `from`, counted in the reporting zone: N days are N
calendar days (a 23- or 25-hour day when clocks change is one day), N hours are N hour periods
(a repeated hour is one of them, a skipped hour is none). Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from behavioral_analytics.aggregation import GRANULARITIES, Granularity, Periods
from behavioral_analytics.events import Invalid, parse_timestamp

__all__ = [
    "EXAMPLES",
    "LAST_INSTANT",
    "MAX_COMPARE_HOURS",
    "PeriodError",
    "label_granularity",
    "previous_range",
    "resolve_bound",
    "resolve_range",
]

EXAMPLES: dict[Granularity, str] = {
    "minute": "2026-11-28-13-05",
    "hour": "2026-11-28-13",
    "day": "2026-11-28",
}
_MAX_LENGTH = 64
# The last instant a period label can name in any zone: 9999-12-31T23:59:59Z (epoch seconds).
# Later instants are past the last `datetime` in UTC, which labelling goes through.
LAST_INSTANT = 253_402_300_799.0
# The longest hourly range `previous_range` compares (it walks hour by hour): about 14 months.
MAX_COMPARE_HOURS = 10_000


class PeriodError(ValueError):
    """A bound or range that names no period. `code` is `invalid_period` or `invalid_range`
    (the API's error codes); `str(error)` is one line for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def label_granularity(value: str, periods: Periods) -> Granularity | None:
    """The granularity `value` is a period label of in `periods`' zone, or None."""
    for granularity in GRANULARITIES:
        try:
            start = periods.start_of(granularity, value)
            if periods.label(granularity, start) == value:
                return granularity
        except (ValueError, TypeError, OverflowError, OSError):
            continue
    return None


def resolve_bound(value: str, granularity: Granularity, periods: Periods, *, end: bool) -> str:
    """The `granularity` label a bound stands for; `end` is True for `to`, False for `from`.

    Raises PeriodError(`invalid_period`) for a finer label, text that is neither a label nor
    a time, a coarser `to` that ends after LAST_INSTANT (9999-12-31 on a finer range in UTC
    and west of it: the message names its last period that is named, `9999-12-31-23` in UTC)
    and a label that starts after LAST_INSTANT (naming the last one that has a label).
    """
    text = value.strip()
    if not text or len(text) > _MAX_LENGTH:
        raise PeriodError("invalid_period", _neither(value, granularity))
    found = label_granularity(text, periods)
    if found == granularity:
        return _named(text, text)
    if found is not None:
        if GRANULARITIES.index(found) < GRANULARITIES.index(granularity):
            raise PeriodError(
                "invalid_period",
                f"{text!r} is {'an' if found == 'hour' else 'a'} {found} label, finer than "
                f"this {granularity} range: "
                f"give {'an' if granularity == 'hour' else 'a'} {granularity} label "
                f"({EXAMPLES[granularity]}) or a coarser one",
            )
        if end and periods.end_of(found, text) > LAST_INSTANT:
            raise PeriodError("invalid_period", _ends_past(text, granularity, periods))
        try:
            # A period lasts at least a minute, so one second before its end is inside it.
            instant = periods.end_of(found, text) - 1.0 if end else periods.start_of(found, text)
            label = periods.label(granularity, instant)
        except (ValueError, OverflowError, OSError):
            raise PeriodError("invalid_period", _outside(text)) from None
        return _named(label, text)
    _refuse_past_last(text, periods)
    try:
        moment: float | str = float(text)
    except ValueError:
        moment = text
    try:
        label = periods.label(granularity, parse_timestamp(moment))
    except (Invalid, ValueError, OverflowError, OSError):
        # A label's or a date's shape with a year before 1000 (`0999-01-01`): the range says why.
        early = re.match(r"0\d{3}-\d{2}-\d{2}", text)
        raise PeriodError(
            "invalid_period", _outside(text) if early else _neither(value, granularity)
        ) from None
    return _named(label, text)


def _ends_past(text: str, granularity: Granularity, periods: Periods) -> str:
    """Why a coarser `to` whose end (the next period's start) is past LAST_INSTANT is refused,
    with the last `granularity` period a label names, which is its own last one that has."""
    last = periods.label(granularity, LAST_INSTANT)
    return (
        f"{text[:40]!r} ends past the last instant that can be named "
        f"(9999-12-31T23:59:59Z): give the last {granularity} a label names, {last}, instead"
    )


def _refuse_past_last(text: str, periods: Periods) -> None:
    """PeriodError(`invalid_period`) naming the last label of its granularity when `text` has
    a label's shape but starts after LAST_INSTANT (the last hours of 9999-12-31 west of UTC)."""
    shapes: dict[int, Granularity] = {3: "day", 4: "hour", 5: "minute"}
    granularity = shapes.get(text.count("-") + 1)
    if granularity is None:
        return
    try:
        past = periods.start_of(granularity, text) > LAST_INSTANT
        last = periods.label(granularity, LAST_INSTANT)
    except (ValueError, TypeError, OverflowError, OSError):
        return
    if past:
        raise PeriodError(
            "invalid_period",
            f"{text[:40]!r} starts after the last instant a label can name "
            f"(9999-12-31T23:59:59Z, {last} in {periods.timezone}): give {last} or earlier",
        )


def _named(label: str, text: str) -> str:
    """`label` when it has four year digits (labels sort as text only then: `Periods` writes
    year 999 as `999-…`); else PeriodError naming `text`."""
    if not (label[:4].isdigit() and label[4:5] == "-"):
        raise PeriodError("invalid_period", _outside(text))
    return label


def _outside(text: str) -> str:
    return f"{text[:40]!r} is outside the periods that can be named (years 1000 to 9999)"


def resolve_range(
    start: str | None,
    end: str | None,
    granularity: Granularity,
    periods: Periods,
    *,
    default_start: str | None = None,
    default_end: str | None = None,
) -> tuple[str | None, str | None]:
    """Both bounds resolved (a missing one is its default). Raises PeriodError
    (`invalid_period` for a bound, `invalid_range` when `from` comes after `to`)."""
    first = (
        resolve_bound(start, granularity, periods, end=False)
        if start is not None
        else default_start
    )
    last = resolve_bound(end, granularity, periods, end=True) if end is not None else default_end
    if (
        first is not None
        and last is not None
        and periods.start_of(granularity, first) > periods.start_of(granularity, last)
    ):
        raise PeriodError("invalid_range", f"from ({first}) is after to ({last})")
    return first, last


def previous_range(
    first: str, last: str, granularity: Granularity, periods: Periods
) -> tuple[str, str]:
    """The comparison range of `first`..`last` (labels of `granularity`, `first` not after
    `last`): as many periods, the last of them just before `first` (rules: module docstring).

    `("2026-11-04", "2026-11-06")` by day → `("2026-11-01", "2026-11-03")`. Raises
    PeriodError(`invalid_range`) for an hourly range of more than MAX_COMPARE_HOURS hours, or
    one whose comparison would start before year 1000.
    """
    try:
        start, end = _previous(first, last, granularity, periods)
    except (ValueError, OverflowError, OSError) as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError("invalid_range", _too_early(first, last)) from None
    if not (start[:4].isdigit() and start[4:5] == "-" and start >= "1000"):
        raise PeriodError("invalid_range", _too_early(first, last))
    return start, end


def _too_early(first: str, last: str) -> str:
    return f"the comparison of {first}..{last} would start before year 1000: give a later range"


def _previous(first: str, last: str, granularity: Granularity, periods: Periods) -> tuple[str, str]:
    if granularity == "day":
        start, end = date.fromisoformat(first), date.fromisoformat(last)
        length = (end - start).days + 1
        return (start - timedelta(days=length)).isoformat(), (start - timedelta(days=1)).isoformat()
    begins = periods.start_of(granularity, first)
    if granularity == "minute":
        # A minute lasts 60 s whatever the clocks do.
        length = round((periods.start_of(granularity, last) - begins) / 60.0) + 1
        return (
            periods.label(granularity, begins - 60.0 * length),
            periods.label(granularity, begins - 60.0),
        )
    length, at = 1, begins
    while periods.label(granularity, at) != last:
        at = periods.end_of(granularity, periods.label(granularity, at))
        length += 1
        if length > MAX_COMPARE_HOURS:
            raise PeriodError(
                "invalid_range",
                f"an hourly comparison spans at most {MAX_COMPARE_HOURS} hours: "
                "give a shorter range or compare by day",
            )
    # A period lasts at least a minute, so one second before a start is inside the one before.
    previous_last = periods.label(granularity, begins - 1.0)
    label = previous_last
    for _ in range(length - 1):
        label = periods.label(granularity, periods.start_of(granularity, label) - 1.0)
    return label, previous_last


def _neither(value: str, granularity: Granularity) -> str:
    return (
        f"{value.strip()[:40]!r} is neither a period label ({EXAMPLES[granularity]}, or a "
        "coarser one) nor a time (RFC 3339 with an offset, or epoch seconds)"
    )
