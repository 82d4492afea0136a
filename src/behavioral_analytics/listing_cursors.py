"""Page cursors bound to the listing they continue. Pure.

A store's cursor is a position (`store.encode_cursor`, or a dead letter's id) and would page
any listing: a user's timeline cursor passed to another user's, or to the events of a type,
would silently continue from the wrong place. The API and the CLI hand out
`c1.<listing>.<position>` instead, `<listing>` a short hash of the listing's scope (its name,
then the values that shape it: the user, the event type; not the page size), and take back
only a cursor of the same listing: the API answers anything else `400 invalid_cursor`, the CLI
exits 2. Both bind a listing the same way, so a cursor from one continues in the other.
"""

from __future__ import annotations

import base64
import hashlib
import json

__all__ = ["CursorMismatch", "bind", "unbind"]

_VERSION = "c1"


class CursorMismatch(ValueError):
    """A cursor not handed out for this listing; the message says which case it is."""


def _listing(scope: tuple[str, ...]) -> str:
    digest = hashlib.blake2b(json.dumps(scope).encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


def bind(position: str | None, scope: tuple[str, ...]) -> str | None:
    """The cursor handed out for the store's `position` (None: no next page) in the listing
    `scope` (its name, then the values that shape it)."""
    if position is None:
        return None
    return f"{_VERSION}.{_listing(scope)}.{position}"


def unbind(cursor: str | None, scope: tuple[str, ...]) -> str | None:
    """The store's position in `cursor` (None without one). Raises CursorMismatch for a
    cursor not of this form (a bare position, as handed out before cursors were bound) or of
    another listing than `scope`."""
    if cursor is None:
        return None
    version, _, rest = cursor.partition(".")
    listing, _, position = rest.partition(".")
    if version != _VERSION or not listing or not position:
        raise CursorMismatch(
            "not a next_cursor handed out here (cursors handed out before they were bound to "
            "their listing are not taken: start again from the first page)"
        )
    if listing != _listing(scope):
        raise CursorMismatch(
            "the cursor continues another listing (another user, event type or list): a "
            "cursor continues only the listing whose next_cursor it was"
        )
    return position
