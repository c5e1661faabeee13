"""Request bodies checked before any route sees them: API key first, size while it streams, text."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from app.core.errors import AppError
from app.core.keys import KeyRing, Scope, key_needed
from app.core.unicode_body import has_lone_surrogate

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
SPOOL_BYTES = 4 * 1024 * 1024
"""A body larger than this is held in a temporary file (not memory) until it is complete."""

# Routes that take whole documents (recording a run or task, its cases/metrics/results, imports)
# get the large limit; every other body (a progress tick, a step, a search) the small one.
LARGE_BODY_PATHS = (
    re.compile(r"^/api/[^/]+/db/(runs|tasks|import(/[^/]+)?)$"),
    re.compile(r"^/api/[^/]+/db/(run|task)/[^/]+/(cases|metrics|results)$"),
)


@dataclass(frozen=True)
class BodyLimits:
    """The byte limits of request bodies and the keys (with their scopes) that requests need."""

    large: int
    small: int
    keys: KeyRing = field(default_factory=KeyRing)
    protect_reads: bool = False

    def limit_for(self, path: str) -> int:
        """Return the body limit of a path."""
        return self.large if any(p.match(path) for p in LARGE_BODY_PATHS) else self.small

    def needed_scope(self, method: str, path: str) -> Scope | None:
        """Return the scope a request needs (`app.core.keys.key_needed`), None for no key."""
        if not self.keys.enabled:
            return None
        return key_needed(method, path, self.protect_reads)


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


async def _answer(send: Send, status: int, detail: str, code: str) -> None:
    payload = json.dumps({"detail": detail, "code": code}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: AsgiScope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class BodyGuardMiddleware:
    """Check the key, then the size (Content-Length first, chunks counted), then the text."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    def _key_error(self, scope: AsgiScope) -> tuple[int, str, str] | None:
        needed = self.limits.needed_scope(scope["method"], scope["path"])
        if needed is None:
            return None
        try:
            self.limits.keys.check(_header(scope, b"x-api-key"), needed)
        except AppError as exc:
            return exc.status_code, exc.detail, exc.code
        return None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Refuse a bad body before it is read whole; replay a good one to the app."""
        if scope["type"] != "http" or scope.get("method") not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        refused = self._key_error(scope)
        if refused:
            await _answer(send, *refused)
            return
        limit = self.limits.limit_for(scope["path"])
        too_large = (
            f"the request body is larger than this route's limit of {_size(limit)} ("
            "APP_MAX_BODY_BYTES for recording and import, APP_MAX_SMALL_BODY_BYTES otherwise)"
        )
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, too_large, "body_too_large")
            return
        # Past SPOOL_BYTES the body waits on disk while it is counted, so a refused body (say
        # 1 GiB streamed chunked) never costs the server more memory than that.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    await self.app(scope, _replay([message], receive), send)
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _answer(send, 413, too_large, "body_too_large")
                    return
                spool.write(chunk)
                if not message.get("more_body"):
                    break
            spool.seek(0)
            data = spool.read()
        content_type = (_header(scope, b"content-type") or "application/json").lower()
        if "json" in content_type and has_lone_surrogate(data):
            detail = "text must be valid Unicode (a lone UTF-16 surrogate was sent)"
            await _answer(send, 422, detail, "invalid_text")
            return
        await self.app(scope, _replay([{"type": "http.request", "body": data}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replayed
