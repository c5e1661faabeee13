"""pytest process groups outlive nothing: a parent-death signal, and a file of live groups.

Each run's pytest starts in its own process group (start_new_session). On Linux it also gets
PR_SET_PDEATHSIG = SIGKILL (prctl via ctypes), so pytest dies with the server even on kill -9.
Its children do not inherit that signal, so every group is listed in `<results>/.pytest-groups`
("pgid leader-start-time" per line) while it runs; at start-up the runner kills what a previous
server of this results folder left there (only processes started no earlier than the leader,
so a reused id is left alone).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
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


def _read(path: Path) -> dict[int, float]:
    groups: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            with contextlib.suppress(ValueError, IndexError):
                groups[int(parts[0])] = float(parts[1])
    return groups


def _write(path: Path, groups: dict[int, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text("".join(f"{pgid} {started}\n" for pgid, started in groups.items()))
    os.replace(temp, path)


def register(folder: Path, pgid: int) -> None:
    """Record a running pytest group in `folder`'s groups file."""
    try:
        started = psutil.Process(pgid).create_time()
    except psutil.Error:
        return
    with _lock:
        path = folder / GROUPS_FILE
        _write(path, {**_read(path), pgid: started})


def unregister(folder: Path, pgid: int) -> None:
    """Forget a group once nothing of it runs."""
    with _lock:
        path = folder / GROUPS_FILE
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
    """Kill the groups a previous server left in `folder`'s file; return the pgids killed."""
    with _lock:
        path = folder / GROUPS_FILE
        groups = _read(path)
        killed = []
        for pgid, started in groups.items():
            left = members(pgid, started)
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            if left:
                killed.append(pgid)
        psutil.wait_procs([p for g, s in groups.items() for p in members(g, s)], timeout=5)
        with contextlib.suppress(OSError):
            path.unlink()
    return killed
