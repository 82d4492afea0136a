"""Page cursors bound to the listing they continue.

A store's cursor is a position (`store.encode_cursor`, or a dead letter's id) and would page
any listing. The API hands out `c1.<listing>.<position>` instead, `<listing>` a short hash of
the route and the parameters that shape its listing (the user, the event type; not `limit`),
and takes back only a cursor of the same listing: another one is `400 invalid_cursor`, as is
a cursor without that form (those handed out before cursors were bound: start again from the
first page).
"""

from __future__ import annotations

import base64
import hashlib
import json

from behavioral_analytics.api.responses import ApiError

__all__ = ["bind", "unbind"]

_VERSION = "c1"


def _listing(scope: tuple[str, ...]) -> str:
    digest = hashlib.blake2b(json.dumps(scope).encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


def bind(position: str | None, scope: tuple[str, ...]) -> str | None:
    """The cursor the API hands out for the store's `position` (None: no next page) in the
    listing `scope` (the route's name, then the values that shape it)."""
    if position is None:
        return None
    return f"{_VERSION}.{_listing(scope)}.{position}"


def unbind(cursor: str | None, scope: tuple[str, ...]) -> str | None:
    """The store's position in `cursor` (None without one). Raises ApiError 400
    `invalid_cursor` for a cursor not of this form or of another listing than `scope`."""
    if cursor is None:
        return None
    version, _, rest = cursor.partition(".")
    listing, _, position = rest.partition(".")
    if version != _VERSION or not listing or not position:
        raise ApiError(
            400,
            "invalid_cursor",
            "the cursor is not one this API returned (cursors handed out before they were "
            "bound to their listing are not taken: start again from the first page)",
        )
    if listing != _listing(scope):
        raise ApiError(
            400,
            "invalid_cursor",
            "the cursor continues another listing (another route, user or event type): "
            "a cursor continues only the listing whose next_cursor it was",
        )
    return position
