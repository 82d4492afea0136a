"""Write keys for the collector, read keys for queries and the dashboard.

Keys come from the settings (`BA_WRITE_KEYS`, `BA_READ_KEYS`, comma separated), never from
code. A client presents one as the HTTP Basic user name (Segment's convention, empty password;
a key in the password is accepted too), in `X-Write-Key` / `X-Read-Key`, or as
`Authorization: Bearer <key>`.

A request without any key and one whose keys are all unknown are both `401 unauthorized`; the
detail says which (`a write key is required: …` or `unknown write key: …`).

With no keys of a kind configured the API runs open for that kind, which it only does bound
to a loopback address (local development; `up`); anywhere else it refuses to start.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from fastapi import Request

from behavioral_analytics.api.responses import ApiError
from behavioral_analytics.settings import ConfigError, Settings

__all__ = ["KeyPolicy", "is_loopback"]

_WRITE_WAYS = "HTTP Basic user name, X-Write-Key, Bearer or writeKey"
_READ_WAYS = "Authorization: Bearer, HTTP Basic user name or X-Read-Key"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    write_keys: frozenset[str]
    read_keys: frozenset[str]

    @property
    def open_writes(self) -> bool:
        return not self.write_keys

    @property
    def open_reads(self) -> bool:
        return not self.read_keys

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyPolicy:
        policy = cls(Settings.keys(settings.write_keys), Settings.keys(settings.read_keys))
        if not is_loopback(settings.api_host):
            named = (("BA_WRITE_KEYS", policy.write_keys), ("BA_READ_KEYS", policy.read_keys))
            missing = [name for name, keys in named if not keys]
            if missing:
                raise ConfigError(
                    f"{' and '.join(missing)} must be set to serve the API on {settings.api_host} "
                    "(without keys it only runs on a loopback address such as 127.0.0.1)"
                )
        return policy

    def write_key(self, request: Request) -> str:
        """The caller's write key ('' when writes are open), or 401."""
        key = self.header_write_key(request)
        return self.check_write_key(None, request) if key is None else key

    def header_write_key(self, request: Request) -> str | None:
        """The write key presented in the headers ('' when writes are open), or None when none
        is known there (the body's `writeKey` may still be: `check_write_key`)."""
        if self.open_writes:
            return ""
        for candidate in _presented(request, "x-write-key")[0]:
            if _known(candidate, self.write_keys):
                return candidate
        return None

    def check_write_key(self, candidate: object, request: Request) -> str:
        """`candidate` (a `writeKey` from the body of `request`) if it is a known write key,
        else 401: an unknown write key when it or a key in the headers was given, else a
        missing one."""
        if isinstance(candidate, str) and self.knows_write_key(candidate):
            return candidate
        given = candidate not in (None, "") or _presented(request, "x-write-key")[1]
        raise ApiError(
            401,
            "unauthorized",
            f"unknown write key: give one of this collector's keys ({_WRITE_WAYS})"
            if given
            else f"a write key is required: {_WRITE_WAYS}",
            headers={"WWW-Authenticate": 'Basic realm="behavioral-analytics"'},
        )

    def knows_write_key(self, candidate: str) -> bool:
        """Whether `candidate` is a write key (any is, when writes are open)."""
        return self.open_writes or _known(candidate, self.write_keys)

    def require_read(self, request: Request) -> None:
        """Nothing when the request holds a known read key (or reads are open), else 401: an
        unknown read key when one was given, else a missing one."""
        if self.open_reads:
            return
        candidates, given = _presented(request, "x-read-key")
        for candidate in candidates:
            if _known(candidate, self.read_keys):
                return
        # Bearer, not Basic: a Basic challenge would pop the browser's login dialog.
        raise ApiError(
            401,
            "unauthorized",
            f"unknown read key: give one of this API's read keys ({_READ_WAYS})"
            if given
            else f"a read key is required: {_READ_WAYS}",
            headers={"WWW-Authenticate": 'Bearer realm="behavioral-analytics"'},
        )


def _presented(request: Request, header: str) -> tuple[list[str], bool]:
    """The keys the headers hold (`header`, Bearer, Basic user name and password), and whether
    any key was given at all (a Basic value that does not decode was, though it holds none)."""
    keys = []
    direct = request.headers.get(header)
    if direct and direct.strip():
        keys.append(direct.strip())
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        keys.append(value)
    elif scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return keys, True
        user, _, password = decoded.partition(":")
        keys.extend(key for key in (user, password) if key)
    return keys, bool(keys)


def _known(candidate: str, keys: frozenset[str]) -> bool:
    found = False
    encoded = candidate.encode("utf-8", "surrogateescape")
    for key in keys:
        found |= hmac.compare_digest(encoded, key.encode("utf-8"))
    return found
