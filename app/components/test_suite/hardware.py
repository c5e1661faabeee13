"""Which devices a suite's interpreter sees: a probe run in that interpreter, cached briefly.

The probe is a small script run with the suite's own interpreter and environment (so its
torch, openvino and CUDA_VISIBLE_DEVICES count, not the server's); it also says whether that
interpreter has pytest and httpx, which the runner needs and never installs. Answers are kept
for APP_DEVICE_PROBE_TTL seconds, so a library installed meanwhile is seen without a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.core.errors import Conflict
from app.core.models import utcnow

PROBE_TIMEOUT_S = 60.0
"""A probe taking longer (a hung driver) is killed; every device then counts as absent."""
CACHE_SIZE = 64
"""Interpreters (with their environments) whose answers are kept."""

# Runs in the suite's interpreter: standard library only, prints one JSON object.
PROBE = r"""
import importlib, importlib.util, json, os, platform, sys

def version(name):
    if importlib.util.find_spec(name) is None:
        return None
    try:
        from importlib.metadata import version as v
        return v(name)
    except Exception:
        return "unknown"

out = {"python": sys.version.split()[0], "executable": sys.executable,
       "pytest": version("pytest"), "httpx": version("httpx"), "backends": {}}
b = out["backends"]
b["cpu"] = {"available": True, "detail": f"{platform.machine()}, {os.cpu_count()} cores"}
torch = None
if importlib.util.find_spec("torch") is None:
    reason = "torch is not installed in this interpreter"
    for name in ("cuda", "rocm", "mps", "xpu"):
        b[name] = {"available": False, "detail": reason}
else:
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:
        reason = f"torch does not import: {type(exc).__name__}: {exc}"[:300]
        for name in ("cuda", "rocm", "mps", "xpu"):
            b[name] = {"available": False, "detail": reason}
if torch is not None:
    hip = getattr(torch.version, "hip", None)
    gpu = bool(torch.cuda.is_available())
    count = torch.cuda.device_count() if gpu else 0
    b["cuda"] = {"available": gpu and not hip, "count": count if not hip else 0,
                 "detail": f"{count} CUDA device(s)" if gpu and not hip else "no CUDA device"}
    b["rocm"] = {"available": gpu and bool(hip), "count": count if hip else 0,
                 "detail": f"HIP {hip}, {count} device(s)" if gpu and hip else "no ROCm device"}
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    b["mps"] = {"available": has_mps, "detail": "Apple GPU" if has_mps else "no MPS device"}
    xpu = getattr(torch, "xpu", None)
    has_xpu = bool(xpu and xpu.is_available())
    b["xpu"] = {"available": has_xpu, "count": xpu.device_count() if has_xpu else 0,
                "detail": "Intel GPU" if has_xpu else "no XPU device"}
if importlib.util.find_spec("openvino") is None:
    b["openvino"] = {"available": False, "detail": "openvino is not installed in this interpreter"}
else:
    try:
        import openvino
        devices = list(openvino.Core().available_devices)
        b["openvino"] = {"available": bool(devices), "devices": devices,
                         "detail": "devices: " + (", ".join(devices) or "none")}
    except Exception as exc:
        b["openvino"] = {"available": False, "detail": f"openvino failed: {exc}"[:300]}
for name in ("webgpu", "webnn", "qnn"):
    b[name] = {"available": False, "detail": "not available to a Python process"}
print(json.dumps(out))
"""


class DeviceState(BaseModel):
    """One backend as an interpreter sees it, and when it was asked."""

    name: str
    available: bool
    detail: str
    checked_at: datetime
    python: str


@dataclass
class ProbeAnswer:
    """What one interpreter said (or why it could not say)."""

    python: str
    checked_at: datetime
    monotonic: float
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    pytest: str | None = None
    httpx: str | None = None
    failure: str | None = None

    def device(self, device: str) -> tuple[bool, str]:
        """Return whether a device (`cuda`, `cuda:1`, `openvino:GPU`) is there, and why."""
        if self.failure:
            return False, self.failure
        backend, _, index = device.partition(":")
        info = self.backends.get(backend.lower())
        if info is None:
            return False, f"no probe knows the backend {backend!r}"
        if not info.get("available"):
            return False, str(info.get("detail", "not available"))
        if index and backend.lower() in {"cuda", "rocm", "xpu"}:
            count = int(info.get("count", 0))
            if not index.isdigit() or int(index) >= count:
                return False, f"{device} does not exist ({count} device(s) seen)"
        if index and backend.lower() == "openvino":
            devices = [str(d) for d in info.get("devices", [])]
            if not any(d.upper().startswith(index.upper()) for d in devices):
                return False, f"openvino sees {', '.join(devices) or 'no device'}, not {index}"
        return True, str(info.get("detail", ""))

    def states(self) -> list[DeviceState]:
        """Return every backend the probe answered for (or cpu alone, when it failed)."""
        names = list(self.backends) or ["cpu"]
        out = []
        for name in names:
            available, detail = self.device(name)
            out.append(
                DeviceState(
                    name=name,
                    available=available,
                    detail=detail,
                    checked_at=self.checked_at,
                    python=self.python,
                )
            )
        return out

    def require_runnable(self, suite: str) -> None:
        """Refuse (409) an interpreter that cannot run the recording plugin, saying why."""
        if self.failure:
            raise Conflict(
                f"suite {suite!r}: cannot run its interpreter {self.python}: {self.failure}",
                code="interpreter_unusable",
            )
        if self.pytest is None:
            raise Conflict(
                f"suite {suite!r}: its interpreter {self.python} has no pytest; install pytest "
                "there (the runner installs nothing into a suite's interpreter)",
                code="no_pytest",
            )
        if self.httpx is None:
            raise Conflict(
                f"suite {suite!r}: its interpreter {self.python} has no httpx, which the "
                "recording plugin imports; install httpx there",
                code="no_httpx",
            )


def run_probe(python: str, env: dict[str, str], timeout: float = PROBE_TIMEOUT_S) -> ProbeAnswer:
    """Ask an interpreter which devices and packages it has (spawns it once)."""
    started, moment = time.monotonic(), utcnow()
    answer = ProbeAnswer(python=python, checked_at=moment, monotonic=started)
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    try:
        result = subprocess.run(
            [python, "-c", PROBE],
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        answer.failure = "no such interpreter"
        return answer
    except PermissionError:
        answer.failure = "the interpreter is not executable"
        return answer
    except OSError as exc:
        answer.failure = f"could not start it: {exc}"
        return answer
    except subprocess.TimeoutExpired:
        answer.failure = f"the device probe took longer than {timeout:g} s"
        return answer
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        answer.failure = f"the device probe failed (exit code {result.returncode}): " + " | ".join(
            tail
        )
        return answer
    answer.backends = dict(data.get("backends") or {})
    answer.pytest = data.get("pytest")
    answer.httpx = data.get("httpx")
    return answer


class Probes:
    """Probe answers per (interpreter, environment), each reused for `ttl` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, tuple[tuple[str, str], ...]], ProbeAnswer] = {}
        self._inflight: dict[tuple[str, tuple[tuple[str, str], ...]], threading.Lock] = {}
        self.runs = 0

    def answer(
        self, python: str, env: dict[str, str], ttl: float, refresh: bool = False
    ) -> ProbeAnswer:
        """Return the interpreter's answer, probing again when older than `ttl` (or asked)."""
        key = (python, tuple(sorted(env.items())))
        with self._lock:
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:  # one probe per interpreter at a time; the others take its answer
            with self._lock:
                cached = self._answers.get(key)
            if cached and not refresh and time.monotonic() - cached.monotonic < ttl:
                return cached
            fresh = run_probe(python, env)
            with self._lock:
                self.runs += 1
                self._answers[key] = fresh
                while len(self._answers) > CACHE_SIZE:
                    self._answers.pop(next(iter(self._answers)))
            return fresh


PROBES = Probes()
"""The process's probe cache (the runner before each device's pass, GET /hardware)."""
