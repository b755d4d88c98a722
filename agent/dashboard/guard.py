"""What the dashboard answers at all: requests addressed to it by a name it knows, and writes
from its own pages.

A token-less dashboard on loopback trusts whoever can reach the port, and a web page can reach
it through the visitor's browser: by DNS rebinding (evil.example resolves to 127.0.0.1, so the
browser sends `Host: evil.example`) or by a cross-site form or fetch (`Origin:
http://evil.example`). Both are refused here, before any route runs (issue 19, item 14).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK = ("localhost", "127.0.0.1", "::1")
HOSTS_ENV = "PEAM_DASHBOARD_HOSTS"  # more names the dashboard answers to, comma-separated; * any
WILDCARD_BINDS = ("0.0.0.0", "::", "")  # every interface: a bind address, not a name
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allowed_hosts(bind: str | None, extra: str | None = None) -> frozenset[str]:
    """The loopback names, the address the dashboard binds (unless it binds every interface)
    and the names of `extra` ($PEAM_DASHBOARD_HOSTS)."""
    names = set(LOOPBACK) | {n.strip().lower().rstrip(".") for n in (extra or "").split(",") if n.strip()}
    if bind and bind not in WILDCARD_BINDS:
        names.add(bind.lower().strip("[]"))
    return frozenset(names)


def host_name(host: str) -> str:
    """`Host` header value without its port: `127.0.0.1:8765` → `127.0.0.1`, `[::1]:80` → `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).rstrip(".")


class HostGuard:
    """ASGI middleware: 400 for an unknown Host, 403 for a write from another origin."""

    def __init__(self, app, hosts: Iterable[str] = LOOPBACK):
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # no websocket routes; lifespan events pass
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            return await _refuse(send, 400, f"unknown Host {host!r}: open the dashboard at "
                                            f"127.0.0.1 or localhost, or add the name to {HOSTS_ENV}")
        if scope.get("method", "GET") not in SAFE_METHODS and not _same_origin(headers, host):
            return await _refuse(send, 403, "cross-origin write refused: use the dashboard's own "
                                            "pages, or send no Origin header (API clients)")
        return await self.app(scope, receive, send)


def _same_origin(headers: dict[str, str], host: str) -> bool:
    """A browser names the page that sent a write in `Origin` (and `Sec-Fetch-Site`); API
    clients such as curl send neither."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
