"""Page cursors bound to the listing they continue (`listing_cursors`), refused as the API's
`400 invalid_cursor`."""

from __future__ import annotations

from behavioral_analytics import listing_cursors
from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.listing_cursors import bind

__all__ = ["bind", "unbind"]


def unbind(cursor: str | None, scope: tuple[str, ...]) -> str | None:
    """The store's position in `cursor` (None without one). Raises ApiError 400
    `invalid_cursor` for a cursor not handed out for the listing `scope`."""
    try:
        return listing_cursors.unbind(cursor, scope)
    except listing_cursors.CursorMismatch as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
