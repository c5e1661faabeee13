"""A real uvicorn process (`--workers N`, one by default) on a free port, and an RSS sampler."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
WORKER_GRACE_S = 3.0


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`uvicorn app.main:app` serving the given Test Suite database, configured by APP_* vars.

    With `database_url` (PostgreSQL) both components use that database instead of DuckDB files;
    `workers` is uvicorn's `--workers` (more than one needs PostgreSQL).
    """

    def __init__(
        self,
        folder: Path,
        test_db: Path | None = None,
        *,
        workers: int = 1,
        database_url: str | None = None,
    ) -> None:
        self.folder = folder
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            "APP_TEST_DB_PATH": str(test_db or folder / "test_runs.duckdb"),
            "APP_GENERATOR_DB_PATH": str(folder / "generator_tasks.duckdb"),
            "APP_EXPORT_DIR": str(folder / "exports"),
            "APP_OUTPUT_DIR": str(folder / "generated"),
            "APP_RESULTS_DIR": str(folder / "results"),
            "APP_BACKUP_BEFORE_MIGRATE": "false",
            "APP_LOG_LEVEL": "warning",
        }
        self.env.pop("APP_API_KEYS", None)
        if database_url is not None:
            self.env["APP_TEST_DATABASE_URL"] = database_url
            self.env["APP_GENERATOR_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def export_dir(self) -> Path:
        """Return the server's export folder."""
        return self.folder / "exports"

    @property
    def pid(self) -> int:
        """Return the uvicorn process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> Server:
        """Start uvicorn and wait until /health answers."""
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            # Warning level: no access log line per request (as a production deployment would).
            "--log-level",
            "warning",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200 and self._ready():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def _ready(self) -> bool:
        """Return whether all `workers` processes exist and have had time to start."""
        if self.workers == 1:
            return True
        if len(psutil.Process(self.pid).children()) < self.workers:
            return False
        # /health answers from the first worker up; the others share the socket and start
        # (app start-up: migration check, sweep) at the same time. At warning level uvicorn
        # logs no "startup complete" line to wait for, so give them a grace period.
        time.sleep(WORKER_GRACE_S)
        return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RssSampler:
    """Sample a process's RSS in a thread; `peak()` since the last `reset()`, in MB."""

    def __init__(self, pid: int, interval: float = 0.025) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _rss(self) -> int:
        # The server process and its children (uvicorn's workers when there are several).
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += int(proc.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._rss()
            with self._lock:
                self._peak = max(self._peak, rss)

    def current(self) -> float:
        """Return the RSS now, in MB."""
        return self._rss() / 1e6

    def reset(self) -> None:
        """Start a new peak from the current RSS."""
        with self._lock:
            self._peak = self._rss()

    def peak(self) -> float:
        """Return the highest RSS since the last reset, in MB."""
        with self._lock:
            return max(self._peak, self._rss()) / 1e6

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
