"""Requests the collector refuses whole, kept as dead letters.

A request refused as a whole (`400`: a body that cannot be read as events; `413`: over a size
or count limit) stores no event, and the client libraries do not send it again: Segment's Node
and Python libraries give up on a `4xx` other than `408`, `410`, `429` and `460`. So that its
events are not lost without a trace, a refusal of a request whose write key was accepted is
recorded in the dead letters (`source: "collector"`, reason `request:<error>`, the route in
`attributes`) with the body as read (decompressed): its JSON without `writeKey` (at the top and
in each call of a batch), or, for a body that is no JSON, its bytes with every `"writeKey":
"…"` value blanked; either way without the write key it was accepted with, wherever and however
escaped it appears (`blank_key`); at most an event's size of it (32 KiB), the
detail saying how much was kept; a cut body's JSON has each call's who-fields first, so that
`forget` finds the people a cut copy still holds data of. A body refused before it was read
(over the size limit by its `Content-Length` or as it streamed, or not valid gzip) is kept
empty, its size in the detail.

Every refusal is counted and logged. One is not kept when its write key was not accepted
(anyone could fill the dead letters that way), nor past the key's rate limit: keeping one
costs the key one event of its rate (`BA_RATE_LIMIT`).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.json_shape import lenient_integer
from behavioral_analytics.privacy import who_first
from behavioral_analytics.records import NewDeadLetter
from behavioral_analytics.segment import (
    dead_letter_fingerprint,
    encode_original,
    without_write_key,
)
from behavioral_analytics.telemetry import log

__all__ = [
    "RECORDED_STATUSES",
    "REFUSED_PREFIX",
    "Seen",
    "blank_key",
    "blank_write_keys",
    "log_refusal",
    "refusal_letter",
]

# The statuses of a request refused for what it holds, not for who sent it or when.
RECORDED_STATUSES = frozenset({400, 413})
REFUSED_PREFIX = "request:"

_WRITE_KEY = re.compile(rb'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def blank_write_keys(body: bytes) -> bytes:
    """`body` with the value of every `"writeKey": "…"` member replaced by `""` (a credential
    is never stored), whether or not the rest is JSON."""
    return _WRITE_KEY.sub(rb'\1""', body)


class Seen:
    """What an ingest request showed before it was refused: the write key it was accepted with
    ('' with writes open; None: not accepted, or not yet), the client's address (`addresses`;
    None: unknown) and its body as read (None: not read)."""

    __slots__ = ("address", "body", "key")

    def __init__(self) -> None:
        self.key: str | None = None
        self.address: str | None = None
        self.body: bytes | None = None


def log_refusal(route: str, error: ApiError, seen: Seen, kept: bool) -> None:
    """One WARNING line per request refused whole: route, status, reason, detail, size, and
    whether it is kept as a dead letter."""
    log.warning(
        "request refused",
        extra={
            "route": route,
            "status": error.status_code,
            "reason": error.error,
            "detail": error.detail,
            "bytes": None if seen.body is None else len(seen.body),
            "recorded": kept,
        },
    )


def refusal_letter(
    route: str, error: ApiError, seen: Seen, received_at: float, max_bytes: int
) -> NewDeadLetter:
    """The dead letter of a request to `route` (the call, `batch` or `events`) refused with
    `error` at `received_at` (epoch seconds), its body as `seen` read it, at most `max_bytes`
    of it kept. A retry of the same request is the same letter: its identity is the body's JSON
    less what a retry changes (`dead_letter_fingerprint`), else its bytes (or, unread, the
    route and the detail), and the reason."""
    reason = REFUSED_PREFIX + error.error
    body = seen.body
    payload = _json(body)
    if payload is not None:
        data = blank_key(encode_original(_without_write_keys(payload)), seen.key)
        fingerprint = dead_letter_fingerprint(payload, reason)
    else:
        data = b"" if body is None else blank_key(blank_write_keys(body), seen.key)
        text = data if body is not None else f"{route}\x1f{error.detail}".encode()
        fingerprint = hashlib.blake2b(reason.encode() + b"\x1f" + text, digest_size=16).hexdigest()
    if body is None:
        kept = "not read"
    elif len(data) > max_bytes:
        kept = f"{len(body):,} bytes; the first {max_bytes:,} of its {len(data):,} kept"
        if payload is not None:
            # The who-fields first: `forget` finds a cut copy's people by their ids' text.
            data = blank_key(encode_original(who_first(_without_write_keys(payload))), seen.key)
            kept += ", who-fields first"
        data = data[:max_bytes]
    else:
        kept = f"{len(body):,} bytes"
    return NewDeadLetter(
        reason=reason,
        detail=f"the whole request to {route} ({kept}): {error.detail}",
        data=data,
        message_id=fingerprint,
        attributes={"route": route},
        source="collector",
        received_at=received_at,
        retry_fingerprint=fingerprint,
    )


def _json(body: bytes | None) -> Any:
    """The body's JSON value; None when it has none (unread, or no JSON, or nested deeper than
    the decoder follows)."""
    if body is None:
        return None
    try:
        return json.loads(body, parse_int=lenient_integer)
    except (ValueError, RecursionError):
        return None


def _without_write_keys(payload: Any) -> Any:
    """`payload` with each call of a `batch` (a list, or one call) without `writeKey`
    (`encode_original` takes the top level's)."""
    if type(payload) is dict and type(payload.get("batch")) is list:
        return {**payload, "batch": [without_write_key(call) for call in payload["batch"]]}
    if type(payload) is dict and type(payload.get("batch")) is dict:
        return {**payload, "batch": without_write_key(payload["batch"])}
    return payload


def blank_key(data: bytes, key: str | None) -> bytes:
    """`data` with the write key `key` the request was accepted with removed wherever it stands
    as a whole token (not inside a longer run of letters, digits, `_`, `-` or `.`: a short key
    `demo` in an id `demo-user-7` stays), however its characters are written (as they are, or
    JSON-escaped: `\\u004b`, `\\/`): a body may hold it where no `writeKey` member names it
    (single quotes, an escaped member name, `writeKey=KEY` in bytes that are no JSON). None or
    "" (writes open): `data` as it is."""
    if not key:
        return data
    return _key_pattern(key).sub(b"", data)


@lru_cache(maxsize=64)
def _key_pattern(key: str) -> re.Pattern[bytes]:
    parts = []
    for char in key:
        forms = [re.escape(char.encode())]
        if ord(char) < 0x10000:
            forms.append(
                rb"\\u" + "".join(f"[{h.lower()}{h.upper()}]" for h in f"{ord(char):04x}").encode()
            )
        if char in '"\\/':
            forms.append(re.escape(b"\\" + char.encode()))
        parts.append(b"(?:" + b"|".join(forms) + b")")
    return re.compile(rb"(?<![\w.\-])" + b"".join(parts) + rb"(?![\w.\-])")
