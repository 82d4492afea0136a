"""The caller's address, as the collector puts it in `context.ip`.

The connection's peer address, unless the API runs behind proxies the operator trusts
(`BA_TRUSTED_PROXY_HOPS`, the number of proxies in front of it that append to
`X-Forwarded-For`; Cloud Run's front end is one). Each such proxy appends the address it saw,
so the caller is the N-th entry from the right: entries further left were written by the
client and prove nothing. With 0 (the default) `X-Forwarded-For` is ignored.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

__all__ = ["client_address"]


def client_address(connection: HTTPConnection, trusted_proxy_hops: int) -> str | None:
    """The caller's IP address as text, or None when the server does not know it (a peer
    that is not an IP address, such as a Unix socket's).

    With `trusted_proxy_hops` = N > 0 it is the N-th address from the right of the
    `X-Forwarded-For` headers (all of them, in order); a header with fewer entries, or an entry
    that is not an IP address, means the proxies are not as configured, and the peer's address
    is used instead."""
    peer = _ip(connection.client.host) if connection.client is not None else None
    if trusted_proxy_hops <= 0:
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    if len(hops) < trusted_proxy_hops:
        return peer
    return _ip(hops[-trusted_proxy_hops]) or peer


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
