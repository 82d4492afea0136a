"""Names that become Firestore document ids or map keys, made safe and kept reversible.

Document ids may not contain `/`, be `.`/`..`, match `__.*__` or exceed 1,500 bytes. Map keys
(field names) may not match `__.*__` or exceed 1,500 bytes; dots and backticks are fine as long
as they are written as nested maps (never spliced into a dotted field path), which is what the
store does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["decode_map", "decode_map_key", "doc_id", "encode_map", "encode_map_key"]

MAX_NAME_BYTES = 1500
_RESERVED = re.compile(r"^__.*__$", re.DOTALL)
_ESCAPE = "~"  # prefix of an escaped map key
_HASHED = "~#"  # prefix of a map key too long to keep (irreversible, never produced by events)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def doc_id(prefix: str, value: str) -> str:
    """`prefix` + `value` with `%` and `/` percent-encoded; hashed (`%H…`) when too long.

    The prefix keeps the id clear of `.`, `..` and `__…__`; `%H` never comes out of the
    percent-encoding, so hashed and plain ids cannot collide."""
    escaped = value.replace("%", "%25").replace("/", "%2F")
    name = prefix + escaped
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"{prefix}%H{_digest(value)}"
    return name


def encode_map_key(key: str) -> str:
    """`key` as a map key: `~`-escaped when reserved or escaped-looking, hashed (`~#…`) when
    too long."""
    if len(key.encode()) > MAX_NAME_BYTES - 2:
        return _HASHED + _digest(key)
    if key.startswith(_ESCAPE) or _RESERVED.match(key):
        return _ESCAPE + key
    return key


def decode_map_key(key: str) -> str:
    """The key `encode_map_key` escaped (a hashed key stays as it is)."""
    if key.startswith(_HASHED):
        return key
    return key[1:] if key.startswith(_ESCAPE) else key


def encode_map(value: Any) -> Any:
    """Escape every map key in a JSON-like value (maps nest inside lists too)."""
    if isinstance(value, dict):
        return {encode_map_key(k): encode_map(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_map(v) for v in value]
    return value


def decode_map(value: Any) -> Any:
    """Undo `encode_map`."""
    if isinstance(value, dict):
        return {decode_map_key(k): decode_map(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_map(v) for v in value]
    return value
