"""The guard of open loopback mode: who may talk to an API that asks for no key.

Without keys (`BA_WRITE_KEYS` or `BA_READ_KEYS` empty) the API runs only on a loopback
address, but a browser on the same machine can still reach it: a page on another origin can
send a `no-cors` POST (a `text/plain` or form body needs no preflight), and a page whose
host name is re-pointed at 127.0.0.1 (DNS rebinding) can read the answers. So, while any
kind of access is open:

- `Host` must name this server: `localhost`, `127.0.0.1` or `[::1]` on the bound port (the
  same place), the bound host itself, or a name in `BA_ALLOWED_HOSTS` (`name` on any port,
  `name:port` on that one). Otherwise `403 forbidden_host`. A request without `Host`
  (HTTP/1.0, not a browser's) passes.
- While writes are open, a request that can write (any method but GET, HEAD and OPTIONS)
  comes from no origin, the server's own (the names above on the bound port) or one in
  `BA_CORS_ORIGINS` (`403 forbidden_origin`), with a JSON or `text/plain` body or none
  (`415 unsupported_content_type`: HTML forms send `application/x-www-form-urlencoded` or
  `multipart/form-data`).

With keys configured the guard stands aside: a key is what a caller must hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from behavioral_analytics.api.responses import JSONResponse, error_body

__all__ = ["LoopbackGuard", "parse_host"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BODY_TYPES = ("application/json", "text/plain")


def parse_host(value: str, default_port: int) -> tuple[str, int] | None:
    """`Host` (or an origin's authority) → (lower-case name without brackets, port), or None
    when it cannot be read. `default_port` stands in for a missing port."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    else:
        name, _, port_text = value.partition(":")
    if not name:
        return None
    if not port_text:
        return name, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


class LoopbackGuard:
    """ASGI middleware enforcing the module's rules. `bound_host` and `bound_port` are where
    the server listens; `allowed_hosts` are `BA_ALLOWED_HOSTS` entries (`name` or
    `name:port`); `allowed_origins` are `BA_CORS_ORIGINS` entries (`*` allows any)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        bound_host: str,
        bound_port: int,
        open_writes: bool,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.port = bound_port
        self.open_writes = open_writes
        bound = bound_host.strip("[]").lower()
        self.local_names = _LOOPBACK_NAMES | {bound}
        self.any_port: set[str] = set()
        self.on_port: set[tuple[str, int]] = set()
        for entry in allowed_hosts:
            parsed = parse_host(entry, -1)
            if parsed is None:
                continue
            if parsed[1] == -1:
                self.any_port.add(parsed[0])
            else:
                self.on_port.add(parsed)
        origins = {o.strip().rstrip("/").lower() for o in allowed_origins if o.strip()}
        self.any_origin = "*" in origins
        self.origins = origins

    def host_allowed(self, host: str) -> bool:
        parsed = parse_host(host, 80)
        if parsed is None:
            return False
        name, port = parsed
        return (
            (name in self.local_names and port == self.port)
            or name in self.any_port
            or parsed in self.on_port
        )

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        scheme, sep, authority = origin.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False  # "null" (sandboxed frames, file: pages) included
        parsed = parse_host(authority, 443 if scheme == "https" else 80)
        return parsed is not None and parsed[0] in self.local_names and parsed[1] == self.port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        refusal = None
        if host is not None and not self.host_allowed(host):
            refusal = (403, "forbidden_host", "this server does not answer to that Host")
        elif self.open_writes and scope["method"] not in _SAFE_METHODS:
            origin = headers.get("origin")
            content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if origin is not None and not self.origin_allowed(origin):
                refusal = (
                    403,
                    "forbidden_origin",
                    "without write keys only this server's pages and BA_CORS_ORIGINS may write",
                )
            elif content_type and not (
                content_type in _BODY_TYPES or content_type.endswith("+json")
            ):
                refusal = (
                    415,
                    "unsupported_content_type",
                    "send the body as application/json or text/plain",
                )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, detail = refusal
        await JSONResponse(error_body(code, detail), status_code=status)(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """The headers this guard reads, decoded as Latin-1 (as HTTP defines); the first wins."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in ("host", "origin", "content-type") and name not in found:
            found[name] = raw_value.decode("latin-1")
    return found
