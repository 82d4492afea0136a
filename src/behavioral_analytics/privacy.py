"""Privacy at ingestion: IP addresses truncated, listed property fields hashed. Pure.

Field paths. A configured path such as `context.traits.email` names every value whose key
path, joined with dots, is that text: `{"context": {"traits": {"email": …}}}`, but also a key
that itself contains dots (`{"context.traits.email": …}`, `{"context": {"traits.email": …}}`).
Arrays are not entered. A path under `context.` names the same keys under `$context` too.

IP fields. A key at the top of the properties, in their `context` object (or `$context`, where
the collector keeps a call's context beside a property of that name: `call_context`), or
flattened as `context.KEY`, is an IP field when its name, case, `_`, `-` and a leading `$`
aside, is one of `IP_NAMES`: the recipe's `ip` and `ip_address`, Segment's `context.ip`, and
the spellings other tools and apps send (`ipAddress`, `IP`, `$ip` as PostHog and Mixpanel do,
`client_ip`, Snowplow's `user_ipaddress`). A name that merely holds `ip` (`zip`, `tip`) is not.

IP values. A value in an IP field is a comma-separated list (as in `X-Forwarded-For`) of one or
more addresses, each bare (`203.0.113.77`, `2001:db8::1`), with a port (`203.0.113.77:8443`,
`[2001:db8::1]:443`), bracketed, with an IPv6 zone (`fe80::1%eth0`) or IPv4-mapped
(`::ffff:203.0.113.77`, truncated as the IPv4 address it carries). Each becomes its /24
(IPv4) or /48 (IPv6) network address, ports and zones dropped, and the list is joined again
with `", "`. A value that is not such a list (not a string, an empty item, a host name,
`unknown`) is removed from the properties: it is never kept in full. Truncating twice changes
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import msgspec

from behavioral_analytics.call_context import CONTEXT, MOVED_CONTEXT
from behavioral_analytics.json_shape import LongInteger, lenient_integer

__all__ = [
    "IP_NAMES",
    "hash_value",
    "is_ip_name",
    "mentions",
    "named_ids",
    "scrub",
    "truncate_ip",
    "who_first",
]

# The names of IP fields, case, `_`, `-` and a leading `$` removed (the module's docstring).
IP_NAMES = frozenset(
    {
        "ip",
        "ipaddress",
        "clientip",
        "clientipaddress",
        "remoteip",
        "requestip",
        "userip",
        "useripaddress",
    }
)
_CONTEXTS = (CONTEXT, MOVED_CONTEXT)  # the call's context, and where the collector moves it
_IN_CONTEXT = f"{CONTEXT}."


def _address(item: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = item.strip()
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :] if close > 0 else "?"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        text = text[1:close]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def truncate_ip(value: object) -> str | None:
    """The value of an IP field truncated: each address of a comma-separated list to its /24
    (IPv4) or /48 (IPv6) network address (as Google Analytics does), ports and zones dropped,
    IPv4-mapped IPv6 as its IPv4 address; None when the value is not such a list (the field is
    then removed). Forms accepted: see the module's docstring.

    Parsing an address takes microseconds (17 for IPv4, 67 for IPv6 by `ipaddress.ip_network`)
    and every call through the collector carries one, which the worker truncates again: values
    up to `_CACHED_CHARS` long are remembered (`_CACHED_VALUES` of them, a few MiB at most)."""
    if not isinstance(value, str):
        return None
    if len(value) <= _CACHED_CHARS:
        return _truncated_cached(value)
    return _truncated(value)


_CACHED_CHARS = 128  # a list of a few addresses; longer values are computed each time
_CACHED_VALUES = 16384
_IPV4_NETWORK = 0xFFFFFF00  # the /24's mask
_IPV6_HOST_BITS = 128 - 48


def _truncated(value: str) -> str | None:
    truncated = []
    for item in value.split(","):
        address = _address(item)
        if address is None:
            return None
        if address.version == 4:
            network: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                int(address) & _IPV4_NETWORK
            )
        else:
            network = ipaddress.IPv6Address(int(address) >> _IPV6_HOST_BITS << _IPV6_HOST_BITS)
        truncated.append(str(network))
    return ", ".join(truncated)


_truncated_cached = lru_cache(maxsize=_CACHED_VALUES)(_truncated)


def hash_value(value: Any, salt: bytes) -> str:
    """A keyed hash (HMAC-SHA256, hex): equal inputs stay joinable, the input is not readable."""
    text = value if isinstance(value, str) else repr(value)
    return hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=256)
def _prefixes(path: str) -> tuple[str, ...]:
    """The keys that can start a match of `path`: its dot-separated prefixes, then itself."""
    parts = path.split(".")
    return tuple(".".join(parts[:end]) for end in range(1, len(parts) + 1))


@lru_cache(maxsize=4096)
def is_ip_name(key: str) -> bool:
    """Whether `key` names an IP field: one of `IP_NAMES`, case, `_`, `-` and a leading `$`
    aside (`ipAddress`, `IP`, `$ip`, `client-ip`)."""
    return key.lower().lstrip("$").replace("_", "").replace("-", "") in IP_NAMES


# Keys seen that name no IP field, at the top of the properties and inside a context, so that
# a set's subset test (in C) passes over most properties at once. Apart, as a key's judgment
# depends on where it stands (`context.ip` is one at the top only); bounded, as keys are the
# clients' own.
_PLAIN_TOP: set[str] = set()
_PLAIN_IN_CONTEXT: set[str] = set()
_PLAIN_KEYS_MAX = 4096


def _ip_fields(properties: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (parent, key) of an IP field in `properties` (the module's docstring)."""
    if not properties.keys() <= _PLAIN_TOP:
        for key in list(properties):
            if key in _PLAIN_TOP:
                continue
            flat, _, rest = key.partition(".")
            if is_ip_name(key) or (flat == CONTEXT and is_ip_name(rest)):
                yield properties, key
            elif len(_PLAIN_TOP) < _PLAIN_KEYS_MAX:
                _PLAIN_TOP.add(key)
    for name in _CONTEXTS:
        context = properties.get(name)
        if type(context) is not dict or context.keys() <= _PLAIN_IN_CONTEXT:
            continue
        for key in list(context):
            if key in _PLAIN_IN_CONTEXT:
                continue
            if is_ip_name(key):
                yield context, key
            elif len(_PLAIN_IN_CONTEXT) < _PLAIN_KEYS_MAX:
                _PLAIN_IN_CONTEXT.add(key)


def _matches(node: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (parent, key) under `node` whose key path joined with dots equals `path`: a key
    that is `path`, or a dot-separated prefix of it whose value is an object holding the rest.
    Only those few keys are looked up, never every key of `node`."""
    for key in _prefixes(path):
        if key not in node:
            continue
        if key == path:
            yield node, key
        else:
            child = node[key]
            if isinstance(child, dict):
                yield from _matches(child, path[len(key) + 1 :])


def scrub(
    properties: dict[str, Any],
    *,
    truncate_ips: bool,
    hashed_fields: Sequence[str] = (),
    salt: bytes = b"",
) -> bool:
    """Truncate IPs and hash the listed fields (dotted paths, matched against the joined key
    path: see the module's docstring) in place; whether anything changed. A null value is left
    as it is."""
    changed = False
    if truncate_ips:
        for parent, name in list(_ip_fields(properties)):
            value = parent[name]
            if value is None:
                continue
            truncated = truncate_ip(value)
            if truncated is None:
                del parent[name]
                changed = True
            elif truncated != value:
                parent[name] = truncated
                changed = True
    for path in dict.fromkeys(hashed_fields):
        found = list(_matches(properties, path))
        moved = properties.get(MOVED_CONTEXT)
        if path.startswith(_IN_CONTEXT) and type(moved) is dict:
            found += _matches(moved, path[len(_IN_CONTEXT) :])
        for parent, name in found:
            if parent[name] is not None:
                parent[name] = hash_value(parent[name], salt)
                changed = True
    return changed


# Where a message names a person: the canonical event's and Segment's who-fields, and alias's
# previous id (either a user's or an anonymous id), at the top level under any spelling of
# their names, case, `_` and `-` aside (`userId`, `user_id`, `userID`: a dead letter may be one
# for its spelling), and in `properties` by those exact names (another spelling there is a
# property of the event, which may name someone else).
_KINDS = {"userid": "user", "anonymousid": "anonymous", "previousid": "either"}
_EXACT = {
    "user_id": "user",
    "userId": "user",
    "anonymous_id": "anonymous",
    "anonymousId": "anonymous",
    "previousId": "either",
}


def _kind(key: str, loose: bool = True) -> str | None:
    """The kind of id a who-field's name (above) holds: "user", "anonymous" or "either"; None
    for another name. `loose`: any spelling (the top level), else the exact names."""
    if not loose:
        return _EXACT.get(key)
    return _KINDS.get(key.replace("_", "").replace("-", "").lower()) if len(key) < 20 else None


def _spelling(value: Any) -> str | None:
    """The id a who-field's value parses to, as the event parser reads it: a string as is, an
    integer (not a boolean) as its decimal string; None for anything else (an integer too long
    to convert is no id: ids are at most a few hundred characters)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool | LongInteger):
        return str(value)
    return None


def _messages(payload: Any) -> Iterator[dict[str, Any]]:
    """The message objects in a dead letter's JSON: one, a list, or a Segment `batch` (a list,
    or one call where a list belongs), nested any number of times."""
    pending = [payload]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(reversed(node))
        elif isinstance(node, dict):
            yield node
            if isinstance(node.get("batch"), list | dict):
                pending.append(node["batch"])


def who_first(payload: Any, depth: int = 0) -> Any:
    """`payload` (JSON values) with each message's who-fields first (`_messages`, `_kind`),
    then its `properties` (their who-fields first) when they hold one: a prefix of its JSON
    then names whoever it holds any other field of, so `mentions` finds a cut copy's people
    by their ids' text. Past 32 levels of batches the rest is left as it is."""
    if depth > 32:
        return payload
    if isinstance(payload, list):
        return [who_first(item, depth + 1) for item in payload]
    if not isinstance(payload, dict):
        return payload
    first = _who_keys_first(payload)
    properties = payload.get("properties")
    if isinstance(properties, dict) and (ordered := _who_keys_first(properties, loose=False)):
        first["properties"] = {**ordered, **properties}
    message = {**first, **payload, **first}
    if isinstance(message.get("batch"), list | dict):
        message["batch"] = who_first(message["batch"], depth + 1)
    return message


def _who_keys_first(node: dict[str, Any], loose: bool = True) -> dict[str, Any]:
    """The who-fields of `node` alone (`_kind`), in its order."""
    return {key: value for key, value in node.items() if _kind(key, loose) is not None}


_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")


def _unescaped(match: re.Match[bytes]) -> bytes:
    return chr(int(match[1], 16)).encode("utf-8", "surrogatepass")


def mentions(data: bytes, user_ids: set[str], anonymous_ids: set[str]) -> bool:
    """Whether a dead letter's bytes name one of the ids. JSON is parsed and its who-fields
    (`user_id`/`userId`, `anonymous_id`/`anonymousId`, and `previousId` for either, at the
    top level under any spelling of those names, in `properties` by those, in the messages of
    a list or a Segment `batch`) compared by what they parse to, so every spelling counts: `12345`
    and `"12345"`, `"\\u00e9"` and `"é"`.
    Bytes that are not JSON, or nested deeper than the decoder follows (about a thousand
    levels: it raises RecursionError), are judged by their text: an id's UTF-8 bytes, or its
    JSON-escaped ASCII form, anywhere in them, or anywhere once their `\\uXXXX` escapes are
    read (an id escaped in part: `"kim-\\u0034"`). What only a lenient reader takes (`NaN`,
    `Infinity`, an integer past 64 bits, a lone surrogate escaped: the collector keeps such a
    rejected call as sent) is JSON here too (`_decoded`)."""
    payload = _decoded(data)
    if payload is _NOT_JSON:
        needles = {n.encode() for n in user_ids | anonymous_ids}
        needles |= {json.dumps(n)[1:-1].encode() for n in user_ids | anonymous_ids}
        plain = _ESCAPE.sub(_unescaped, data) if b"\\u" in data else data
        return any(needle and (needle in data or needle in plain) for needle in needles)
    users, anonymous = _named(payload)
    return bool(users & user_ids or anonymous & anonymous_ids)


def named_ids(data: bytes) -> tuple[set[str], set[str]]:
    """The (user ids, anonymous ids) a dead letter's JSON names in the who-fields `mentions`
    reads (`previousId` in both sets); two empty sets for bytes that are not JSON, even to a
    lenient reader (`_decoded`)."""
    payload = _decoded(data)
    return (set(), set()) if payload is _NOT_JSON else _named(payload)


_NOT_JSON = object()


def _decoded(data: bytes) -> Any:
    """`data`'s JSON value by msgspec, else by the standard library (`NaN`, `Infinity`, a lone
    surrogate escaped, integers of any length: `json_shape.lenient_integer`), else
    `_NOT_JSON` (or nested deeper than either decoder follows)."""
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(data, parse_int=lenient_integer)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _named(payload: Any) -> tuple[set[str], set[str]]:
    users: set[str] = set()
    anonymous: set[str] = set()
    for message in _messages(payload):
        properties = message.get("properties")
        for scope, loose in ((message, True), (properties, False)):
            if not isinstance(scope, dict):
                continue
            for key, value in scope.items():
                kind = _kind(key, loose)
                if kind is None or (spelling := _spelling(value)) is None:
                    continue
                if kind != "anonymous":
                    users.add(spelling)
                if kind != "user":
                    anonymous.add(spelling)
    return users, anonymous
