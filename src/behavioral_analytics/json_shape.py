"""JSON by shape, before and beside the event contract (`events`): how deep raw JSON text
nests, without decoding it, why text the decoder refused is no JSON it takes, the JSON type
name of a decoded value, and integers too long for Python to convert, kept as written. Pure."""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any

__all__ = [
    "LongInteger",
    "dumps",
    "json_type",
    "lenient_integer",
    "nesting_exceeds",
    "not_utf8_detail",
    "printable",
    "unparsed_detail",
    "why_undecodable",
]

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


class _Refused:
    """A number or constant the standard library's parser read that msgspec refuses, as
    written (at most `_SHOWN_CHARS` characters of it)."""

    def __init__(self, literal: str) -> None:
        self.integer = literal.lstrip("-").isdigit()
        shown = literal[:_SHOWN_CHARS]
        self.literal = shown if shown == literal else f"{shown}… ({len(literal):,} characters)"


_SHOWN_CHARS = 24


def _number(literal: str) -> float | _Refused:
    value = float(literal)
    return value if math.isfinite(value) else _Refused(literal)


def _integer(literal: str) -> int | _Refused:
    # Past 20 characters no integer fits 64 bits; Python refuses to convert past 4,300 digits.
    return int(literal) if len(literal) <= 20 else _Refused(literal)


_PAST_64_BITS = 2**64


class LongInteger(int):
    """An integer literal longer than Python converts (`sys.get_int_max_str_digits()`: 4,300
    digits by default, a guard against conversion in quadratic time). As a number it is
    2**64 of the literal's sign, so every 64-bit check refuses it (`invalid_number`); as text
    (`str`, an id read from it: `too_long`) it is `literal`, the digits as sent, which `dumps`
    writes back too (`json.dumps` would write 2**64)."""

    literal: str

    def __new__(cls, literal: str) -> LongInteger:
        sign = -1 if literal.startswith("-") else 1
        value = super().__new__(cls, sign * _PAST_64_BITS)
        value.literal = literal
        return value

    def __str__(self) -> str:
        return self.literal

    __repr__ = __str__

    def __reduce__(self) -> tuple[type[LongInteger], tuple[str]]:
        return LongInteger, (self.literal,)


def lenient_integer(literal: str) -> int:
    """`parse_int` for `json.loads`: the integer, or a `LongInteger` where Python will not
    convert it, so that one such number rejects its event rather than failing the whole text
    with a ValueError."""
    try:
        return int(literal)
    except ValueError:
        return LongInteger(literal)


_MARK = f"\x00long-integer-{secrets.token_hex(8)}-"


def dumps(value: Any, *, ensure_ascii: bool, sort_keys: bool = False) -> str:
    """`json.dumps` without spaces, writing each `LongInteger` in `value` as its literal
    (json.dumps writes 2**64). Only text that holds 2**64 is looked at again: each
    `LongInteger` is swapped for a string mark no client can send (a random part per process)
    and the mark's JSON replaced. Raises ValueError, RecursionError as json.dumps does."""
    options: dict[str, Any] = {
        "ensure_ascii": ensure_ascii,
        "sort_keys": sort_keys,
        "separators": (",", ":"),
    }
    text = json.dumps(value, **options)
    if _PAST_64_BITS_TEXT not in text:
        return text
    literals: list[str] = []
    try:
        marked = _marked(value, literals)
    except RecursionError:  # deeper than a walk in Python goes: 2**64 it stays
        return text
    text = json.dumps(marked, **options)
    for index, literal in enumerate(literals):
        text = text.replace(json.dumps(f"{_MARK}{index}"), literal, 1)
    return text


_PAST_64_BITS_TEXT = str(_PAST_64_BITS)


def _marked(value: Any, literals: list[str]) -> Any:
    """`value` with each `LongInteger` a mark numbered by its place in `literals`; `value`
    itself (no copy) where it holds none."""
    if isinstance(value, LongInteger):
        literals.append(value.literal)
        return f"{_MARK}{len(literals) - 1}"
    if isinstance(value, dict):
        items = {key: _marked(item, literals) for key, item in value.items()}
        changed = any(items[key] is not item for key, item in value.items())
        return items if changed else value
    if isinstance(value, list):
        marked = [_marked(item, literals) for item in value]
        changed = any(new is not old for new, old in zip(marked, value, strict=True))
        return marked if changed else value
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSHOWN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with each control character and lone surrogate as its JSON escape: a detail is
    one line, and no store can hold a lone surrogate."""
    return _UNSHOWN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _refused_at(value: Any, path: str) -> tuple[str, str, str] | None:
    """The first value in `value` (depth first, keys too) that msgspec refuses, as (path,
    reason code, what is wrong)."""
    if isinstance(value, _Refused):
        if value.literal in ("NaN", "Infinity", "-Infinity"):
            return path, "not_json", f"{value.literal} is no JSON number (RFC 8259, section 6)"
        if value.integer:
            return path, "invalid_number", f"{value.literal} is an integer outside 64 bits"
        return path, "invalid_number", f"{value.literal} is past a 64-bit float's range"
    if isinstance(value, str):
        if (surrogate := _SURROGATE.search(value)) is None:
            return None
        lone = printable(surrogate.group())
        return path, "not_json", f"{lone} is a lone surrogate, no character (RFC 8259, section 8.2)"
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{path}.{key}" if path else key
            pairs += [(at, key), (at, item)]
    elif isinstance(value, list):
        pairs = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    for at, item in pairs:
        if (found := _refused_at(item, at)) is not None:
            return found
    return None


def why_undecodable(data: bytes, decoder_said: str) -> tuple[str, str, Any]:
    """(reason code, one-line detail, the value the standard library parsed or None) for
    `data` that msgspec's JSON decoder refused, saying `decoder_said`: bytes that are no UTF-8
    (`invalid_utf8`, `not_utf8_detail`) or start with a byte order mark (`not_json`); else,
    named by its field's path as the event contract's details name fields
    (`properties.price`, `items[2]`), a number past a 64-bit float's range (`1e400`) or an
    integer of more than 20 characters (`invalid_number`), a `NaN` or `Infinity` literal, or a
    string or key with a lone surrogate escaped (`\\ud800`), which are no JSON (`not_json`);
    else where the standard library's parser stops, by line and column (`unparsed_detail`):
    msgspec's byte offsets point past the token it gave up on. Text the standard library
    reads without any of these keeps `decoder_said`. Only for refused text: it decodes and
    parses it again. A literal is shown up to 24 characters; control characters and lone
    surrogates as their escapes, so a detail is one line any store can hold."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "invalid_utf8", not_utf8_detail(exc), None
    if data.startswith(_BOM):
        return "not_json", _BOM_DETAIL, None
    try:
        parsed = json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_Refused)
    except json.JSONDecodeError as exc:
        return "not_json", unparsed_detail(exc), None
    found = _refused_at(parsed, "")
    if found is None:
        return "not_json", decoder_said, parsed
    path, reason, wrong = found
    return reason, printable(f"{path or 'the message'}: {wrong}"), parsed


_BOM = b"\xef\xbb\xbf"
_BOM_DETAIL = (
    "starts with a UTF-8 byte order mark, which JSON text must not (RFC 8259, section 8.1): "
    "save the file as UTF-8 without it"
)


def not_utf8_detail(exc: UnicodeDecodeError) -> str:
    """The detail of `invalid_utf8`: where the first byte that is no UTF-8 sits."""
    return (
        f"byte 0x{exc.object[exc.start]:02x} at position {exc.start} is not UTF-8 ({exc.reason}): "
        "JSON text is UTF-8 (RFC 8259)"
    )


def unparsed_detail(exc: ValueError, otherwise: str = "") -> str:
    """What the standard library's parser found wrong, and where: `Expecting value at line 1,
    column 1` (line and column count characters from 1), for a `json.JSONDecodeError`;
    `otherwise` for another error (an integer past 4,300 digits, bytes that are no UTF-8)."""
    if not isinstance(exc, json.JSONDecodeError):
        return otherwise
    return f"{exc.msg.removesuffix(' at')} at line {exc.lineno}, column {exc.colno}"


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
