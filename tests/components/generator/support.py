"""Helpers the Generator tests share: a full task document, a generation without a database."""

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


def full_document(task_id: str = "task-1", **overrides: Any) -> dict[str, Any]:
    """Return a task document using every part of the recording API."""
    doc: dict[str, Any] = {
        "task_id": task_id,
        "model_name": "bert-base-uncased",
        "hardware": ["cpu", "cuda"],
        "status": "completed",
        "progress": 1.0,
        "current_step": "write",
        "template_type": "encoder_only",
        "template_context": {
            "model": {"name": "bert", "layers": [1, 2, {"deep": [None, True, 1.5e-7]}]},
            "unicode": "ünïcødé ✓",
            "empty": {},
        },
        "output_file": "generated/test_bert.py",
        "output_dir": "generated",
        "started_at": "2026-03-01T10:00:00+02:00",
        "completed_at": "2026-03-01T08:00:42.250000Z",
        "error": None,
        "architecture": "encoder_only",
        "creator": "ci",
        "task_type": "single",
        "batch_id": "batch-1",
        "steps": [
            {
                "step_name": "render/template one",
                "status": "completed",
                "progress": 1.0,
                "started_at": "2026-03-01T08:00:00Z",
                "completed_at": "2026-03-01T08:00:10Z",
                "duration": 10.0,
                "error": None,
            },
            {"step_name": "compile", "status": "error", "progress": 0.5, "error": "SyntaxError"},
        ],
        "metrics": [
            {
                "name": "render_ms",
                "value": 12.5,
                "unit": "ms",
                "hardware": "cpu",
                "timestamp": "2026-03-01T08:00:05Z",
            },
            {
                "name": "render_ms",
                "value": 7.25,
                "unit": "ms",
                "hardware": "cuda",
                "timestamp": "2026-03-01T08:00:06Z",
            },
        ],
        "tags": {"team": "nlp", "ci/job": "nightly 42"},
    }
    doc.update(overrides)
    return doc
