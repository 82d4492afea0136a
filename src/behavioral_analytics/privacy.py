"""Privacy at ingestion: IP addresses truncated, listed property fields hashed. Pure."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = ["IP_FIELDS", "hash_value", "mentions", "scrub", "truncate_ip"]

# Where an IP address may sit in a canonical event's properties (recipe, Segment context).
IP_FIELDS = ("ip", "ip_address", "context.ip")


def truncate_ip(value: str) -> str:
    """IPv4 to its /24, IPv6 to its /48 (as Google Analytics does); anything else unchanged."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return value
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def hash_value(value: Any, salt: bytes) -> str:
    """A keyed hash (HMAC-SHA256, hex): equal inputs stay joinable, the input is not readable."""
    text = value if isinstance(value, str) else repr(value)
    return hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()


def _parent(properties: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    *parents, last = path.split(".")
    node: Any = properties
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), last


def scrub(
    properties: dict[str, Any],
    *,
    truncate_ips: bool,
    hashed_fields: Sequence[str] = (),
    salt: bytes = b"",
) -> bool:
    """Truncate IPs and hash the listed fields (dotted paths) in place; whether anything changed."""
    changed = False
    if truncate_ips:
        for path in IP_FIELDS:
            parent, name = _parent(properties, path)
            value = parent.get(name) if parent is not None else None
            if isinstance(value, str):
                truncated = truncate_ip(value)
                if truncated != value:
                    parent[name] = truncated  # type: ignore[index]
                    changed = True
    for path in hashed_fields:
        parent, name = _parent(properties, path)
        if parent is not None and name in parent and parent[name] is not None:
            parent[name] = hash_value(parent[name], salt)
            changed = True
    return changed


def mentions(data: bytes, user_ids: set[str], anonymous_ids: set[str]) -> bool:
    """Whether a dead letter's bytes name one of the ids: as a JSON who-field where they parse,
    else anywhere in the text (a malformed message is judged by its bytes)."""
    try:
        payload = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return True
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("user_id", item.get("userId")) in user_ids:
            return True
        if item.get("anonymous_id", item.get("anonymousId")) in anonymous_ids:
            return True
    return False
