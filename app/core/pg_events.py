"""Live events across server processes on PostgreSQL: LISTEN/NOTIFY under the event hub.

A process publishes an event to its own listeners at once and sends it with `pg_notify` on the
component's channel; every process LISTENs there (one connection, one daemon thread) and hands
the events of the others to its own listeners. So an SSE or WebSocket client connected to any
worker sees a run executed by another. NOTIFY is delivered in commit order, after the write the
event reports was committed (the runner publishes after its commit).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.core.db import Database
from app.core.periodic import Periodic

if TYPE_CHECKING:
    from app.core.live import EventHub

log = logging.getLogger(__name__)

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; long texts (an error) are cut.
PAYLOAD_LIMIT = 7900
TEXT_LIMIT = 1000
POLL_S = 0.5  # how soon a stopping listener notices


def channel_of(component: str) -> str:
    """Return the NOTIFY channel of a component's events."""
    return f"accelerate_events_{component}"


def _fit(key: str, event: dict[str, Any], origin: str) -> str | None:
    """Return the payload of an event, its long texts cut if needed (None if still too big)."""
    payload = json.dumps({"origin": origin, "key": key, "event": event}, default=str)
    if len(payload.encode()) < PAYLOAD_LIMIT:
        return payload
    cut = {
        k: (v[:TEXT_LIMIT] + "…" if isinstance(v, str) and len(v) > TEXT_LIMIT else v)
        for k, v in event.items()
    }
    payload = json.dumps({"origin": origin, "key": key, "event": cut}, default=str)
    return payload if len(payload.encode()) < PAYLOAD_LIMIT else None


class PgRelay(Periodic):
    """Send a hub's events to the other processes on one database, and deliver theirs.

    Its tick is one listening session, run until stop(): a lost connection ends the tick and
    the next one (a second later) listens again.
    """

    def __init__(self, db: Database, component: str, hub: EventHub) -> None:
        super().__init__(channel_of(component), 1.0, at_start=True)
        self.db = db
        self.channel = channel_of(component)
        self.hub = hub
        self.origin = uuid.uuid4().hex  # this process's events come back: they are skipped
        self._ready = threading.Event()

    def send(self, key: str, event: dict[str, Any]) -> None:
        """NOTIFY the other processes of one event (a failure is logged, never raised)."""
        payload = _fit(key, event, self.origin)
        if payload is None:
            log.warning("event of %s too large to relay; left out", key)
            return
        try:
            with self.db.engine.connect() as conn:
                conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": self.channel, "payload": payload},
                )
                conn.commit()
        except Exception:  # live events must never break the write that caused them
            log.exception("could not relay an event of %s", key)

    def start(self) -> None:
        """Start listening (returns once LISTEN is in place, or after 10 s)."""
        super().start()
        self._ready.wait(10)

    def _conninfo(self) -> str:
        url = make_url(self.db.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def tick(self) -> None:
        """Listen until stopped (or until the connection is lost: Periodic logs it)."""
        import psycopg

        try:
            with psycopg.connect(self._conninfo(), autocommit=True) as conn:
                conn.execute(f'LISTEN "{self.channel}"')
                self._ready.set()
                while not self.stopping:
                    for note in conn.notifies(timeout=POLL_S):
                        self._deliver(note.payload)
        finally:
            self._ready.set()  # a start() waiting on a failed connection goes on

    def _deliver(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("origin") == self.origin:
            return
        key, event = message.get("key"), message.get("event")
        if isinstance(key, str) and isinstance(event, dict):
            self.hub.deliver(key, event)
