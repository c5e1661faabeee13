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
from app.components.test_suite import models as ts_models
from app.components.test_suite import reports as ts_reports
from app.components.test_suite import service as ts_service
from app.components.test_suite import store as ts_store
from app.core.config import Settings
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


def _short() -> Any:
    return Field(None, min_length=1, max_length=256)


FlakyVerdict = Literal["flaky", "broken", "healthy", "insufficient_data"]
RegressionVerdict = Literal[
    "regression", "improvement", "changed", "unchanged", "insufficient_data"
]


class FlakyFilters(Filters):
    """Filters of the flaky page (those of GET /api/test/db/flaky)."""

    model_name: str | None = _short()
    hardware: str | None = _short()
    days: int = Field(30, ge=1, le=3650)
    min_runs: int = Field(5, ge=1, le=10_000)
    verdict: FlakyVerdict | None = None
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class RegressionsFilters(Filters):
    """Filters of the regressions page (those of GET /api/test/db/regressions)."""

    model_name: str | None = _short()
    hardware: str | None = _short()
    metric: str | None = _short()
    days: int = Field(7, ge=1, le=365)
    baseline_days: int = Field(28, ge=1, le=3650)
    min_samples: int = Field(5, ge=2, le=10_000)
    threshold: float = Field(0.1, gt=0.0, le=100.0)
    verdict: RegressionVerdict | None = None
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class CompareFilters(Filters):
    """The two sides of the compare page (run or batch ids) and its metric threshold."""

    base: str | None = Field(None, min_length=1, max_length=64)
    head: str | None = Field(None, min_length=1, max_length=64)
    threshold: float = Field(0.05, gt=0.0, le=100.0)


class CaseListFilters(Filters):
    """Filters of the tests list (those of GET /api/test/db/tests)."""

    q: str | None = _short()
    model_name: str | None = _short()
    hardware: str | None = _short()
    days: int | None = Field(None, ge=1, le=3650)
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class HistoryFilters(Filters):
    """One test's page: its id, optionally one model and device, and the table page."""

    test_id: str = Field(min_length=1, max_length=1024)
    model_name: str | None = _short()
    hardware: str | None = _short()
    days: int | None = Field(None, ge=1, le=3650)
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=500)


class SqlFilters(Filters):
    """The SQL page: a query to start from (it runs in the browser, through the API)."""

    sql: str | None = Field(None, max_length=20_000)


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


def href(path: str, **params: Any) -> str:
    """Return a path with the query parameters that are set."""
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
        "counts": report_counts(ts),
        "json": {
            "models": href("/api/test/db/models/stats", days=f.days),
            "batches": "/api/test/db/batches?limit=10",
            "running": "/api/test/db/runs?status=running&status=queued&status=initializing",
            "regressions": "/api/test/db/regressions",
            "flaky": "/api/test/db/flaky?verdict=flaky",
        },
    }


def _model_exists(ts: Session, gen: Session | None, model_name: str) -> None:
    """Raise 404 when a model has neither runs nor generator tasks."""
    if queries.models_with_runs(ts, model_name):
        return
    if gen is not None:
        _, tasks = gen_store.list_tasks(
            gen, gen_store.TaskFilter(model_name=model_name), Page(1, 0)
        )
        if tasks:
            return
    raise NotFound(f"model {model_name} has no runs and no generator tasks")


def _model_charts(
    ts: Session, f: ModelFilters, model_name: str, since: datetime | None
) -> list[dict[str, Any]]:
    """Return a model's run charts (pass rate, p50, p95) and one chart per metric and unit."""
    series = queries.run_series(ts, model_name, since, f.device)
    metrics: dict[tuple[str, str], dict[str, dict[str, list[Any]]]] = {}
    for row in queries.metric_series(ts, model_name, since, f.device):
        key = (row["metric_name"], row["metric_unit"] or "")
        s = metrics.setdefault(key, {}).setdefault(row["device"] or "(any)", {"x": [], "y": []})
        s["x"].append(datetime.fromtimestamp(row["bucket"], UTC).isoformat())
        s["y"].append(row["value"])
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
    changes = _change_points(ts, ts_reports.ReportScope(model_name=model_name, hardware=f.device))
    charts[0]["marks"] = changes.get(ts_reports.PASS_RATE, [])
    for i, ((name, unit), by_device) in enumerate(sorted(metrics.items())):
        charts.append(
            {
                "id": f"metric-{i}",
                "title": f"{name} ({unit})" if unit else name,
                "y_title": unit or name,
                "series": [{"name": d, **xy} for d, xy in sorted(by_device.items())],
                "marks": changes.get((name, unit), []),
            }
        )
    return charts


def model(ts: Session, gen: Session | None, f: ModelFilters, model_name: str) -> dict[str, Any]:
    """Return a model's charts per device, recent runs and generator tasks."""
    _model_exists(ts, gen, model_name)
    since = window_start(f.days)
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
    flaky_tests, _ = _flaky_rows(
        ts,
        ts_reports.ReportScope(model_name=model_name, hardware=f.device, since=since),
        5,
        None,
        Page(FLAKY_ON_MODEL, 0),
    )
    params = f.model_dump()
    return {
        "title": model_name,
        "model_name": model_name,
        "filters": params,
        "devices": queries.model_devices(ts, model_name),
        "charts": _model_charts(ts, f, model_name, since),
        "runs": runs,
        "pager": _pager(f, runs_total, params),
        "tasks": tasks,
        "flaky": flaky_tests,
        "flaky_total": len(flaky_tests),
        "json": {
            "runs": href("/api/test/db/runs", model_name=model_name, hardware=f.device),
            "flaky": href("/api/test/db/flaky", model_name=model_name, hardware=f.device),
            "regressions": href(
                "/api/test/db/regressions", model_name=model_name, hardware=f.device
            ),
            "stats": href("/api/test/db/hardware/stats", model_name=model_name, days=f.days),
            "performance": href("/api/test/db/performance", model_name=model_name, days=f.days),
            "tasks": href("/api/generator/db/tasks", model_name=model_name),
        },
    }


FLAKY_ON_MODEL = 20
CHANGE_VERDICTS = ("regression", "improvement", "changed")


def _change_points(
    ts: Session, scope: ts_reports.ReportScope
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Return per (metric, unit) the first run after each series' change, as chart marks."""
    marks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    # The model's changed series, largest first: a chart carries at most a page of marks.
    changed = RegressionsFilters(verdict=None, per_page=500)
    for row in _regressions(ts, scope, changed, CHANGE_VERDICTS)["series"]:
        if row["verdict"] not in CHANGE_VERDICTS or row["change_at"] is None:
            continue
        marks.setdefault((row["metric"], row["unit"] or ""), []).append(
            {
                "x": _iso(row["change_at"]),
                "label": f"{row['verdict']} · {row['hardware']}",
                "run_id": row["change_run_id"],
            }
        )
    return marks


def run(
    ts: Session, gen: Session | None, f: RunFilters, run_id: str, settings: Settings
) -> dict[str, Any]:
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
    previous = _previous_run(ts, summary)
    artifacts = queries.run_artifacts(ts, run_id, ARTIFACT_LIMIT)
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
        "artifacts": [_artifact(a, run_id, settings) for a in artifacts],
        "previous_run": previous,
        "json": {
            "run": f"/api/test/db/run/{quote(run_id, safe='')}",
            "status": f"/api/test/status/{quote(run_id, safe='')}",
            "events": f"/api/test/events/{quote(run_id, safe='')}",
        },
    }


def _artifact(row: dict[str, Any], run_id: str, settings: Settings) -> dict[str, Any]:
    """Return an artifact with its download URL, or why it cannot be downloaded."""
    # The download route's own check: only files inside the results folder are served.
    path = ts_service.inside_results(settings, row["artifact_path"])
    unavailable = None
    if path is None:
        unavailable = "outside the results folder"
    elif not path.is_file():
        unavailable = "missing"
    url = f"/api/test/run/{quote(run_id, safe='')}/artifacts/{row['id']}"
    return {
        **row,
        "file_name": Path(row["artifact_path"]).name,
        "download_url": None if unavailable else url,
        "unavailable": unavailable,
    }


def _previous_run(ts: Session, summary: dict[str, Any]) -> str | None:
    """Return the id of the model's run started just before this one, if any."""
    if summary.get("started_at") is None:
        return None
    found, _ = ts_store.list_runs(
        ts,
        ts_store.RunFilter(model_name=summary["model_name"], until=summary["started_at"]),
        Page(limit=5, offset=0),
    )
    for r in found:
        if r["run_id"] != summary["run_id"]:
            return str(r["run_id"])
    return None


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
        "json": {"tasks": href("/api/generator/db/tasks", model_name=f.model, status=f.status)},
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


# --- reports (issue 10): flaky, regressions, compare, tests, one test's history, SQL ----------

HISTORY_POINTS = 500
STATUS_COLORS = {"passed": "#3c9a62", "failed": "#c0392b", "error": "#8a1c1c", "skipped": "#c8a13a"}


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _flaky_rows(
    ts: Session, scope: ts_reports.ReportScope, min_runs: int, verdict: str | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    return ts_service.flaky_report(
        ts,
        scope,
        min_runs=min_runs,
        max_failed_fraction=0.5,
        last_runs=None,
        verdicts_wanted=(verdict,) if verdict else (),
        page=page,
    )


def _regressions(
    ts: Session,
    scope: ts_reports.ReportScope,
    f: RegressionsFilters | None = None,
    verdicts: tuple[str, ...] = (),
) -> dict[str, Any]:
    f = f or RegressionsFilters()
    return ts_service.regressions_report(
        ts,
        scope,
        days=f.days,
        baseline_days=f.baseline_days,
        metric=f.metric,
        min_samples=f.min_samples,
        threshold=f.threshold,
        verdicts_wanted=verdicts or ((f.verdict,) if f.verdict else ()),
        page=_page(f),
    )


def report_counts(ts: Session) -> dict[str, int]:
    """Return how many series regressed and how many tests are flaky, by the reports' defaults."""
    regressions = _regressions(ts, ts_reports.ReportScope(), RegressionsFilters(per_page=1))
    _, flaky = _flaky_rows(
        ts, ts_reports.ReportScope(since=window_start(30)), 5, "flaky", Page(1, 0)
    )
    return {
        "regressions": regressions["verdict_counts"]["regression"],
        "newly_failing": len(regressions["newly_failing"]),
        "flaky": flaky,
    }


def flaky(ts: Session, gen: Session | None, f: FlakyFilters) -> dict[str, Any]:
    """Return a page of the flaky report: verdict, failure rate and interval, flips, retries."""
    scope = ts_reports.ReportScope(
        model_name=f.model_name, hardware=f.hardware, since=window_start(f.days)
    )
    rows, total = _flaky_rows(ts, scope, f.min_runs, f.verdict, _page(f))
    params = f.model_dump()
    return {
        "title": "Flaky tests",
        "filters": params,
        "rows": rows,
        "pager": _pager(f, total, params),
        "json": {
            "flaky": href(
                "/api/test/db/flaky",
                model_name=f.model_name,
                hardware=f.hardware,
                days=f.days,
                min_runs=f.min_runs,
                verdict=f.verdict,
            )
        },
    }


def regressions(ts: Session, gen: Session | None, f: RegressionsFilters) -> dict[str, Any]:
    """Return the regressions report: per series baseline vs recent, and newly failing tests."""
    scope = ts_reports.ReportScope(model_name=f.model_name, hardware=f.hardware)
    answer = _regressions(ts, scope, f)
    params = f.model_dump()
    # The series table pages in SQL (tens of thousands of series at full scale).
    series = answer.pop("series")
    api = {k: v for k, v in params.items() if k not in ("page", "per_page")}
    return {
        "title": "Regressions",
        "filters": params,
        **answer,
        "series": series,
        "pager": _pager(f, answer["series_total"], params),
        "json": {"regressions": href("/api/test/db/regressions", **api)},
    }


def compare(ts: Session, gen: Session | None, f: CompareFilters) -> dict[str, Any]:
    """Return a comparison of two runs or batches, or only the picker when one side is missing."""
    recent_runs, _ = ts_store.list_runs(ts, ts_store.RunFilter(), Page(limit=50, offset=0))
    recent_batches, _ = ts_service.list_batches(ts, None, Page(limit=20, offset=0))
    choices = [{"id": r["run_id"], "label": f"run · {r['model_name']}"} for r in recent_runs]
    choices += [{"id": b["batch_id"], "label": "batch"} for b in recent_batches]
    answer = None
    if f.base and f.head:
        answer = ts_service.compare_report(ts, f.base, f.head, None, f.threshold)
    title = f"Compare {f.base} → {f.head}" if answer else "Compare"
    return {
        "title": title,
        "filters": f.model_dump(),
        "choices": choices,
        "compare": answer,
        "empty_categories": [
            name
            for name in ts_service.COMPARE_CATEGORIES
            if answer and name != "unchanged" and not answer[name]
        ],
        "json": {
            "compare": href("/api/test/db/compare", base=f.base, head=f.head, threshold=f.threshold)
        }
        if answer
        else {"runs": "/api/test/db/runs?limit=50", "batches": "/api/test/db/batches?limit=20"},
    }


def tests(ts: Session, gen: Session | None, f: CaseListFilters) -> dict[str, Any]:
    """Return a page of test ids with their counts, pass rate, durations, last failure, flips."""
    scope = ts_reports.ReportScope(
        model_name=f.model_name, hardware=f.hardware, since=window_start(f.days), q=f.q
    )
    rows, total = ts_reports.tests(ts, scope, _page(f))
    params = f.model_dump()
    return {
        "title": "Tests",
        "filters": params,
        "rows": rows,
        "pager": _pager(f, total, params),
        "json": {
            "tests": href(
                "/api/test/db/tests",
                q=f.q,
                model_name=f.model_name,
                hardware=f.hardware,
                days=f.days,
                limit=f.per_page,
                offset=(f.page - 1) * f.per_page,
            )
        },
    }


def test_history(ts: Session, gen: Session | None, f: HistoryFilters) -> dict[str, Any]:
    """Return one test's results over time: a status and duration chart and a table page."""
    scope = ts_reports.ReportScope(
        model_name=f.model_name, hardware=f.hardware, since=window_start(f.days)
    )
    rows, total = ts_reports.history_of(ts, f.test_id, scope, _page(f))
    if total == 0:
        raise NotFound(f"no results of test {f.test_id} in this scope")
    # The chart: the newest HISTORY_POINTS results, oldest first.
    points, _ = ts_reports.history_of(ts, f.test_id, scope, Page(limit=HISTORY_POINTS, offset=0))
    points.reverse()
    series: list[dict[str, Any]] = [
        {
            "name": "duration",
            "mode": "lines",
            "color": "#9aa3ae",
            "x": [_iso(p["at"]) for p in points],
            "y": [p["duration_ms"] for p in points],
        }
    ]
    for status in sorted({str(p["status"]) for p in points}):
        mine = [p for p in points if str(p["status"]) == status]
        series.append(
            {
                "name": status,
                "mode": "markers",
                "color": STATUS_COLORS.get(status, "#5b6473"),
                "x": [_iso(p["at"]) for p in mine],
                "y": [p["duration_ms"] or 0.0 for p in mine],
            }
        )
    params = f.model_dump()
    return {
        "title": f"Test {f.test_id}",
        "filters": params,
        "rows": rows,
        "pager": _pager(f, total, params),
        "chart": {
            "id": "history",
            "title": f"Status and duration (ms), last {len(points)} results",
            "y_title": "ms",
            "series": series,
        },
        "json": {
            "history": href(
                "/api/test/db/tests/history",
                test_id=f.test_id,
                model_name=f.model_name,
                hardware=f.hardware,
                days=f.days,
                limit=f.per_page,
                offset=(f.page - 1) * f.per_page,
            )
        },
    }


SQL_EXAMPLE = "SELECT status, count(*) AS n\nFROM test_run_cases\nGROUP BY status\nORDER BY n DESC"


def sql(ts: Session, gen: Session | None, f: SqlFilters) -> dict[str, Any]:
    """Return the SQL page's starting query; the browser posts it to the query endpoint."""
    return {
        "title": "SQL",
        "sql": f.sql or SQL_EXAMPLE,
        "endpoint": "/api/test/db/query",
        "tables": sorted(ts_models.Base.metadata.tables),
        "json": {"query (POST)": "/docs#/test-db/query_api_test_db_query_post"},
    }
