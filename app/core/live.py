"""Live progress: an in-process hub of state changes, served as Server-Sent Events and WebSocket."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from app.core.errors import NotFound

# A subscriber that stops reading is dropped once this many events wait for it.
QUEUE_LIMIT = 10_000
HEARTBEAT_S = 15.0
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


class EventHub:
    """Publish state changes of runs or tasks to whoever listens, from any thread."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()

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
        """Send an event to every listener of a key."""
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


async def websocket_session(
    websocket: WebSocket,
    hub: EventHub,
    key: str,
    snapshot: Callable[[], list[dict[str, Any]]],
    cancel: Callable[[], dict[str, Any]],
) -> None:
    """Serve one WebSocket: push events; answer `ping`, `status` and `cancel` messages."""
    try:
        await asyncio.to_thread(snapshot)
    except NotFound as exc:
        # An unknown run or task: say so in the error shape, then close with 4404.
        await websocket.accept()
        await websocket.send_json({"type": "error", "detail": exc.detail, "code": exc.code})
        await websocket.close(code=4404)
        return
    await websocket.accept()
    sub = hub.subscribe(key)
    done = asyncio.Event()
    # Held while a client command is answered, so the session never closes mid-answer.
    busy = asyncio.Lock()

    async def send(event: dict[str, Any]) -> None:
        await websocket.send_text(json.dumps(event, default=str))

    async def push() -> None:
        for event in await asyncio.to_thread(snapshot):
            await send(event)
            if is_final(event):
                done.set()
        while not done.is_set():
            pushed = await sub.get(HEARTBEAT_S)
            if pushed is None:
                continue
            await send(pushed)
            if is_final(pushed):
                done.set()
        async with busy:
            pass

    async def listen() -> None:
        while True:
            raw = await websocket.receive_text()
            try:
                message = json.loads(raw)
            except ValueError:
                message = raw
            kind = message.get("type") if isinstance(message, dict) else str(message).strip()
            async with busy:
                await answer(kind)

    async def answer(kind: str | None) -> None:
        if kind == "ping":
            await send({"type": "pong"})
        elif kind == "status":
            for event in await asyncio.to_thread(snapshot):
                if event.get("type") == "status":
                    await send(event)
        elif kind == "cancel":
            await send({"type": "cancel", **await asyncio.to_thread(cancel)})
        else:
            await send({"type": "error", "detail": "messages are ping, status or cancel"})

    pusher = asyncio.create_task(push())
    listener = asyncio.create_task(listen())
    try:
        finished, _ = await asyncio.wait({pusher, listener}, return_when=asyncio.FIRST_COMPLETED)
        failed = any(t.exception() is not None for t in finished if not t.cancelled())
        with suppress(Exception):
            await websocket.close(code=1011 if failed else 1000)
    except WebSocketDisconnect:
        pass
    finally:
        for task in (pusher, listener):
            task.cancel()
            with suppress(BaseException):
                await task
        sub.close()
