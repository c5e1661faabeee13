"""Refuse JSON bodies that carry lone UTF-16 surrogates (JSON allows them, UTF-8 cannot)."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A `\uD800`–`\uDFFF` escape and the run of backslashes before it (an even run is text).
_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def has_lone_surrogate(body: bytes) -> bool:
    """Return whether a JSON text holds a surrogate escape that is not part of a pair."""
    if b"\\u" not in body:
        return False
    pending: int | None = None  # where the low half of an open pair must start
    for match in _ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue
        start = match.end(1) - 1
        if int(match.group(2), 16) <= 0xDBFF:
            if pending is not None:
                return True
            pending = match.end()
        else:
            if pending != start:
                return True
            pending = None
    return pending is not None


class UnicodeBodyMiddleware:
    """Answer 422 to a JSON body with a lone surrogate before any route parses it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer JSON request bodies, check them once, and replay them to the app."""
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        if has_lone_surrogate(body):
            payload = json.dumps(
                {
                    "detail": "text must be valid Unicode (a lone UTF-16 surrogate was sent)",
                    "code": "invalid_text",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replayed
