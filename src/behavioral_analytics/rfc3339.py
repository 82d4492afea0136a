"""RFC 3339 timestamps read as instants, a leap second included.

`datetime.fromisoformat` reads RFC 3339's `date-time` (and more of ISO 8601), lower-case `t`
and `z` aside, but not a leap second: RFC 3339 section 5.6 allows a `time-second` of 60
(`2016-12-31T23:59:60Z`). Epoch seconds, like the clocks events come from, have no such
second, so it is read as the instant after the minute's `:59`: the next minute's start plus
the fraction, as PostgreSQL reads it. Which minutes really had a leap second (section 5.7) is
not checked: the reading is the same either way and the table would need updating.
"""

from __future__ import annotations

from datetime import datetime, timedelta

_ONE_SECOND = timedelta(seconds=1)


def rfc3339_moment(text: str) -> datetime | None:
    """The `datetime` an RFC 3339 timestamp names (aware if it has an offset or `Z`), or None
    when `fromisoformat` cannot read it, nor read it as a leap second (`…:60`, see above)."""
    text = text.replace("z", "Z")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    # YYYY-MM-DDTHH:MM:60…: the seconds are characters 17 and 18.
    if len(text) < 19 or text[16] != ":" or text[17:19] != "60":
        return None
    try:
        return datetime.fromisoformat(f"{text[:17]}59{text[19:]}") + _ONE_SECOND
    except (ValueError, OverflowError):
        return None
