"""Run one pytest invocation in its own process group, streaming the plugin's events."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from app.components.test_suite import groups

# The tracking plugin is its own distribution (plugin/, installed by `make install`).
PLUGIN_MODULE = "pytest_accelerate_tracking"
POLL_INTERVAL_S = 0.05
KILL_GRACE_S = 2.0
LOG_TAIL_LINES = 8

ExecStatus = Literal["finished", "timeout", "cancelled", "crashed"]


@dataclass
class PytestInvocation:
    """What to run: one test file on one device, with its output going to `workdir`."""

    test_file: Path
    device: str
    test_type: str
    workdir: Path
    timeout_s: float | None = None
    extra_args: list[str] = field(default_factory=list)
    # A suite's own interpreter, folder and environment (default: this server's interpreter,
    # the test file's folder); `targets` replaces the test file as pytest's first arguments.
    python: str = sys.executable
    cwd: Path | None = None
    targets: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecOutcome:
    """How an invocation ended and where its files are."""

    status: ExecStatus
    exit_code: int | None
    log_path: Path
    junit_path: Path
    events_path: Path
    reason: str | None


def device_slug(device: str) -> str:
    """Return the device name made safe for a file name (`cuda:0` → `cuda_0`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", device) or "device"


def plugin_argument() -> str:
    """Return the `-p` argument that loads the tracking plugin exactly once.

    The plugin's pytest11 entry point has the module's name, so `-p pytest_accelerate_tracking`
    finds it already loaded by the entry point, and loads it when plugin autoloading is off.
    """
    return PLUGIN_MODULE


_plugin_lock = threading.Lock()


def plugin_path(folder: Path) -> Path:
    """Return a folder holding a copy of the plugin package, for another interpreter's path.

    Only the package itself is copied (into `<folder>/.plugin`), so PYTHONPATH exposes the
    plugin and nothing else of the server's environment; nothing is installed anywhere.
    """
    import pytest_accelerate_tracking

    source = Path(pytest_accelerate_tracking.__file__).resolve().parent
    target = folder / ".plugin"
    package = target / source.name
    with _plugin_lock:
        for item in sorted(source.glob("*.py")) + sorted(source.glob("py.typed")):
            copy = package / item.name
            data = item.read_bytes()
            if not copy.is_file() or copy.read_bytes() != data:
                package.mkdir(parents=True, exist_ok=True)
                temp = copy.with_suffix(copy.suffix + ".tmp")
                temp.write_bytes(data)
                os.replace(temp, copy)
    return target


def step_name_for(name: str, hardware: str) -> str:
    """Return the step name of one test on one device (unique within a run)."""
    return f"{name} @ {hardware}"


class _EventTail:
    """Read complete JSON lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        """Return the events of every line completed since the last call."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        events: list[dict[str, Any]] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line the plugin did not write; the log has the details
            if isinstance(event, dict):
                events.append(event)
        return events


def _is_alive(process: psutil.Process) -> bool:
    """Return whether a process still runs (a zombie waiting to be reaped does not)."""
    try:
        # psutil ships no types, so its answers are Any: bool() states what we return.
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _family(pid: int) -> list[psutil.Process]:
    """Return the process and all its descendants that exist now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _group_members(pgid: int) -> list[psutil.Process]:
    """Return the live processes of a process group."""
    members: list[psutil.Process] = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and _is_alive(process):
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a whole process group, ignoring a group that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_dead(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until the processes are gone (or zombies); return those still alive."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in processes if _is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        alive = [p for p in alive if _is_alive(p)]
    return alive


def kill_process_tree(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """Stop a process started in its own session, its group and every descendant."""
    pgid = proc.pid  # start_new_session makes the child its group's leader
    # Take the descendants before signalling: once the parent dies they are reparented and
    # can no longer be found from it (and some may have left the group with setsid).
    members = [p for p in _family(proc.pid) if p.pid != proc.pid]
    members += [p for p in _group_members(pgid) if p.pid != proc.pid and p not in members]
    _signal_group(pgid, signal.SIGTERM)
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    alive = _wait_dead(members, grace_s if proc.returncode is None else 0.5)
    if proc.returncode is None or alive:
        _signal_group(pgid, signal.SIGKILL)
        for member in alive + _group_members(pgid):
            with contextlib.suppress(psutil.Error):
                member.kill()
        if proc.returncode is None:
            proc.kill()
    proc.wait()
    _wait_dead(members + _group_members(pgid), grace_s)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last non-empty lines of a log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])[-2000:]


def _exit_description(code: int) -> str:
    """Describe an exit code, naming the signal when a signal ended the process."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            return f"killed by signal {-code} (exit code {code})"
    return f"exit code {code}"


class PytestProcess:
    """One pytest subprocess for the runner: start, stream events, time out, cancel."""

    kill_grace_s = KILL_GRACE_S

    def __init__(self, inv: PytestInvocation, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.inv = inv
        self.on_event = on_event
        slug = device_slug(inv.device)
        workdir = inv.workdir.resolve()
        self.log_path = workdir / f"pytest-{slug}.log"
        self.junit_path = workdir / f"junit-{slug}.xml"
        self.events_path = workdir / f"events-{slug}.jsonl"
        self._cancelled = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Return the pytest process id (also its process group id), once started."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def command(self) -> list[str]:
        """Return the pytest command line."""
        targets = (
            self.inv.targets
            if self.inv.targets is not None
            else [str(self.inv.test_file.resolve())]
        )
        return [
            self.inv.python,
            "-m",
            "pytest",
            *targets,
            "-p",
            plugin_argument(),
            "--tracking-hardware",
            self.inv.device,
            "--tracking-test-type",
            self.inv.test_type,
            "--tracking-events",
            str(self.events_path),
            "--junitxml",
            str(self.junit_path),
            # The runner asks for the report, so it picks the family: xunit1 keeps
            # record_property (a project's `filterwarnings = error` would fail on xunit2's).
            "-o",
            "junit_family=xunit1",
            "-q",
            "-p",
            "no:cacheprovider",
            *self.inv.extra_args,
        ]

    def cancel(self) -> None:
        """Ask the run to stop: run() kills the process group within one poll interval."""
        self._cancelled.set()

    def _outcome(
        self, status: ExecStatus, exit_code: int | None, reason: str | None
    ) -> ExecOutcome:
        """Return an outcome pointing at this invocation's files."""
        return ExecOutcome(
            status=status,
            exit_code=exit_code,
            log_path=self.log_path,
            junit_path=self.junit_path,
            events_path=self.events_path,
            reason=reason,
        )

    def run(self) -> ExecOutcome:
        """Run pytest to the end, a timeout or a cancel; call on_event for each event line."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The plugin appends, and a stale report must never pass for this run's.
        for stale in (self.events_path, self.junit_path):
            stale.unlink(missing_ok=True)
        self.log_path.write_bytes(b"")
        if self._cancelled.is_set():
            return self._outcome("cancelled", None, "cancelled before pytest started")
        folder = self.inv.workdir.resolve().parent  # the results folder
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.command(),
                    cwd=self._cwd(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=groups.die_with_parent,  # Linux: dies with the server
                    env=self._env(folder),
                )
            except OSError as exc:
                return self._outcome("crashed", None, f"could not start pytest: {exc}")
        proc = self._proc
        groups.register(folder, proc.pid)
        try:
            return self._supervise(proc)
        finally:
            # Whatever happened (even an exception in on_event), leave nothing running.
            if proc.poll() is None or _group_members(proc.pid):
                kill_process_tree(proc, self.kill_grace_s)
            groups.unregister(folder, proc.pid)

    def _cwd(self) -> Path:
        """Return the folder pytest starts in: the suite's root, or the test file's folder."""
        return (self.inv.cwd or self.inv.test_file.resolve().parent).resolve()

    def _env(self, folder: Path) -> dict[str, str]:
        """Return pytest's environment: ours, the suite's, and the plugin on PYTHONPATH."""
        env = {**os.environ, **self.inv.env, "PYTHONUNBUFFERED": "1"}
        if self.inv.python == sys.executable:
            return env  # the server's interpreter has the plugin installed (a dependency)
        env.pop("PYTHONHOME", None)
        paths = [str(plugin_path(folder))]
        # The server's own PYTHONPATH is not another interpreter's: there only the suite's.
        if self.inv.env.get("PYTHONPATH"):
            paths.append(self.inv.env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def _supervise(self, proc: subprocess.Popen[bytes]) -> ExecOutcome:
        """Stream events until the process ends or must be stopped; return the outcome."""
        tail = _EventTail(self.events_path)
        finished = False
        deadline = time.monotonic() + self.inv.timeout_s if self.inv.timeout_s is not None else None
        stopped: ExecStatus | None = None

        def drain() -> None:
            """Hand every newly completed event line to on_event, in order."""
            nonlocal finished
            for event in tail.read():
                if event.get("event") == "session_finished":
                    finished = True
                self.on_event(event)

        while proc.poll() is None:
            drain()
            if self._cancelled.is_set():
                stopped = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                stopped = "timeout"
            if stopped is not None:
                kill_process_tree(proc, self.kill_grace_s)
                break
            self._cancelled.wait(POLL_INTERVAL_S)
        drain()
        exit_code = proc.wait()
        if stopped == "cancelled":
            return self._outcome("cancelled", exit_code, "cancelled")
        if stopped == "timeout":
            return self._outcome("timeout", exit_code, f"timed out after {self.inv.timeout_s:g} s")
        if finished:
            return self._outcome("finished", exit_code, None)
        reason = f"pytest ended before the session finished ({_exit_description(exit_code)})"
        tail_text = _log_tail(self.log_path)
        if tail_text:
            reason += f"; last output:\n{tail_text}"
        return self._outcome("crashed", exit_code, reason)
