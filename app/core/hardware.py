"""Which hardware backends this machine offers, by cheap probes (nothing is required)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import platform
from typing import Any

from pydantic import BaseModel


class Backend(BaseModel):
    """One hardware backend and whether it can be used here."""

    name: str
    available: bool
    detail: str


def _torch() -> Any | None:
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.import_module("torch")
    except Exception:  # a broken torch install means no torch backends, not a failure
        return None


@functools.cache
def detect() -> tuple[Backend, ...]:
    """Probe each backend once per process (torch is imported only when installed)."""
    found = [
        Backend(name="cpu", available=True, detail=f"{platform.machine()}, {os.cpu_count()} cores")
    ]
    torch = _torch()
    if torch is None:
        reason = "torch is not installed"
        found += [Backend(name=n, available=False, detail=reason) for n in ("cuda", "rocm", "mps")]
    else:
        hip = getattr(torch.version, "hip", None)
        gpu = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if gpu else 0
        found.append(
            Backend(
                name="cuda",
                available=gpu and not hip,
                detail=f"{count} device(s)" if gpu and not hip else "no CUDA device",
            )
        )
        found.append(
            Backend(
                name="rocm",
                available=gpu and bool(hip),
                detail=f"HIP {hip}" if hip else "no ROCm device",
            )
        )
        mps = getattr(torch.backends, "mps", None)
        has_mps = bool(mps and mps.is_available())
        found.append(
            Backend(
                name="mps", available=has_mps, detail="Apple GPU" if has_mps else "no MPS device"
            )
        )
    openvino = importlib.util.find_spec("openvino") is not None
    found.append(
        Backend(
            name="openvino",
            available=openvino,
            detail="openvino installed" if openvino else "openvino is not installed",
        )
    )
    for name in ("webgpu", "webnn", "qnn"):
        found.append(
            Backend(name=name, available=False, detail="not available to a Python server process")
        )
    return tuple(found)
