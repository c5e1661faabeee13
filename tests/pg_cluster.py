"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temp dir on a free port.

Used by the tests (tests/conftest.py) and by the bench (`bench/postgres.py` imports it from here:
both run from the repository root, neither is in the wheel, so one module serves both).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Debian's `postgresql` package puts its binaries here, one folder per major version.
PG_ROOT = Path("/usr/lib/postgresql")
MISSING = (
    "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install Debian's "
    "package (`apt-get install -y postgresql`, which `make test-postgres` does when root) "
    "or point APP_TEST_PG_URL at a server (postgresql+psycopg://user@host:port/db)"
)


def server_bin() -> Path | None:
    """Return the newest installed PostgreSQL bin folder that has initdb and pg_ctl."""
    found = [
        d / "bin"
        for d in PG_ROOT.glob("*")
        if (d / "bin" / "initdb").exists() and (d / "bin" / "pg_ctl").exists()
    ]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """Return the user to run the server as: initdb refuses root, so root runs it as postgres."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists")


# Server settings for tests: durability off (a throwaway cluster), room for many pools.
TEST_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "UTC",
}


class Cluster:
    """One PostgreSQL server (trust auth, fsync off) in its own temp dir; `url` is its admin URL.

    `settings` override or add to TEST_SETTINGS (`-c name=value` each).
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        bindir = server_bin()
        if bindir is None:
            raise RuntimeError(MISSING)
        self.bindir = bindir
        self.user = _run_as()
        self.folder = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._started = False

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.folder,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")

    def start(self) -> Cluster:
        """Initialise the cluster and start the server; stop it at interpreter exit."""
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.folder}",  # the unix socket lives in the temp dir, not /var/run
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        log = self.folder / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start")
        self._started = True
        atexit.register(self.stop)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            # A terminated test run still stops its server (atexit runs on SystemExit).
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        return self

    def stop(self) -> None:
        """Stop the server (immediate) and remove its folder."""
        if self._started:
            self._started = False
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
