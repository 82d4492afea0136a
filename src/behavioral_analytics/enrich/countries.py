"""Country from an IP address, by iptocc (MIT OR Apache-2.0): an offline table of the five
Regional Internet Registries' delegation files, compiled into the package (no file is read
and nothing is downloaded at run time).

The value is the ISO 3166-1 alpha-2 code of the country an address block is *assigned* to by
its registry, which is not always where it is used (the package's documentation puts its
agreement with commercial databases at about 95% of IPv4 addresses). Private, reserved and
unassigned addresses have none.

Where the address is read: the recipe's `ip`, else `ip_address`, else Segment's `context.ip`
(`call_context.segment_context`), before privacy.py truncates them. A field may hold a
comma-separated list (as `X-Forwarded-For` does): the first address is the client's. The forms
read are those privacy.py accepts: bare, with a port, bracketed, with an IPv6 zone, IPv4-mapped
IPv6.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import iptocc

from behavioral_analytics.call_context import segment_context

__all__ = ["PARSER", "client_address", "country_of"]

# The version of iptocc that made the values, recorded in `$derived.parsers.geo` (a version
# only, as `user_agents.PARSER`).
PARSER = version("iptocc")


def client_address(properties: Mapping[str, Any]) -> str | None:
    """The first address of the first IP field that holds text (module docstring), or None."""
    value = properties.get("ip")
    if not (isinstance(value, str) and value.strip()):
        value = properties.get("ip_address")
        if not (isinstance(value, str) and value.strip()):
            context = segment_context(properties)
            value = context.get("ip") if context is not None else None
            if not (isinstance(value, str) and value.strip()):
                return None
    return value.split(",", 1)[0].strip()


def country_of(address: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of the country `address` is assigned to, or None (not an
    address, or private, reserved or unassigned). A visitor's calls come from one address:
    the answers for the last `_CACHED_ADDRESSES` are remembered (parsing one and looking it
    up take 6 µs for IPv4, 18 µs for IPv6)."""
    if len(address) > _CACHED_CHARS:
        return _country_of(address)
    return _cached_country_of(address)


_CACHED_CHARS = 64  # an IPv6 address with a zone and a port is under this
_CACHED_ADDRESSES = 16384


def _country_of(address: str) -> str | None:
    parsed = _parse(address)
    if parsed is None:
        return None
    return iptocc.country_code(str(parsed))


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        text = text[1:close]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_cached_country_of = lru_cache(maxsize=_CACHED_ADDRESSES)(_country_of)
