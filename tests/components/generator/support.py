"""Helpers the Generator tests share: one generation through the runner's own steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.components.generator.families import Family
from app.components.generator.render import check_source, safe_output_dir, write_atomically
from app.components.generator.runner import plan_module, render_module


@dataclass(frozen=True)
class Generated:
    """What one generation wrote, and how long rendering took."""

    path: Path
    family: Family
    hardware: tuple[str, ...]
    lines: int
    bytes: int
    render_ms: float


def generate(
    model_name: str,
    *,
    output_root: Path,
    output_dir: str | None = None,
    template_type: str | None = None,
    template_context: Mapping[str, Any] | None = None,
    hardware: Sequence[str] | None = None,
    force: bool = False,
    fix_syntax: bool = True,
) -> Generated:
    """Resolve, render, check and write a module the way a task's steps do, without a database."""
    directory = safe_output_dir(output_root, output_dir)
    family, devices, path = plan_module(model_name, template_type, hardware, directory)
    source, render_ms = render_module(model_name, family, devices, template_context, fix=fix_syntax)
    check_source(source, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, source, force=force)
    return Generated(
        path=path,
        family=family,
        hardware=devices,
        lines=source.count("\n"),
        bytes=len(source.encode("utf-8")),
        render_ms=render_ms,
    )
