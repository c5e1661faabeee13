"""The Host rule: only configured host names are served, so DNS rebinding cannot reach the API."""

from __future__ import annotations

from collections.abc import Sequence

from starlette._utils import parse_host_header
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def host_pattern(host: str) -> str:
    """Return a host as a Host header carries it (an IPv6 literal in brackets), lower-cased."""
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


class HostGuardMiddleware(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware answering a refused Host in the app's error shape.

    HTTP gets a 400 `{"detail", "code": "invalid_host"}`; a WebSocket is closed (1008) before
    it is accepted. `"*"` allows any host; `*.example.com` any subdomain. No www redirect.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        super().__init__(app, [host_pattern(h) for h in allowed_hosts], www_redirect=False)

    def allowed(self, host_header: str | None) -> bool:
        """Return whether a Host header names an allowed host."""
        parsed = parse_host_header(host_header)
        if parsed is None:
            return False
        host = parsed.host.lower()
        return any(
            host == pattern or (pattern.startswith("*") and host.endswith(pattern[1:]))
            for pattern in self.allowed_hosts
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed hosts on; refuse the others."""
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.allowed(Headers(scope=scope).get("host")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        detail = "the Host header names a host this server does not serve (APP_ALLOWED_HOSTS)"
        response = JSONResponse({"detail": detail, "code": "invalid_host"}, status_code=400)
        await response(scope, receive, send)
