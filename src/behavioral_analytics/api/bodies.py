"""Request bodies as the collector reads them: at most 500 KB (decompressed), gzip or
identity, JSON by msgspec first and by the standard library where only it can read them.

Every refusal is an `ApiError`: 413 `too_large` (the body or one event over its limit), 415
`unsupported_encoding`, 400 `invalid_request`, `invalid_gzip`, `empty_body`, `not_json` or
`too_deep`.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec
from fastapi import Request

from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.json_shape import unparsed_detail

__all__ = [
    "MAX_GZIP_MEMBERS",
    "MAX_REQUEST_BYTES",
    "SPLIT",
    "decode_body",
    "gunzip",
    "read_body",
    "too_deep",
    "too_large",
]

MAX_REQUEST_BYTES = 500 * 1024
MAX_GZIP_MEMBERS = 64  # `gunzip`
# What a client whose request is too big as a whole does (Segment's libraries keep a batch
# under 500 KB themselves).
SPLIT = ": send the events in smaller requests"

_decoder = msgspec.json.Decoder()


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, decompressed, refusing more than `limit` bytes with 413 as it streams."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid_request", "Content-Length is not a number") from None
        if size > limit:
            raise too_large(f"request body of {size} bytes > {limit}{SPLIT}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(f"request body over {limit} bytes{SPLIT}")
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding == "gzip":
        body = gunzip(body, limit)
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body, concatenated (RFC 1952 allows several; `gzip -c a b`
    writes two). 413 past `limit` decompressed bytes; 400 `invalid_gzip` for a corrupt or
    truncated member, bytes after the last one that are not a member, or more than
    `MAX_GZIP_MEMBERS` members (each costs a copy of the rest of the body: thousands of empty
    ones would hold the server for a body no client sends): never a prefix answered as if it
    were the whole."""
    parts: list[bytes] = []
    total = 0
    rest = body
    while True:
        if len(parts) == MAX_GZIP_MEMBERS:
            raise ApiError(
                400, "invalid_gzip", f"the gzip body has over {MAX_GZIP_MEMBERS} members"
            )
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - total)
        except zlib.error:
            raise ApiError(400, "invalid_gzip", "the body is not valid gzip") from None
        total += len(part)
        if total > limit or inflater.unconsumed_tail:
            raise too_large(f"decompressed body over {limit} bytes{SPLIT}")
        if not inflater.eof:
            raise ApiError(400, "invalid_gzip", "the gzip body is truncated")
        parts.append(part)
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)


def too_large(detail: str) -> ApiError:
    """413 `too_large` with `detail`."""
    return ApiError(413, "too_large", detail)


def decode_body(body: bytes) -> tuple[Any, bool]:
    """The body's JSON value, and whether only the standard library could read it (a lone
    surrogate escaped in a string, NaN, an integer past 64 bits: each event then meets its own
    reason). 400 `empty_body` or `not_json` otherwise."""
    if not body.strip():
        raise ApiError(400, "empty_body", "the request has no body")
    try:
        return _decoder.decode(body), False
    except RecursionError:
        raise too_deep() from None
    except msgspec.DecodeError as exc:
        try:
            return json.loads(body), True
        except RecursionError:
            raise too_deep() from None
        except ValueError as std_exc:
            raise ApiError(400, "not_json", unparsed_detail(std_exc, str(exc))) from None


def too_deep() -> ApiError:
    """400 `too_deep`: a body nested deeper than the JSON decoders follow (each raises
    RecursionError near a thousand levels, in C, before any of our code walks the value).
    Shallower nesting reaches the per-event checks, which reject it as `too_deep` too."""
    return ApiError(400, "too_deep", "the body is nested too deeply (see docs/events.md)")
