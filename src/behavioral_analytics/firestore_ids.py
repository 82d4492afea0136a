"""Firestore's rule for database ids, shared by the settings (a bad `FIRESTORE_DATABASE` is a
configuration error, refused when the settings load) and the Firestore adapter (which checks
the client it is given).

The rule (https://cloud.google.com/firestore/docs/manage-databases): "(default)", or 4 to 63
characters of lowercase letters, digits and hyphens, first a letter, last a letter or a digit,
not shaped like a UUID. The emulator takes ids Firestore refuses, and answers an id it cannot
take with an error that has no message.
"""

from __future__ import annotations

import re

__all__ = ["DATABASE_ID_RULE", "database_id_problem"]

DATABASE_ID_RULE = (
    "an id is (default), or 4 to 63 characters of lowercase letters, digits and hyphens that "
    "starts with a letter, ends with a letter or a digit and is not shaped like a UUID"
)
_DATABASE_ID = re.compile(r"[a-z][a-z0-9-]{2,61}[a-z0-9]")
_UUID_LIKE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")


def database_id_problem(database: str) -> str | None:
    """None when `database` is a valid Firestore database id, else what is wrong with it (the
    rule, `DATABASE_ID_RULE`)."""
    if database == "(default)":
        return None
    if _DATABASE_ID.fullmatch(database) and not _UUID_LIKE.fullmatch(database):
        return None
    return f"{database!r} is not a valid Firestore database id: {DATABASE_ID_RULE}"
