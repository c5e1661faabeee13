"""`/api/db/<x>/...` answered exactly as `/api/<x>/db/...`: an in-process rewrite of the path.

The rewrite happens in the outermost middleware, so the body guard (key before body, size
limits), the routes' key checks, the unknown-query-parameter check, routing and the error
handlers all see the component's own path: the answer is the same, byte for byte, streamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.context import Component

_DB_PREFIX = re.compile(r"^/api/([^/]+)/db$")


def aliases_of(enabled: Sequence[Component]) -> dict[str, str]:
    """Return alias prefix -> component prefix (`/api/db/test` -> `/api/test/db`)."""
    out: dict[str, str] = {}
    for comp in enabled:
        for router in comp.routers:
            match = _DB_PREFIX.match(router.prefix)
            if match:
                out[f"/api/db/{match.group(1)}"] = router.prefix
    return out


def escapes(rest: str) -> bool:
    """Return whether the decoded part after an alias prefix has a `.` or `..` segment.

    The path is matched decoded, so `%2F..%2F` arrives here as `/../` and is refused too;
    any other path stays under the component's prefix (routing never normalises it).
    """
    return any(segment in (".", "..") for segment in rest.split("/"))


async def _not_found(send: Send) -> None:
    payload = json.dumps(
        {
            "detail": "a path under /api/db/ must not contain '.' or '..' segments",
            "code": "not_found",
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class DbAliasMiddleware:
    """Rewrite `/api/db/<x>/<rest>` to `/api/<x>/db/<rest>` and hand the request on."""

    def __init__(self, app: ASGIApp, aliases: Mapping[str, str]) -> None:
        self.app = app
        self.aliases = dict(aliases)

    def _target(self, scope: Scope) -> tuple[str, str, str] | None:
        path: str = scope["path"]
        for alias, target in self.aliases.items():
            if path == alias or path.startswith(alias + "/"):
                return alias, target, path[len(alias) :]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, under the component's own path when it uses an alias."""
        found = self._target(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        alias, target, rest = found
        raw: bytes | None = scope.get("raw_path")
        alias_bytes = alias.encode()
        raw_rest = raw[len(alias_bytes) :] if raw and raw.startswith(alias_bytes) else None
        if escapes(rest):
            await _not_found(send)
            return
        new_path = target + rest
        scope = dict(scope)
        scope["path"] = new_path
        if raw is not None:
            scope["raw_path"] = (
                target.encode() + raw_rest
                if raw_rest is not None
                else quote(new_path, safe="/:@!$&'()*+,;=-._~").encode()
            )
        await self.app(scope, receive, send)
