"""Test Suite lifecycle rules on top of the store: record, update, complete, batch, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.components.test_suite import store
from app.components.test_suite.models import (
    Run,
    RunArtifact,
    RunBatch,
    RunBatchLink,
    RunCase,
    RunMetric,
    RunResult,
    RunStep,
    RunTag,
)
from app.components.test_suite.schemas import (
    FAILED,
    PASSED,
    SKIPPED,
    ArtifactIn,
    BatchCreate,
    CaseIn,
    ExportIn,
    ResultsIn,
    RunComplete,
    RunCreate,
    RunUpdate,
)
from app.core import transfer
from app.core.errors import BadRequest, Conflict, NotFound
from app.core.models import utcnow
from app.core.naming import metric_unit
from app.core.pagination import Page
from app.core.schemas import MetricIn, StepIn
from app.core.statuses import TERMINAL, batch_status, transition_allowed
from app.core.transfer import TableSpec

COMPONENT = "test_suite"

# Export order, import keys: upsert by natural key, or replace a run's rows (append-only series).
TABLES = (
    TableSpec(Run, ("run_id",), "runs", keys=("run_id",)),
    TableSpec(RunResult, ("run_id",), "runs", keys=("run_id",)),
    TableSpec(RunCase, ("run_id", "position"), "cases", owner="run_id"),
    TableSpec(RunStep, ("run_id", "step_name"), "steps", keys=("run_id", "step_name")),
    TableSpec(
        RunMetric,
        ("run_id", "timestamp", "metric_name", "hardware", "metric_value"),
        "metrics",
        owner="run_id",
    ),
    TableSpec(RunTag, ("run_id", "tag_name"), "runs", keys=("run_id", "tag_name")),
    TableSpec(RunArtifact, ("run_id", "artifact_path"), "runs", keys=("run_id", "artifact_path")),
    TableSpec(RunBatch, ("batch_id",), "batches", keys=("batch_id",)),
    TableSpec(RunBatchLink, ("batch_id", "run_id"), "batches", keys=("run_id", "batch_id")),
)


def new_id() -> str:
    """Return a fresh run or batch id."""
    return uuid.uuid4().hex


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def require_run(session: Session, run_id: str) -> Run:
    """Return a run or raise 404."""
    run = store.get_run(session, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def require_batch(session: Session, batch_id: str) -> RunBatch:
    """Return a batch or raise 404."""
    batch = store.get_batch(session, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found")
    return batch


def _check_transition(run: Run, new_status: str | None) -> None:
    if new_status is None:
        return
    current = str(run.status)
    if not transition_allowed(current, new_status):
        raise Conflict(
            f"run {run.run_id} is {current}; it cannot become {new_status}",
            code="invalid_transition",
        )


def _finish_fields(fields: dict[str, Any], started_at: datetime | None) -> None:
    # A terminal status closes the run: completed_at, duration, and full progress if completed.
    status = fields.get("status")
    if status is None or str(status) not in TERMINAL:
        return
    fields.setdefault("completed_at", utcnow())
    if fields.get("duration") is None:
        fields["duration"] = _seconds(fields.get("started_at", started_at), fields["completed_at"])
    if str(status) == "completed":
        fields.setdefault("progress", 1.0)


def _metric_rows(metrics: list[MetricIn]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "metric_name": m.name,
            "metric_value": m.value,
            "metric_unit": m.unit,
            "hardware": m.hardware,
            "timestamp": m.timestamp or now,
        }
        for m in metrics
    ]


def _performance_rows(results: ResultsIn) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "metric_name": name,
            "metric_value": float(value),
            "metric_unit": metric_unit(name),
            "hardware": device,
            "timestamp": now,
        }
        for device, values in (results.performance_metrics or {}).items()
        for name, value in values.items()
    ]


def _count(details: list[CaseIn]) -> dict[str, int]:
    statuses = [d.status.value for d in details]
    return {
        "tests_passed": sum(s in PASSED for s in statuses),
        "tests_failed": sum(s in FAILED for s in statuses),
        "tests_skipped": sum(s in SKIPPED for s in statuses),
    }


def _store_results(session: Session, run_id: str, results: ResultsIn) -> None:
    if results.test_details is not None:
        store.replace_cases(session, run_id, [d.model_dump() for d in results.test_details])
        counts = _count(results.test_details)
    else:
        counts = {
            "tests_passed": results.tests_passed or 0,
            "tests_failed": results.tests_failed or 0,
            "tests_skipped": results.tests_skipped or 0,
        }
    data: dict[str, Any] = dict(results.model_extra or {})
    if results.performance_metrics is not None:
        data["performance_metrics"] = results.performance_metrics
    store.set_results(session, run_id, counts, data)


def refresh_batches(session: Session, batch_ids: list[str]) -> None:
    """Derive each batch's status, timing and member count from its runs."""
    for batch_id in batch_ids:
        counts = store.member_counts(session, [batch_id]).get(batch_id, {})
        statuses = [status for status, n in counts.items() for _ in range(n)]
        timing = store.member_timing(session, batch_id)
        status = batch_status(statuses)
        done = status in {"completed", "partial", "error", "cancelled"}
        completed_at = timing["completed_at"] if done else None
        store.set_batch_fields(
            session,
            batch_id,
            {
                "status": status,
                "run_count": int(timing["members"]),
                "started_at": timing["started_at"],
                "completed_at": completed_at,
                "duration": _seconds(timing["started_at"], completed_at),
            },
        )


def _after_status_change(session: Session, run_id: str) -> None:
    refresh_batches(session, store.batch_ids_of(session, [run_id]).get(run_id, []))


# --- recording -------------------------------------------------------------------------------


def record_run(session: Session, doc: RunCreate) -> str:
    """Store a whole run document atomically; re-posting a run_id upserts what was sent."""
    run_id = doc.run_id or new_id()
    nested = {"run_id", "results", "steps", "metrics", "tags", "artifacts", "batch_id"}
    fields = doc.model_dump(exclude_unset=True, exclude=nested)
    existing = store.get_run(session, run_id)
    if existing is None:
        fields.setdefault("started_at", utcnow())
        fields.setdefault("hardware", ["cpu"])
        fields.setdefault("status", "completed" if fields.get("completed_at") else "initializing")
        fields.setdefault("progress", 1.0 if fields["status"] == "completed" else 0.0)
    else:
        _check_transition(existing, fields.get("status"))
    if fields.get("duration") is None and "completed_at" in fields:
        started = fields.get("started_at") or (existing.started_at if existing else None)
        fields["duration"] = _seconds(started, fields["completed_at"])
    if "status" in fields:
        _finish_fields(fields, existing.started_at if existing else fields.get("started_at"))
    if existing is None:
        store.add_run(session, {"run_id": run_id, **fields})
    else:
        store.set_run_fields(session, existing, fields)
    if doc.results is not None:
        _store_results(session, run_id, doc.results)
    if doc.steps is not None:
        store.replace_steps(session, run_id, [s.model_dump() for s in doc.steps])
    if doc.metrics is not None or (doc.results and doc.results.performance_metrics):
        rows = _metric_rows(doc.metrics or []) + (
            _performance_rows(doc.results) if doc.results else []
        )
        store.replace_metrics(session, run_id, rows)
    if doc.tags is not None:
        store.set_tags(session, run_id, doc.tags, replace=True)
    if doc.artifacts is not None:
        store.put_artifacts(session, run_id, [a.model_dump() for a in doc.artifacts], replace=True)
    if doc.batch_id is not None:
        if store.get_batch(session, doc.batch_id) is None:
            store.add_batch(session, {"batch_id": doc.batch_id, "status": "initializing"})
        store.link(session, [run_id], doc.batch_id)
    _after_status_change(session, run_id)
    return run_id


def update_run(session: Session, run_id: str, upd: RunUpdate) -> None:
    """Change only the fields sent; a status change must be a valid transition."""
    run = require_run(session, run_id)
    fields = upd.model_dump(exclude_unset=True)
    _check_transition(run, fields.get("status"))
    if "status" in fields and str(fields["status"]) != str(run.status):
        _finish_fields(fields, fields.get("started_at", run.started_at))
    store.set_run_fields(session, run, fields)
    if "status" in fields:
        _after_status_change(session, run_id)


def put_step(session: Session, run_id: str, step_name: str, step: StepIn) -> None:
    """Create or update one step; a finished step gets its duration from its timestamps."""
    require_run(session, run_id)
    values = step.model_dump()
    if values["duration"] is None:
        values["duration"] = _seconds(values["started_at"], values["completed_at"])
    store.put_step(session, run_id, step_name, values)


def add_metrics(session: Session, run_id: str, metrics: list[MetricIn]) -> int:
    """Append metric points to a run."""
    require_run(session, run_id)
    return store.append_metrics(session, run_id, _metric_rows(metrics))


def put_tags(session: Session, run_id: str, tags: dict[str, str], *, merge: bool) -> None:
    """Set a run's tags (all of them, or merged into those it has)."""
    require_run(session, run_id)
    store.set_tags(session, run_id, tags, replace=not merge)


def add_artifacts(session: Session, run_id: str, artifacts: list[ArtifactIn]) -> None:
    """Record artifacts of a run (a known path is updated, not duplicated)."""
    require_run(session, run_id)
    store.put_artifacts(session, run_id, [a.model_dump() for a in artifacts], replace=False)


def put_results(session: Session, run_id: str, results: ResultsIn) -> None:
    """Replace a run's results; per-device metrics replace the same (metric, device) points."""
    require_run(session, run_id)
    _store_results(session, run_id, results)
    rows = _performance_rows(results)
    if rows:
        store.replace_metric_points(session, run_id, rows)


def add_cases(session: Session, run_id: str, cases: list[CaseIn]) -> int:
    """Append per-test outcomes to a run (the runner and the pytest plugin send them live)."""
    require_run(session, run_id)
    return store.append_cases(session, run_id, [c.model_dump() for c in cases])


def complete_run(session: Session, run_id: str, body: RunComplete) -> None:
    """End a run with a terminal status; counts come from its cases when no results are sent."""
    run = require_run(session, run_id)
    status = body.status.value
    if status not in TERMINAL:
        raise Conflict(f"complete takes a terminal status, not {status}", code="invalid_transition")
    if str(run.status) in TERMINAL:
        if str(run.status) == status:
            return
        _check_transition(run, status)
    if body.results is not None:
        put_results(session, run_id, body.results)
    elif store.get_results(session, run_id) is None or store.case_counts(session, run_id)["total"]:
        counts = store.case_counts(session, run_id)
        counts.pop("total")
        existing = store.get_results(session, run_id)
        store.set_results(
            session, run_id, counts, (existing.result_data if existing else None) or {}
        )
    fields: dict[str, Any] = {"status": status, "completed_at": body.completed_at or utcnow()}
    if body.error is not None:
        fields["error"] = body.error
    if status == "completed":
        fields["current_step"] = "completed"
    _finish_fields(fields, run.started_at)
    store.set_run_fields(session, run, fields)
    _after_status_change(session, run_id)


# --- batches ---------------------------------------------------------------------------------


def create_batch(session: Session, body: BatchCreate) -> str:
    """Create a batch, optionally with members; every member run must exist."""
    batch_id = body.batch_id or new_id()
    if store.get_batch(session, batch_id) is not None:
        raise Conflict(f"batch {batch_id} exists", code="batch_exists")
    run_ids = list(dict.fromkeys(body.run_ids or []))
    missing = sorted(set(run_ids) - store.run_exists(session, run_ids))
    if missing:
        raise NotFound(f"runs not found: {', '.join(missing)}", extra={"missing": missing})
    store.add_batch(
        session,
        {
            "batch_id": batch_id,
            "description": body.description,
            "creator": body.creator,
            "status": "initializing",
            "run_count": len(run_ids),
        },
    )
    store.link(session, run_ids, batch_id)
    refresh_batches(session, [batch_id])
    return batch_id


def add_to_batch(session: Session, batch_id: str, run_id: str) -> None:
    """Make a run a member of a batch (idempotent)."""
    require_batch(session, batch_id)
    require_run(session, run_id)
    store.link(session, [run_id], batch_id)
    refresh_batches(session, [batch_id])


# --- deletes ---------------------------------------------------------------------------------


def delete_run(session: Session, run_id: str) -> dict[str, int]:
    """Delete a run and all its rows; its batches' statuses follow."""
    require_run(session, run_id)
    batches = store.batch_ids_of(session, [run_id]).get(run_id, [])
    counts = store.delete_runs(session, [run_id])
    refresh_batches(session, batches)
    return counts


def delete_batch(session: Session, batch_id: str, *, delete_runs: bool) -> dict[str, int]:
    """Delete a batch, and its runs too when asked (otherwise they are only unlinked)."""
    require_batch(session, batch_id)
    counts: dict[str, int] = {}
    if delete_runs:
        run_ids = store.run_ids_of_batch(session, batch_id)
        others = {b for ids in store.batch_ids_of(session, run_ids).values() for b in ids}
        counts = store.delete_runs(session, run_ids)
        counts.update(store.delete_batch(session, batch_id))
        refresh_batches(session, sorted(others - {batch_id}))
    else:
        counts = store.delete_batch(session, batch_id)
    return counts


# --- reads -----------------------------------------------------------------------------------


def run_detail(session: Session, run_id: str) -> dict[str, Any]:
    """Return a run with every child row, or raise 404."""
    detail = store.run_detail(session, run_id)
    if detail is None:
        raise NotFound(f"run {run_id} not found")
    return detail


def batch_detail(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch, its counts by member status, and its member runs."""
    batch = require_batch(session, batch_id)
    item = batch_summary(session, [batch])[0]
    item["runs"] = store.member_runs(session, batch_id)
    return item


def batch_summary(session: Session, batches: list[RunBatch]) -> list[dict[str, Any]]:
    """Return batches with their members counted by status."""
    counts = store.member_counts(session, [b.batch_id for b in batches])
    out = []
    for batch in batches:
        by_status = counts.get(batch.batch_id, {})
        item = {k: getattr(batch, k) for k in store.BATCH_FIELDS}
        item["counts"] = {"total": sum(by_status.values()), "by_status": by_status}
        out.append(item)
    return out


def list_batches(
    session: Session, status: str | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of batches with member counts, and the total."""
    batches, total = store.list_batches(session, status, page)
    return batch_summary(session, batches), total


# --- export / import -------------------------------------------------------------------------


def export_tables(body: ExportIn) -> list[TableSpec]:
    """Return the tables an export request asks for."""
    groups = {
        "runs": body.include_runs,
        "cases": body.include_runs and body.include_cases,
        "steps": body.include_runs and body.include_steps,
        "metrics": body.include_runs and body.include_metrics,
        "batches": body.include_batches,
    }
    return [spec for spec in TABLES if groups[spec.group]]


def export(session: Session, folder: Path, body: ExportIn, revision: str | None) -> dict[str, Any]:
    """Write an export file into the export folder and say what was written."""
    path = transfer.export_path(folder, body.filename, body.overwrite)
    fmt = transfer.format_for(body.filename, body.format)
    if fmt == "json":
        rows = transfer.export_document(session, COMPONENT, revision, export_tables(body), path)
    else:
        spec = _single_table(body.table)
        tmp = path.with_name(f".{path.name}.tmp")
        rows = {spec.name: transfer.export_table(session, spec, tmp, fmt)}
        tmp.replace(path)
    return {
        "path": str(path),
        "filename": path.name,
        "format": fmt,
        "bytes": path.stat().st_size,
        "rows": rows,
        "schema_revision": revision,
    }


def _single_table(name: str | None) -> TableSpec:
    by_name = {spec.name: spec for spec in TABLES}
    chosen = name or Run.__tablename__
    if chosen not in by_name:
        raise BadRequest(
            f"unknown table {chosen!r}; one of {', '.join(by_name)}", code="unknown_table"
        )
    return by_name[chosen]


def import_document(session: Session, document: dict[str, Any]) -> dict[str, int]:
    """Load an export document atomically; loading it twice changes nothing."""
    return transfer.import_document(session, COMPONENT, TABLES, document)
