"""Page data: one function per page, built from the components' service and store calls.

Each returns a plain dict: the page template renders it, and `/ui/data/...` serves it as JSON
(the JSON a page is built from). Charts arrive downsampled, tables as one server-side page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from sqlalchemy.orm import Session

from app.components.generator import service as gen_service
from app.components.generator import store as gen_store
from app.components.test_suite import service as ts_service
from app.components.test_suite import store as ts_store
from app.core.errors import NotFound
from app.core.pagination import Page
from app.core.stats import window_start
from app.core.statuses import ACTIVE, TERMINAL
from app.web import queries

# A rendered file larger than this is shown cut (the download link has the whole file).
MAX_FILE_BYTES = 512 * 1024
STEP_LIMIT = 200
ARTIFACT_LIMIT = 200


class Filters(BaseModel):
    """Query-string filters of a page: bounded, unknown names refused."""

    model_config = ConfigDict(extra="forbid")


class OverviewFilters(Filters):
    """Filters of the overview: a time window, a model name substring, the matrix page."""

    days: int | None = Field(None, ge=1, le=3650, description="only runs of the last N days")
    model: str | None = Field(None, max_length=256, description="model name contains")
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(40, ge=1, le=200)


class ModelFilters(Filters):
    """Filters of the model page."""

    days: int | None = Field(90, ge=1, le=3650)
    device: str | None = Field(None, max_length=32)
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(20, ge=1, le=200)


class RunFilters(Filters):
    """Filters and sort of the run page's per-test table."""

    q: str | None = Field(None, max_length=256, description="name or error contains")
    status: str | None = Field(None, max_length=16)
    sort: Literal["position", "name", "status", "duration"] = "position"
    failures_first: bool = True
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class BatchFilters(Filters):
    """Paging of the batch page's member table."""

    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class GeneratorFilters(Filters):
    """Filters of the generator's task list."""

    model: str | None = Field(None, max_length=256, description="exact model name")
    status: str | None = Field(None, max_length=16)
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=200)


class EmptyFilters(Filters):
    """A page without filters."""


def _page(f: Any) -> Page:
    return Page(limit=f.per_page, offset=(f.page - 1) * f.per_page)


def _pager(f: Any, total: int, params: dict[str, Any]) -> dict[str, Any]:
    pages = max(1, -(-total // f.per_page))
    keep = {k: v for k, v in params.items() if v not in (None, "") and k != "page"}

    def url(n: int) -> str:
        return "?" + urlencode({**keep, "page": n})

    return {
        "page": f.page,
        "pages": pages,
        "total": total,
        "prev": url(f.page - 1) if f.page > 1 else None,
        "next": url(f.page + 1) if f.page < pages else None,
    }


def _q(path: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")


def _rate_series(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    by_device: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        if row[key] is None:
            continue
        series = by_device.setdefault(row["device"], {"x": [], "y": []})
        series["x"].append(datetime.fromtimestamp(row["bucket"], UTC).isoformat())
        series["y"].append(row[key])
    return [{"name": device, **xy} for device, xy in sorted(by_device.items())]


# --- pages -----------------------------------------------------------------------------------


def overview(ts: Session, gen: Session | None, f: OverviewFilters) -> dict[str, Any]:
    """Return the overview: model x device matrix, last batches, runs in progress."""
    since = window_start(f.days)
    page = _page(f)
    cells, devices, total = queries.matrix(ts, since, f.model, page.limit, page.offset)
    rows: dict[str, dict[str, Any]] = {}
    for cell in cells:
        rows.setdefault(cell["model_name"], {})[cell["device"]] = cell
    batches, _ = ts_service.list_batches(ts, None, Page(limit=10, offset=0))
    running, running_total = ts_store.list_runs(
        ts, ts_store.RunFilter(status=tuple(sorted(ACTIVE))), Page(limit=20, offset=0)
    )
    return {
        "title": "Overview",
        "filters": f.model_dump(),
        "devices": devices,
        "matrix": [{"model_name": m, "cells": c} for m, c in rows.items()],
        "pager": _pager(f, total, f.model_dump()),
        "batches": batches,
        "running": running,
        "running_total": running_total,
        "json": {
            "models": _q("/api/test/db/models/stats", days=f.days),
            "batches": "/api/test/db/batches?limit=10",
            "running": "/api/test/db/runs?status=running&status=queued&status=initializing",
        },
    }


def model(ts: Session, gen: Session | None, f: ModelFilters, model_name: str) -> dict[str, Any]:
    """Return a model's charts per device, recent runs and generator tasks."""
    if not queries.models_with_runs(ts, model_name):
        tasks_exist = (
            gen is not None
            and gen_store.list_tasks(gen, gen_store.TaskFilter(model_name=model_name), Page(1, 0))[
                1
            ]
        )
        if not tasks_exist:
            raise NotFound(f"model {model_name} has no runs and no generator tasks")
    since = window_start(f.days)
    series = queries.run_series(ts, model_name, since, f.device)
    metric_rows = queries.metric_series(ts, model_name, since, f.device)
    metrics: dict[tuple[str, str], dict[str, dict[str, list[Any]]]] = {}
    for row in metric_rows:
        key = (row["metric_name"], row["metric_unit"] or "")
        s = metrics.setdefault(key, {}).setdefault(row["device"] or "(any)", {"x": [], "y": []})
        s["x"].append(datetime.fromtimestamp(row["bucket"], UTC).isoformat())
        s["y"].append(row["value"])
    runs, runs_total = ts_store.list_runs(
        ts,
        ts_store.RunFilter(model_name=model_name, hardware=f.device, since=since),
        _page(f),
    )
    tasks: list[dict[str, Any]] = []
    if gen is not None:
        tasks, _ = gen_store.list_tasks(
            gen, gen_store.TaskFilter(model_name=model_name), Page(limit=20, offset=0)
        )
    charts = [
        {
            "id": "pass-rate",
            "title": "Pass rate per device",
            "y_title": "pass rate",
            "y_format": ".0%",
            "series": _rate_series(series, "pass_rate"),
        },
        {
            "id": "p50",
            "title": "p50 run duration per device (s)",
            "y_title": "seconds",
            "series": _rate_series(series, "p50"),
        },
        {
            "id": "p95",
            "title": "p95 run duration per device (s)",
            "y_title": "seconds",
            "series": _rate_series(series, "p95"),
        },
    ]
    for i, ((name, unit), by_device) in enumerate(sorted(metrics.items())):
        charts.append(
            {
                "id": f"metric-{i}",
                "title": f"{name} ({unit})" if unit else name,
                "y_title": unit or name,
                "series": [{"name": d, **xy} for d, xy in sorted(by_device.items())],
            }
        )
    params = f.model_dump()
    return {
        "title": model_name,
        "model_name": model_name,
        "filters": params,
        "devices": queries.model_devices(ts, model_name),
        "charts": charts,
        "runs": runs,
        "pager": _pager(f, runs_total, params),
        "tasks": tasks,
        "json": {
            "runs": _q("/api/test/db/runs", model_name=model_name, hardware=f.device),
            "stats": _q("/api/test/db/hardware/stats", model_name=model_name, days=f.days),
            "performance": _q("/api/test/db/performance", model_name=model_name, days=f.days),
            "tasks": _q("/api/generator/db/tasks", model_name=model_name),
        },
    }


def run(ts: Session, gen: Session | None, f: RunFilters, run_id: str) -> dict[str, Any]:
    """Return a run's summary, a page of its per-test table, steps, metrics and artifacts."""
    summary = ts_store.run_summary(ts, run_id)
    if summary is None:
        raise NotFound(f"run {run_id} not found")
    page = _page(f)
    cases, cases_total = queries.run_cases(
        ts,
        run_id,
        text=f.q,
        status=f.status,
        sort=f.sort,
        failures_first=f.failures_first,
        limit=page.limit,
        offset=page.offset,
    )
    steps, steps_total = queries.run_steps(ts, run_id, STEP_LIMIT)
    status = str(summary["status"])
    summary["status"] = status
    params = f.model_dump()
    return {
        "title": f"Run {run_id}",
        "run": summary,
        "live": status not in TERMINAL,
        "filters": params,
        "case_counts": queries.case_status_counts(ts, run_id),
        "cases": cases,
        "pager": _pager(f, cases_total, params),
        "steps": steps,
        "steps_total": steps_total,
        "timeline": _timeline(steps),
        "metrics": queries.run_metric_summary(ts, run_id),
        "artifacts": queries.run_artifacts(ts, run_id, ARTIFACT_LIMIT),
        "json": {
            "run": f"/api/test/db/run/{quote(run_id, safe='')}",
            "status": f"/api/test/status/{quote(run_id, safe='')}",
            "events": f"/api/test/events/{quote(run_id, safe='')}",
        },
    }


def _timeline(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    timed = [s for s in steps if s["started_at"] is not None]
    if not timed:
        return None
    return {
        "id": "steps",
        "title": "Steps",
        "kind": "timeline",
        "series": [
            {
                "name": "steps",
                "y": [s["step_name"] for s in timed],
                "base": [s["started_at"].isoformat() for s in timed],
                "x": [
                    max(
                        1.0,
                        ((s["completed_at"] or s["started_at"]) - s["started_at"]).total_seconds()
                        * 1000,
                    )
                    for s in timed
                ],
                "status": [s["status"] for s in timed],
            }
        ],
    }


def batch(ts: Session, gen: Session | None, f: BatchFilters, batch_id: str) -> dict[str, Any]:
    """Return a batch, its counts by member status and a page of its member runs."""
    item = ts_service.batch_detail(ts, batch_id)
    members = item.pop("runs")
    page = _page(f)
    for m in members:
        m["status"] = str(m["status"])
    return {
        "title": f"Batch {batch_id}",
        "batch": {**item, "status": str(item["status"])},
        "runs": members[page.offset : page.offset + page.limit],
        "pager": _pager(f, len(members), f.model_dump()),
        "json": {"batch": f"/api/test/db/batch/{quote(batch_id, safe='')}"},
    }


def generator(ts: Session, gen: Session | None, f: GeneratorFilters) -> dict[str, Any]:
    """Return a page of generator tasks."""
    if gen is None:
        raise NotFound("the generator component is not enabled")
    statuses = (f.status,) if f.status else ()
    tasks, total = gen_store.list_tasks(
        gen, gen_store.TaskFilter(status=statuses, model_name=f.model), _page(f)
    )
    for t in tasks:
        t["status"] = str(t["status"])
    params = f.model_dump()
    return {
        "title": "Generator",
        "filters": params,
        "tasks": tasks,
        "pager": _pager(f, total, params),
        "json": {"tasks": _q("/api/generator/db/tasks", model_name=f.model, status=f.status)},
    }


def task(
    ts: Session | None, gen: Session | None, f: EmptyFilters, task_id: str, output_root: Path
) -> dict[str, Any]:
    """Return a generator task with its steps and its rendered file, highlighted."""
    if gen is None:
        raise NotFound("the generator component is not enabled")
    item = gen_service.task_detail(gen, task_id)
    item["status"] = str(item["status"])
    source, cut = _read_output(item.get("output_file"), output_root)
    return {
        "title": f"Task {task_id}",
        "task": item,
        "code_html": highlight(source, PythonLexer(), HtmlFormatter(linenos="table"))
        if source is not None
        else None,
        "code_cut": cut,
        "json": {
            "task": f"/api/generator/db/task/{quote(task_id, safe='')}",
            "file": f"/api/generator/file/{quote(task_id, safe='')}",
        },
    }


def _read_output(output_file: str | None, root: Path) -> tuple[str | None, bool]:
    # Only a file inside the output folder, as GET /api/generator/file does.
    if not output_file:
        return None, False
    path = Path(output_file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None, False
    with path.open("rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)
    return raw[:MAX_FILE_BYTES].decode("utf-8", "replace"), len(raw) > MAX_FILE_BYTES


def pygments_css() -> str:
    """Return the stylesheet of the highlighted code."""
    return str(HtmlFormatter().get_style_defs(".highlight"))
