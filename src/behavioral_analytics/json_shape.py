"""JSON by shape, before and beside the event contract (`events`): how deep raw JSON text
nests, without decoding it, and the JSON type name of a decoded value. Pure."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["json_type", "nesting_exceeds"]

_JSON_STRUCTURE = re.compile(rb'[][{}"\\]')


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON text nests objects and arrays more than `limit` levels deep (brackets
    inside strings do not count). Linear, without recursion and without decoding, so it can
    run before a decoder that recurses once per level (msgspec and the standard library both
    raise RecursionError near a thousand levels). Malformed text gets an answer too; the
    decoder then names what is wrong with it."""
    if data.count(b"{") + data.count(b"[") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_at = -1
    for match in _JSON_STRUCTURE.finditer(data):
        at = match.start()
        if at == escaped_at:
            continue
        char = data[at]
        if in_string:
            if char == 0x5C:  # backslash: the next byte is escaped
                escaped_at = at + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char == 0x7B or char == 0x5B:
            depth += 1
            if depth > limit:
                return True
        elif char == 0x7D or char == 0x5D:
            depth -= 1
    return False


def json_type(value: Any) -> str:
    """JSON's name for the type of a decoded `value` (`object`, `array`, `string`, `number`,
    `boolean`, `null`), else its Python type's name."""
    match value:
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case None:
            return "null"
    return type(value).__name__
