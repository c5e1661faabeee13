"""Live progress: an in-process hub of state changes, served as Server-Sent Events and WebSocket."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from app.core.errors import AppError, NotFound
from app.core.keys import Scope

# A subscriber that stops reading is dropped once this many events wait for it.
QUEUE_LIMIT = 10_000
HEARTBEAT_S = 15.0
# With protected reads, a client without a header or query key has this long to send `auth`.
AUTH_TIMEOUT_S = 10.0
_TIME: TypeAdapter[datetime | None] = TypeAdapter(datetime | None)


class Subscription:
    """One listener's queue of events for one key, readable from its event loop."""

    def __init__(self, hub: EventHub, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.key = key
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)

    def push(self, event: dict[str, Any]) -> None:
        """Hand an event to the listener's loop (callable from any thread)."""
        with suppress(RuntimeError):  # the loop is closed: the listener is gone
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: dict[str, Any]) -> None:
        with suppress(asyncio.QueueFull):
            self.queue.put_nowait(event)

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """Return the next event, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self.hub.unsubscribe(self)


class Relay(Protocol):
    """Carries a hub's events to the other server processes on the same database."""

    def send(self, key: str, event: dict[str, Any]) -> None:
        """Send one event to the others."""

    def start(self) -> None:
        """Start delivering the others' events to the hub."""

    def stop(self) -> None:
        """Stop."""


class EventHub:
    """Publish state changes of runs or tasks to whoever listens, from any thread.

    With a `relay` (PostgreSQL: app.core.pg_events), events also reach the listeners of the
    other server processes, and theirs arrive here through `deliver`.
    """

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()
        self.relay: Relay | None = None

    def subscribe(self, key: str) -> Subscription:
        """Start listening to one key's events (call from the listener's event loop)."""
        sub = Subscription(self, key, asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(key, []).append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription."""
        with self._lock:
            subs = self._subs.get(sub.key, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subs.pop(sub.key, None)

    def publish(self, key: str, event: dict[str, Any]) -> None:
        """Send an event to every listener of a key, here and (with a relay) elsewhere."""
        self.deliver(key, event)
        if self.relay is not None:
            self.relay.send(key, event)

    def deliver(self, key: str, event: dict[str, Any]) -> None:
        """Send an event to every listener of a key in this process."""
        with self._lock:
            subs = list(self._subs.get(key, ()))
        for sub in subs:
            sub.push(event)


def json_time(value: datetime | None) -> str | None:
    """Return a timestamp as the REST answers write it, so an event and a GET agree."""
    text = _TIME.dump_python(value, mode="json")
    return None if text is None else str(text)


def end_event(event: dict[str, Any]) -> dict[str, Any]:
    """Return the event that ends a stream, carrying the final state."""
    return {**event, "type": "end"}


def is_final(event: dict[str, Any]) -> bool:
    """Return whether an event ends a stream (its run or task reached a terminal status)."""
    return event.get("type") == "end"


def sse_format(event: dict[str, Any]) -> str:
    """Return one Server-Sent Event."""
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, default=str)}\n\n"


async def sse_stream(
    hub: EventHub, key: str, snapshot: Callable[[], list[dict[str, Any]]]
) -> AsyncIterator[str]:
    """Yield the current state, then every event of `key`, until its end event."""
    sub = hub.subscribe(key)
    try:
        for event in await asyncio.to_thread(snapshot):
            yield sse_format(event)
            if is_final(event):
                return
        while True:
            pushed = await sub.get(HEARTBEAT_S)
            if pushed is None:
                yield ": keep-alive\n\n"
                continue
            yield sse_format(pushed)
            if is_final(pushed):
                return
    finally:
        sub.close()


def sse_response(
    hub: EventHub, key: str, snapshot: Callable[[], list[dict[str, Any]]]
) -> StreamingResponse:
    """Return a response that streams `key`'s state and events as Server-Sent Events."""
    return StreamingResponse(
        sse_stream(hub, key, snapshot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@dataclass(frozen=True)
class WsKeys:
    """How a WebSocket session checks keys: `check(key, scope)` raises 401/403 (as in HTTP)."""

    check: Callable[[str | None, Scope], None]
    protect_reads: bool


def offered_key(websocket: WebSocket) -> str | None:
    """Return the key a WebSocket client sent on connect: `X-API-Key` header or `api_key` query."""
    return websocket.headers.get("x-api-key") or websocket.query_params.get("api_key") or None


def _error(exc: AppError) -> dict[str, Any]:
    return {"type": "error", "detail": exc.detail, "code": exc.code}


async def _first_message_key(websocket: WebSocket) -> str | None:
    # A browser cannot set headers on a WebSocket: it may send `{"type": "auth", "key": ...}`
    # first. Anything else (or nothing within AUTH_TIMEOUT_S) offers no key.
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
    except TimeoutError:
        return None
    with suppress(ValueError):
        message = json.loads(raw)
        if isinstance(message, dict) and message.get("type") == "auth":
            key = message.get("key")
            return key if isinstance(key, str) and key else None
    return None


async def websocket_session(
    websocket: WebSocket,
    hub: EventHub,
    key: str,
    snapshot: Callable[[], list[dict[str, Any]]],
    cancel: Callable[[], dict[str, Any]],
    keys: WsKeys,
) -> None:
    """Serve one WebSocket: push events; answer `ping`, `status`, `auth` and `cancel` messages.

    Subscribing follows the read rule (a key when `protect_reads`); `cancel` needs a write key,
    from the `X-API-Key` header, an `api_key` query parameter, or an `auth` message.
    """
    session = _WsSession(websocket, snapshot, cancel, keys)
    if await session.open():
        await session.serve(hub, key)


class _WsSession:
    """One WebSocket client: its key, its pushed events and its answered commands."""

    def __init__(
        self,
        websocket: WebSocket,
        snapshot: Callable[[], list[dict[str, Any]]],
        cancel: Callable[[], dict[str, Any]],
        keys: WsKeys,
    ) -> None:
        self.websocket = websocket
        self.snapshot = snapshot
        self.cancel = cancel
        self.keys = keys
        self.api_key = offered_key(websocket)
        self.done = asyncio.Event()
        # Held while a client command is answered, so the session never closes mid-answer.
        self.busy = asyncio.Lock()

    async def open(self) -> bool:
        """Accept; refuse (and close) a missing read key or an unknown run or task."""
        await self.websocket.accept()
        if self.keys.protect_reads:
            if self.api_key is None:
                self.api_key = await _first_message_key(self.websocket)
            try:
                self.keys.check(self.api_key, "read")
            except AppError as exc:
                await self.websocket.send_json(_error(exc))
                await self.websocket.close(code=4401 if exc.status_code == 401 else 4403)
                return False
        try:
            await asyncio.to_thread(self.snapshot)
        except NotFound as exc:
            # An unknown run or task: say so in the error shape, then close with 4404.
            await self.websocket.send_json(_error(exc))
            await self.websocket.close(code=4404)
            return False
        return True

    async def send(self, event: dict[str, Any]) -> None:
        """Send one event as JSON text."""
        await self.websocket.send_text(json.dumps(event, default=str))

    async def push(self, sub: Subscription) -> None:
        """Send the current state, then every event until the final one."""
        for event in await asyncio.to_thread(self.snapshot):
            await self.send(event)
            if is_final(event):
                self.done.set()
        while not self.done.is_set():
            pushed = await sub.get(HEARTBEAT_S)
            if pushed is None:
                continue
            await self.send(pushed)
            if is_final(pushed):
                self.done.set()
        async with self.busy:
            pass

    async def listen(self) -> None:
        """Answer the client's messages until it goes away."""
        while True:
            raw = await self.websocket.receive_text()
            try:
                message = json.loads(raw)
            except ValueError:
                message = raw
            kind = message.get("type") if isinstance(message, dict) else str(message).strip()
            async with self.busy:
                await self.answer(kind, message)

    async def _authorised(self, offered: str | None, scope: Scope) -> bool:
        try:
            self.keys.check(offered, scope)
        except AppError as exc:
            await self.send(_error(exc))
            return False
        return True

    async def answer(self, kind: str | None, message: object) -> None:
        """Answer one command: ping, status, auth (a key for later commands) or cancel."""
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "status":
            for event in await asyncio.to_thread(self.snapshot):
                if event.get("type") == "status":
                    await self.send(event)
        elif kind == "auth":
            offered = message.get("key") if isinstance(message, dict) else None
            offered = offered if isinstance(offered, str) and offered else None
            if await self._authorised(offered, "read"):
                self.api_key = offered
                await self.send({"type": "auth", "ok": True})
        elif kind == "cancel":
            if await self._authorised(self.api_key, "write"):
                await self.send({"type": "cancel", **await asyncio.to_thread(self.cancel)})
        else:
            detail = "messages are ping, status, auth or cancel"
            await self.send({"type": "error", "detail": detail, "code": "bad_request"})

    async def serve(self, hub: EventHub, key: str) -> None:
        """Push and listen at once; close when either ends."""
        sub = hub.subscribe(key)
        pusher = asyncio.create_task(self.push(sub))
        listener = asyncio.create_task(self.listen())
        try:
            finished, _ = await asyncio.wait(
                {pusher, listener}, return_when=asyncio.FIRST_COMPLETED
            )
            failed = any(t.exception() is not None for t in finished if not t.cancelled())
            with suppress(Exception):
                await self.websocket.close(code=1011 if failed else 1000)
        except WebSocketDisconnect:
            pass
        finally:
            for task in (pusher, listener):
                task.cancel()
                with suppress(BaseException):
                    await task
            sub.close()
