"""Which tests a test type selects in a module: `pytest --collect-only`, cached and bounded."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from app.components.test_suite.pytest_exec import plugin_argument
from app.components.test_suite.runner import ISOLATED_INI
from app.core.errors import AppError

CACHE_SIZE = 256
"""Collections kept (module path, mtime, size, test type); least recently used dropped first."""
CONCURRENCY = 2
"""At most this many `pytest --collect-only` at once; past it a 503 `busy`, never a queue."""
TIMEOUT_S = 30.0
"""A collection taking longer is killed and answered 503 `collect_timeout`."""


class CollectBusy(AppError):
    """Too many collections are running: try again shortly."""

    status_code = 503
    code = "busy"


def run_collect(path: Path, test_type: str, timeout: float) -> list[str]:
    """Return the names of the tests a test type selects in a module (spawns pytest)."""
    with tempfile.TemporaryDirectory() as scratch:
        ini = Path(scratch) / "pytest.ini"
        ini.write_text(ISOLATED_INI)
        command = [
            *[sys.executable, "-m", "pytest", str(path), "--collect-only", "-q"],
            *["-p", plugin_argument(), "--tracking-test-type", test_type],
            *["-c", str(ini), "--rootdir", str(path.parent)],
        ]
        try:
            result = subprocess.run(
                command,
                cwd=path.parent,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CollectBusy(
                f"collecting {path.name} took longer than {timeout:g} s", code="collect_timeout"
            ) from None
    return [line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line]


class Collector:
    """Collect tests at most `concurrency` at a time, cached by the module's mtime and size."""

    def __init__(
        self, size: int = CACHE_SIZE, concurrency: int = CONCURRENCY, timeout: float = TIMEOUT_S
    ) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, int, str], list[str]] = OrderedDict()
        self.hits = 0
        self.runs = 0

    def tests(self, path: Path, test_type: str) -> list[str]:
        """Return the tests `test_type` selects in `path`, from the cache when it is unchanged."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, test_type)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return list(self._cache[key])
        if not self._slots.acquire(blocking=False):
            raise CollectBusy("other collections are running; try again in a few seconds")
        try:
            with self._lock:
                self.runs += 1
            names = run_collect(path, test_type, self.timeout)
        finally:
            self._slots.release()
        with self._lock:
            self._cache[key] = names
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return list(names)


COLLECTOR = Collector()
"""The process's collector (GET /api/test/types?model_name=...)."""
