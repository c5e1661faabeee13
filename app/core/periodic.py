"""A daemon thread that does one piece of work every N seconds (the retention and stale sweeps)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Call `tick()` every `interval` seconds in a daemon thread until stopped.

    A failing tick is logged and the next one runs on time: one bad sweep never ends sweeping.
    """

    def __init__(self, name: str, interval: float, *, at_start: bool = False) -> None:
        self.name = name
        self.interval = interval
        self.at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Return whether stop() was called (a long tick checks it to end early)."""
        return self._stop.is_set()

    def tick(self) -> object:
        """Do the work once (subclasses say what)."""
        raise NotImplementedError

    def _tick_logged(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("%s failed", self.name)

    def _loop(self) -> None:
        if self.at_start:
            self._tick_logged()
        while not self._stop.wait(self.interval):
            self._tick_logged()

    def start(self) -> None:
        """Start ticking in the background (once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking (waits up to 60 s for a tick under way)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
