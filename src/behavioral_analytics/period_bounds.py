"""The `from`/`to` bounds of a period range, read alike by the CLI and the API.

A bound is a period label or a time:

- a label of the range's granularity is taken as is (`2026-11-28-13` on an hourly series);
- a coarser label stands for its first instant as `from` and its last as `to`
  (`--from 2026-10-24` on an hourly series is `2026-10-24-00`); a finer one is refused, since
  it names part of a period;
- a time (RFC 3339 with an offset, epoch seconds or milliseconds) stands for the period that
  contains it.

A string is a label of a granularity when `Periods` gives it back for the instant it starts
at, so every label `Periods` writes is accepted (those of a repeated hour on a clock-change
day included) and anything else (`2026-13-45-99`, an hour skipped when clocks go forward) is
refused. Pure: no I/O.
"""

from __future__ import annotations

from behavioral_analytics.aggregation import GRANULARITIES, Granularity, Periods
from behavioral_analytics.events import Invalid, parse_timestamp

__all__ = ["EXAMPLES", "PeriodError", "label_granularity", "resolve_bound", "resolve_range"]

EXAMPLES: dict[Granularity, str] = {
    "minute": "2026-11-28-13-05",
    "hour": "2026-11-28-13",
    "day": "2026-11-28",
}
_MAX_LENGTH = 64


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

    Raises PeriodError(`invalid_period`) for a finer label or text that is neither a label nor
    a time.
    """
    text = value.strip()
    if not text or len(text) > _MAX_LENGTH:
        raise PeriodError("invalid_period", _neither(value, granularity))
    found = label_granularity(text, periods)
    if found == granularity:
        return text
    if found is not None:
        if GRANULARITIES.index(found) < GRANULARITIES.index(granularity):
            raise PeriodError(
                "invalid_period",
                f"{text!r} is a {found} label, finer than this {granularity} range: "
                f"give a {granularity} label ({EXAMPLES[granularity]}) or a coarser one",
            )
        # All UTC offsets in use are whole minutes, so one second before the end is inside.
        instant = periods.end_of(found, text) - 1.0 if end else periods.start_of(found, text)
        return periods.label(granularity, instant)
    try:
        moment: float | str = float(text)
    except ValueError:
        moment = text
    try:
        return periods.label(granularity, parse_timestamp(moment))
    except (Invalid, ValueError, OverflowError, OSError):
        raise PeriodError("invalid_period", _neither(value, granularity)) from None


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
    first = resolve_bound(start, granularity, periods, end=False) if start else default_start
    last = resolve_bound(end, granularity, periods, end=True) if end else default_end
    if (
        first is not None
        and last is not None
        and periods.start_of(granularity, first) > periods.start_of(granularity, last)
    ):
        raise PeriodError("invalid_range", f"from ({first}) is after to ({last})")
    return first, last


def _neither(value: str, granularity: Granularity) -> str:
    return (
        f"{value.strip()[:40]!r} is neither a period label ({EXAMPLES[granularity]}, or a "
        "coarser one) nor a time (RFC 3339 with an offset, or epoch seconds)"
    )
