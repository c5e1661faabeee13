"""pytest process groups outlive nothing: a parent-death signal, and a file of live groups.

Each run's pytest starts in its own process group (start_new_session). On Linux it also gets
PR_SET_PDEATHSIG = SIGKILL (prctl via ctypes), so pytest dies with the server even on kill -9.
Its children do not inherit that signal, so every group is listed in `<results>/.pytest-groups`
("pgid leader-start-time server-pid server-start-time" per line) while it runs; at start-up the
runner kills what a server of this results folder that no longer runs left there (only
processes started no earlier than the leader, so a reused id is left alone). Several server
processes (`uvicorn --workers N` on PostgreSQL) share the file under an advisory file lock, and
one starting never touches the groups of another that still runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

GROUPS_FILE = ".pytest-groups"
_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()


def die_with_parent() -> None:
    """In a child before exec (Linux only): ask the kernel for SIGKILL when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


Entry = tuple[float, int, float]  # leader start time, server pid, server start time


def _process_start(pid: int) -> float | None:
    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).create_time())
    return None


def _server() -> tuple[int, float]:
    """Return this server process's id and start time."""
    return os.getpid(), _process_start(os.getpid()) or 0.0


def _read(path: Path) -> dict[int, Entry]:
    groups: dict[int, Entry] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            with contextlib.suppress(ValueError, IndexError):
                server = (int(parts[2]), float(parts[3])) if len(parts) >= 4 else (0, 0.0)
                groups[int(parts[0])] = (float(parts[1]), *server)
    return groups


def _write(path: Path, groups: dict[int, Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    lines = (f"{pgid} {started} {pid} {since}\n" for pgid, (started, pid, since) in groups.items())
    temp.write_text("".join(lines))
    os.replace(temp, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[Path]:
    """Hold this process's lock and the folder's file lock; yield the groups file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    with _lock, (folder / f"{GROUPS_FILE}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield folder / GROUPS_FILE
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_gone(pid: int, since: float) -> bool:
    started = _process_start(pid) if pid > 0 else None
    return started is None or abs(started - since) > 0.01


def register(folder: Path, pgid: int) -> None:
    """Record a running pytest group of this server in `folder`'s groups file."""
    started = _process_start(pgid)
    if started is None:
        return
    with _locked(folder) as path:
        _write(path, {**_read(path), pgid: (started, *_server())})


def unregister(folder: Path, pgid: int) -> None:
    """Forget a group once nothing of it runs."""
    with _locked(folder) as path:
        groups = _read(path)
        if groups.pop(pgid, None) is not None:
            _write(path, groups)


def members(pgid: int, started: float) -> list[psutil.Process]:
    """Return the live processes of group `pgid` started no earlier than its leader."""
    found = []
    for process in psutil.process_iter(["create_time", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(process.pid) == pgid and process.info["create_time"] >= started - 0.01:
                found.append(process)
    return found


def reap(folder: Path) -> list[int]:
    """Kill the groups servers that no longer run left in `folder`'s file; return their pgids."""
    with _locked(folder) as path:
        groups = _read(path)
        left = {g: e for g, e in groups.items() if _server_gone(e[1], e[2])}
        killed = []
        for pgid, (started, _, _) in left.items():
            found = members(pgid, started)
            for process in found:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            if found:
                killed.append(pgid)
        psutil.wait_procs([p for g, e in left.items() for p in members(g, e[0])], timeout=5)
        kept = {g: e for g, e in groups.items() if g not in left}
        if kept:
            _write(path, kept)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return killed
