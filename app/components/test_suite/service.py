"""Test Suite lifecycle rules on top of the store: record, update, complete, batch, delete."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.components.test_suite import flat_exports, reports, store, verdicts
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
    ArtifactIn,
    BatchCreate,
    CaseColumns,
    CaseStatus,
    ExportIn,
    ResultsIn,
    RunComplete,
    RunCreate,
    RunUpdate,
)
from app.core import lifecycle, transfer
from app.core.config import Settings
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.exchange import Exchange
from app.core.group_commit import flush_combined
from app.core.models import utcnow
from app.core.naming import metric_unit
from app.core.pagination import Page
from app.core.schemas import Metrics, StepIn
from app.core.stats import downsample
from app.core.statuses import TERMINAL, StepStatus
from app.core.transfer import TableSpec

COMPONENT = "test_suite"

# Export order, import keys: upsert by natural key, or replace a run's rows (append-only series).
TABLES = (
    TableSpec(Run, ("run_id",), "runs", keys=("run_id",), flat=flat_exports.runs),
    TableSpec(RunResult, ("run_id",), "runs", keys=("run_id",)),
    # Steps, metrics and artifacts in recorded order (by surrogate id), so an import inserts
    # them in that order again and reads list them as before.
    TableSpec(RunCase, ("run_id", "position"), "cases", owner="run_id", flat=flat_exports.cases),
    TableSpec(RunStep, ("run_id", "id"), "steps", keys=("run_id", "step_name")),
    TableSpec(
        RunMetric,
        ("run_id", "timestamp", "id"),
        "metrics",
        owner="run_id",
        flat=flat_exports.metrics,
    ),
    TableSpec(RunTag, ("run_id", "tag_name"), "runs", keys=("run_id", "tag_name")),
    TableSpec(RunArtifact, ("run_id", "id"), "runs", keys=("run_id", "artifact_path")),
    TableSpec(RunBatch, ("batch_id",), "batches", keys=("batch_id",)),
    TableSpec(RunBatchLink, ("batch_id", "run_id"), "batches", keys=("run_id", "batch_id")),
)


def new_id() -> str:
    """Return a fresh run or batch id."""
    return uuid.uuid4().hex


def _check_order(what: str, start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise Unprocessable(
            f"{what}: completed_at {end.isoformat()} is earlier than started_at "
            f"{start.isoformat()}",
            code="invalid_timestamps",
        )


def require_run(session: Session, run_id: str) -> Run:
    """Return a run or raise 404."""
    return lifecycle.require(store.get_run(session, run_id), f"run {run_id}")


def require_row(session: Session, run_id: str) -> dict[str, Any]:
    """Return a run's own fields (Core, no ORM load) or raise 404."""
    return lifecycle.require(store.run_row(session, run_id), f"run {run_id}")


def require_batch(session: Session, batch_id: str) -> RunBatch:
    """Return a batch or raise 404."""
    return lifecycle.require(store.get_batch(session, batch_id), f"batch {batch_id}")


def _check_transition(run: Run, new_status: str | None) -> None:
    lifecycle.check_transition("run", run.run_id, str(run.status), new_status)


def _performance_points(results: ResultsIn, default_time: datetime) -> dict[str, list[Any]]:
    # A run's performance_metrics as metric points, column by column.
    points = [
        (name, float(value), device)
        for device, values in (results.performance_metrics or {}).items()
        for name, value in values.items()
    ]
    return {
        "metric_name": [name for name, _, _ in points],
        "metric_value": [value for _, value, _ in points],
        "metric_unit": [metric_unit(name) for name, _, _ in points],
        "hardware": [device for _, _, device in points],
        "timestamp": [default_time] * len(points),
    }


def _run_time(run: Mapping[str, Any]) -> datetime:
    # Points sent without a timestamp belong to the run, not to the request that carried
    # them: re-posting the same document stores the same points.
    return run.get("completed_at") or run.get("started_at") or utcnow()


def _step_values(step: StepIn) -> dict[str, Any]:
    # Every caller (routes, runner, recording documents) gets the same step rules.
    values = step.model_dump(exclude={"step_name"})
    duration = values["duration"]
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise Unprocessable("step duration must be a finite number >= 0", code="invalid_step")
    _check_order("step", values["started_at"], values["completed_at"])
    if duration is None:
        values["duration"] = lifecycle.seconds(values["started_at"], values["completed_at"])
    return values


def _store_results(
    session: Session, run_id: str, results: ResultsIn, *, fresh: bool = False
) -> dict[str, int]:
    """Store a run's results and per-test outcomes; return the counts stored."""
    if results.test_details is not None:
        store.replace_cases(session, run_id, results.test_details.columns(), fresh=fresh)
        counts = results.test_details.counts()
    else:
        counts = {
            "tests_passed": results.tests_passed or 0,
            "tests_failed": results.tests_failed or 0,
            "tests_skipped": results.tests_skipped or 0,
        }
    data: dict[str, Any] = dict(results.model_extra or {})
    if results.performance_metrics is not None:
        data["performance_metrics"] = results.performance_metrics
    store.set_results(session, run_id, counts, data, fresh=fresh)
    return counts


def refresh_batches(session: Session, batch_ids: list[str]) -> None:
    """Derive each batch's status, timing and member count from its runs."""
    store.lock_batches(session, batch_ids)
    for batch_id in batch_ids:
        counts = store.member_counts(session, [batch_id]).get(batch_id, {})
        timing = store.member_timing(session, batch_id)
        fields = lifecycle.batch_fields(counts, timing, "run_count")
        store.set_batch_fields(session, batch_id, fields)


def _after_status_change(session: Session, run_id: str) -> None:
    refresh_batches(session, store.batch_ids_of(session, [run_id]).get(run_id, []))


# --- recording -------------------------------------------------------------------------------


def _new_run_defaults(fields: dict[str, Any]) -> None:
    if fields.get("started_at") is None:
        fields["started_at"] = lifecycle.implied_start(fields)
    lifecycle.new_record_defaults(fields)


def _times(run: Run | None) -> dict[str, Any]:
    """Return a stored run's times (none for a new run), as `_timing_fields` takes them."""
    if run is None:
        return {}
    return {"started_at": run.started_at, "completed_at": run.completed_at}


def _timing_fields(fields: dict[str, Any], current: Mapping[str, Any]) -> None:
    # Check the resulting times and derive the duration from them unless one was sent.
    started = fields["started_at"] if "started_at" in fields else current.get("started_at")
    completed = fields["completed_at"] if "completed_at" in fields else current.get("completed_at")
    _check_order("run", started, completed)
    times_sent = "started_at" in fields or "completed_at" in fields
    if fields.get("duration") is None and times_sent and completed is not None:
        fields["duration"] = lifecycle.seconds(started, completed)


@dataclass(frozen=True)
class Recorded:
    """What recording a run document wrote."""

    run_id: str
    summary: dict[str, Any] | None
    """A new run's summary as written (its row as inserted, counts, batch, outcome); None for
    a re-post, whose summary depends on rows this transaction did not write."""


def record_run(session: Session, doc: RunCreate) -> str:
    """Store a whole run document atomically; re-posting a run_id upserts what was sent."""
    return recorded_run(session, doc).run_id


def recorded_run(session: Session, doc: RunCreate) -> Recorded:
    """`record_run`, returning a new run's summary too (POST /runs' minimal answer)."""
    run_id = doc.run_id or new_id()
    nested = {"run_id", "results", "steps", "metrics", "tags", "artifacts", "batch_id"}
    fields = doc.model_dump(exclude_unset=True, exclude=nested)
    # Core, not the ORM: its load and unit of work were half the writer's time per new run.
    existing = store.known_run(session, run_id)
    if existing is None:
        _new_run_defaults(fields)
    else:
        # A re-post replaces rows an earlier write of this group may still hold back.
        flush_combined(session)
        lifecycle.check_transition("run", run_id, str(existing["status"]), fields.get("status"))
    _timing_fields(fields, existing or {})
    # Only a change of status closes the run: re-posting a finished run changes nothing.
    if "status" in fields and (
        existing is None or str(existing["status"]) != str(fields["status"])
    ):
        started_at = existing["started_at"] if existing else fields.get("started_at")
        lifecycle.finish_fields(fields, started_at)
        _timing_fields(fields, existing or {})
    steps = [_step_values(s) | {"step_name": s.step_name} for s in doc.steps or []]
    # A new run has no child rows: each table gets one plain insert, no DELETE, no upsert.
    fresh = existing is None
    if existing is None:
        row = store.insert_run(session, {"run_id": run_id, **fields})
    else:
        store.update_run(session, run_id, fields)
        row = existing | fields
    counts = _store_children(session, run_id, row, doc, steps, fresh)
    if doc.batch_id is not None:
        flush_combined(session)  # the batch's refresh counts its members' run rows
        if store.get_batch(session, doc.batch_id) is None:
            store.add_batch(session, {"batch_id": doc.batch_id, "status": "initializing"})
        store.link(session, [run_id], doc.batch_id, fresh=fresh)
    if fresh:  # its only batch is the one it names (links need an existing run)
        refresh_batches(session, [doc.batch_id] if doc.batch_id else [])
    else:
        _after_status_change(session, run_id)
    if not fresh:
        return Recorded(run_id, None)
    passed, failed = (counts or {}).get("tests_passed"), (counts or {}).get("tests_failed")
    return Recorded(
        run_id,
        row
        | {
            "batch_ids": [doc.batch_id] if doc.batch_id else [],
            "tests_passed": passed,
            "tests_failed": failed,
            "tests_skipped": (counts or {}).get("tests_skipped"),
            "outcome": store.outcome(str(row["status"]), passed, failed),
        },
    )


def _store_children(
    session: Session,
    run_id: str,
    run: Mapping[str, Any],
    doc: RunCreate,
    steps: list[dict[str, Any]],
    fresh: bool,
) -> dict[str, int] | None:
    """Store a run document's collections; return the counts of its results (None without)."""
    counts = None
    if doc.results is not None:
        counts = _store_results(session, run_id, doc.results, fresh=fresh)
    if doc.steps is not None:
        store.replace_steps(session, run_id, steps, fresh=fresh)
    at = _run_time(run)
    perf = _performance_points(doc.results, at) if doc.results else {}
    if doc.metrics is not None:
        points = lifecycle.metric_columns(doc.metrics, at)
        if perf.get("metric_name"):
            points = {name: [*column, *perf[name]] for name, column in points.items()}
        store.replace_metrics(session, run_id, points, fresh=fresh)
    elif perf.get("metric_name"):
        if fresh:  # a new run's "replace" is one insert (combinable, see replace_owned)
            store.replace_metrics(session, run_id, perf, fresh=True)
        else:
            store.replace_metric_points(session, run_id, perf)
    if doc.tags is not None:
        store.set_tags(session, run_id, doc.tags, replace=True, fresh=fresh)
    if doc.artifacts is not None:
        artifacts = [a.model_dump() for a in doc.artifacts]
        store.put_artifacts(session, run_id, artifacts, replace=True, fresh=fresh)
    return counts


def update_run(
    session: Session, run_id: str, upd: RunUpdate, *, summary: bool = False
) -> dict[str, Any]:
    """Change only the fields sent; a status change must be a valid transition.

    Returns the run's own fields as written (its row as this transaction read it, with the
    fields set). With `summary` (PATCH's minimal answer, no read after the commit) it is the
    run's summary instead: batch ids and counts too, read with the row, and read again after
    a change of status, which changes the outcome.
    """
    head = run_summary(session, run_id) if summary else require_row(session, run_id)
    fields = upd.model_dump(exclude_unset=True)
    lifecycle.check_transition("run", run_id, str(head["status"]), fields.get("status"))
    _timing_fields(fields, head)
    changed = "status" in fields and str(fields["status"]) != str(head["status"])
    if changed:
        lifecycle.finish_fields(fields, fields.get("started_at", head["started_at"]))
        _timing_fields(fields, head)
    store.update_run(session, run_id, fields)
    if {"status", "started_at", "completed_at"} & fields.keys():
        _after_status_change(session, run_id)
    if changed and summary:
        return run_summary(session, run_id)
    return head | lifecycle.stored_fields(fields)


def put_step(session: Session, run_id: str, step_name: str, step: StepIn) -> dict[str, Any]:
    """Create or update one step; a finished step gets its duration from its timestamps.

    Returns the step as stored: a PUT sends every field, so the row is what was written.
    """
    if not step_name or len(step_name) > 1024:
        raise Unprocessable("a step name has 1 to 1024 characters", code="invalid_step")
    values = _step_values(step)
    if not store.put_step(session, run_id, step_name, values):
        raise NotFound(f"run {run_id} not found")
    return lifecycle.stored_step(step_name, values)


def add_metrics(session: Session, run_id: str, metrics: Metrics) -> int:
    """Append metric points to a run (points without a timestamp are taken now)."""
    require_run(session, run_id)
    return store.append_metrics(session, run_id, lifecycle.metric_columns(metrics, utcnow()))


def put_tags(session: Session, run_id: str, tags: dict[str, str], merge: bool) -> None:
    """Set a run's tags (all of them, or merged into those it has)."""
    require_run(session, run_id)
    store.set_tags(session, run_id, tags, replace=not merge)


def add_artifacts(
    session: Session, run_id: str, artifacts: list[ArtifactIn]
) -> list[dict[str, Any]]:
    """Record artifacts of a run (a known path is updated, not duplicated); return the run's
    artifacts as this transaction stored them."""
    require_run(session, run_id)
    store.put_artifacts(session, run_id, [a.model_dump() for a in artifacts], replace=False)
    return store.artifact_rows(session, run_id)


def put_results(session: Session, run_id: str, results: ResultsIn) -> None:
    """Replace a run's results; per-device metrics replace the same (metric, device) points."""
    run = require_run(session, run_id)
    _store_results(session, run_id, results)
    points = _performance_points(results, _run_time(_times(run)))
    if points["metric_name"]:
        store.replace_metric_points(session, run_id, points)


def add_cases(session: Session, run_id: str, cases: CaseColumns) -> int:
    """Append per-test outcomes to a run (the runner and the pytest plugin send them live)."""
    require_run(session, run_id)
    return store.append_cases(session, run_id, cases.columns())


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
        settle_results(session, run_id)
    _check_order("run", run.started_at, body.completed_at)
    fields: dict[str, Any] = {
        "status": status,
        "completed_at": body.completed_at or lifecycle.end_time(run.started_at),
    }
    if body.error is not None:
        fields["error"] = body.error
    if status == "completed":
        fields["current_step"] = "completed"
    lifecycle.finish_fields(fields, run.started_at)
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


def delete_batch(session: Session, batch_id: str, delete_runs: bool) -> dict[str, int]:
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


def run_summary(session: Session, run_id: str) -> dict[str, Any]:
    """Return a run's own fields, batch ids and counts (no child rows), or raise 404."""
    return lifecycle.require(store.run_summary(session, run_id), f"run {run_id}")


def run_detail(session: Session, run_id: str) -> dict[str, Any]:
    """Return a run with every child row, or raise 404."""
    return lifecycle.require(store.run_detail(session, run_id), f"run {run_id}")


def batch_detail(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch, its counts by member status, and its member runs."""
    item = batch_of(session, batch_id)
    item["runs"] = store.member_runs(session, batch_id)
    return item


def batch_of(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch and its counts by member status (no members), or raise 404."""
    return batch_summary(session, [require_batch(session, batch_id)])[0]


def batch_summary(session: Session, batches: list[RunBatch]) -> list[dict[str, Any]]:
    """Return batches with their members counted by status."""
    ids = [b.batch_id for b in batches]
    counts = store.member_counts(session, ids)
    outcomes = store.member_outcomes(session, ids)
    rows = lifecycle.batch_rows(batches, counts, store.BATCH_FIELDS)
    for row in rows:
        row["outcomes"] = outcomes.get(row["batch_id"], {})
    return rows


def list_batches(
    session: Session, status: str | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of batches with member counts, and the total."""
    batches, total = store.list_batches(session, status, page)
    return batch_summary(session, batches), total


# --- export / import -------------------------------------------------------------------------


def export_groups(body: ExportIn) -> dict[str, bool]:
    """Return which table groups an export request includes."""
    return {
        "runs": body.include_runs,
        "cases": body.include_runs and body.include_cases,
        "steps": body.include_runs and body.include_steps,
        "metrics": body.include_runs and body.include_metrics,
        "batches": body.include_batches,
    }


def _check_imported(session: Session, tables: dict[str, list[dict[str, Any]]]) -> None:
    transfer.check_values(tables, RunStep.__tablename__, "status", {s.value for s in StepStatus})
    transfer.check_values(tables, RunCase.__tablename__, "status", {s.value for s in CaseStatus})
    transfer.check_devices(tables, Run.__tablename__)
    owned = (name for name in tables if name not in {Run.__tablename__, RunBatch.__tablename__})
    referenced = {row["run_id"] for name in owned for row in tables[name]}
    transfer.check_references(referenced, store.run_exists(session, sorted(referenced)), "runs")
    linked = {row["batch_id"] for row in tables.get(RunBatchLink.__tablename__, [])}
    transfer.check_references(linked, store.batch_exists(session, sorted(linked)), "batches")


EXCHANGE = Exchange(COMPONENT, TABLES, export_groups, _check_imported)
"""This component's export and import, as the shared routes in `app.core.db_routes` call them."""


# --- runner support --------------------------------------------------------------------------


def settle_results(session: Session, run_id: str) -> dict[str, int]:
    """Set a run's counts from its per-test outcomes, keeping its result data."""
    counts = store.case_counts(session, run_id)
    counts.pop("total")
    existing = store.get_results(session, run_id)
    store.set_results(session, run_id, counts, (existing.result_data if existing else None) or {})
    return counts


# --- reports (issue 10): SQL in reports.py, verdicts in verdicts.py ---------------------------

FLAKY_DEFAULT = ("flaky", "broken")
REGRESSION_DEFAULT = ("regression", "improvement", "changed", "insufficient_data")
NEWLY_FAILING_LIMIT = 1000
COMPARE_LIMIT = 1000


FIRST_PAGE = Page(100, 0)


def flaky_report(
    session: Session,
    scope: reports.ReportScope,
    *,
    min_runs: int,
    max_failed_fraction: float,
    last_runs: int | None,
    verdicts_wanted: Sequence[str],
    page: Page = FIRST_PAGE,
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of flaky-test rows of the verdicts asked (most hurtful first), and a count."""
    groups, total = reports.flaky_groups(
        session,
        scope,
        max_failed_fraction=max_failed_fraction,
        last_runs=last_runs,
        min_runs=min_runs,
        verdicts=sorted(set(verdicts_wanted or FLAKY_DEFAULT)),
        page=page,
    )
    return verdicts.flaky_rows(groups), total


REGRESSION_RANK = {"regression": 0, "improvement": 1, "changed": 2, "unchanged": 3}
# A window row's verdict when it is never tested for significance (reports.FEW / FLAT).
REST_VERDICTS = {reports.FEW: "insufficient_data", reports.FLAT: "unchanged"}


def regressions_report(
    session: Session,
    scope: reports.ReportScope,
    *,
    days: int,
    baseline_days: int,
    metric: str | None,
    min_samples: int,
    threshold: float,
    verdicts_wanted: Sequence[str] = (),
    page: Page = FIRST_PAGE,
) -> dict[str, Any]:
    """Return a page of per-series baseline vs recent medians with verdicts, and newly failing.

    Series are ordered regression, improvement, changed, unchanged, insufficient_data, the
    largest relative change first. Only series that moved past the threshold with enough
    samples reach Python (for Mann–Whitney and the change point); the others are classified,
    counted, ranked and paged in SQL.
    """
    now = utcnow()
    split = now - timedelta(days=days)
    start = split - timedelta(days=baseline_days)
    wanted = set(verdicts_wanted or REGRESSION_DEFAULT)
    rest_kinds = [k for k, v in REST_VERDICTS.items() if v in wanted]
    spec = reports.WindowSpec(metric, start, split, min_samples, threshold)
    windows = reports.regression_windows(
        session, scope, spec, rest_kinds=rest_kinds, offset=page.offset, limit=page.limit
    )
    judged = _judge_moved(session, scope, spec, windows.moved)
    counts = {v: 0 for v in (*REGRESSION_RANK, "insufficient_data")}
    for kind, n in windows.kind_counts.items():
        if kind in REST_VERDICTS:
            counts[REST_VERDICTS[kind]] += n
    for r in judged:
        counts[r["verdict"]] += 1
    judged = [r for r in judged if r["verdict"] in wanted]
    judged.sort(key=lambda r: (REGRESSION_RANK[r["verdict"]], -abs(r["relative_change"] or 0.0)))
    # The rest follow the moved ones: rest position p (1-based) is series number len(judged)+p.
    first = page.offset - len(judged)
    rest = sorted(
        (w for w in windows.rest if first < w["rest_pos"] <= first + page.limit),
        key=lambda w: int(w["rest_pos"]),
    )
    rest_rows = [
        verdicts.regression_row(_window(w), [], split, min_samples=min_samples, threshold=threshold)
        for w in rest
    ]
    rows = (judged[page.offset : page.offset + page.limit] + rest_rows)[: page.limit]
    failing = reports.newly_failing(session, scope, start, split, NEWLY_FAILING_LIMIT)
    return {
        "baseline_start": start,
        "recent_start": split,
        "generated_at": now,
        "series_total": sum(n for v, n in counts.items() if v in wanted),
        "verdict_counts": counts,
        "series": rows,
        "newly_failing": failing,
    }


def _judge_moved(
    session: Session,
    scope: reports.ReportScope,
    spec: reports.WindowSpec,
    moved: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Return the regression rows of the moved series, from their per-run values."""
    keys = [(w["model_name"], w["hardware"], w["metric"], w["unit"]) for w in moved]
    series: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in reports.regression_series(session, scope, spec.metric, spec.baseline_start, keys):
        series.setdefault(
            (row["model_name"], row["hardware"], row["metric"], row["unit"]), []
        ).append(row)
    groups = [
        (_window(w), series.get((w["model_name"], w["hardware"], w["metric"], w["unit"]), []))
        for w in moved
    ]
    return verdicts.regression_rows(
        groups, spec.split, min_samples=spec.min_samples, threshold=spec.threshold
    )


WINDOW_FIELDS = (
    "model_name",
    "hardware",
    "metric",
    "unit",
    "baseline_n",
    "recent_n",
    "baseline_median",
    "recent_median",
)


def _window(row: dict[str, Any]) -> dict[str, Any]:
    """Return a window row without the SQL's ranking columns."""
    return {k: row[k] for k in WINDOW_FIELDS}


def inside_results(settings: Settings, stored: str) -> Path | None:
    """Return a stored artifact path resolved, when it lies inside the results folder.

    The one rule of which artifacts may be downloaded (the download route and the run page).
    """
    results = settings.folder("results")
    try:
        path = Path(stored).expanduser()
        path = (path if path.is_absolute() else results / path).resolve()
    except (RuntimeError, ValueError, OSError):  # "~user" of no user, a NUL byte, a loop
        return None
    return path if path.is_relative_to(results) else None


def resolve_sides(session: Session, idents: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Return ("run"|"batch", run ids) for each run id or batch id, or raise 404.

    The run ids are looked up in one statement (a compare names two sides; a statement costs
    more than its rows here); only an id that is no run is looked up as a batch.
    """
    runs = store.run_exists(session, idents)
    sides: list[tuple[str, list[str]]] = []
    for ident in idents:
        if ident in runs:
            sides.append(("run", [ident]))
        elif store.get_batch(session, ident) is not None:
            sides.append(("batch", store.run_ids_of_batch(session, ident)))
        else:
            raise NotFound(f"no run or batch {ident}", code="not_found")
    return sides


def compare_report(
    session: Session, base: str, head: str, fail_on: str | None, threshold: float
) -> dict[str, Any]:
    """Compare two runs or batches test by test and metric by metric; gate with `fail_on`."""
    rules = verdicts.parse_fail_on(fail_on) if fail_on else None
    (base_kind, base_ids), (head_kind, head_ids) = resolve_sides(session, [base, head])
    counts = {name: 0 for name in COMPARE_CATEGORIES}
    tests: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    if base_ids or head_ids:
        found, tests = reports.compare_tests(session, base_ids, head_ids, COMPARE_LIMIT)
        counts.update(found)
        metrics = [
            verdicts.metric_delta(m, threshold)
            for m in reports.compare_metrics(session, base_ids, head_ids)
        ]
    by_category: dict[str, list[dict[str, Any]]] = {name: [] for name in COMPARE_CATEGORIES}
    for row in tests:
        by_category[row.pop("category")].append(row)
    return {
        "base": {"id": base, "kind": base_kind, "runs": len(base_ids)},
        "head": {"id": head, "kind": head_kind, "runs": len(head_ids)},
        "counts": counts,
        **{name: by_category[name] for name in COMPARE_CATEGORIES if name != "unchanged"},
        "truncated": len(tests) >= COMPARE_LIMIT,
        "metrics": metrics,
        "fail_on": fail_on,
        "verdict": verdicts.gate(rules, counts, metrics) if rules is not None else None,
    }


COMPARE_CATEGORIES = (
    "newly_failing",
    "newly_passing",
    "still_failing",
    "added",
    "missing",
    "unchanged",
)


RUN_TREND_ZERO = {
    "runs": 0,
    "outcome_passed": 0,
    "outcome_failed": 0,
    "outcome_no_tests": 0,
    "tests_passed": 0,
    "tests_failed": 0,
    "p50_duration": None,
    "p95_duration": None,
}


def trends_report(
    session: Session,
    scope: reports.ReportScope,
    bucket: str,
    metric: str | None,
    points: int,
    by_device: bool = False,
) -> list[dict[str, Any]]:
    """Return per time bucket: pass rate, runs by outcome, durations and a metric's p50/p95.

    With `by_device`, one series per device (each point has `hardware`; a run or a metric
    point without its own device counts for each of its run's devices), ordered by device
    then time, each downsampled to `points` on its own.
    """
    rows = reports.run_trend(session, scope, bucket, by_device)
    by_key = {(r.get("hardware"), r["bucket"]): r for r in rows}
    if metric:
        for m in reports.metric_trend(session, scope, bucket, metric, by_device):
            key = (m.get("hardware"), m["bucket"])
            if key not in by_key:  # points on a device (or in a bucket) without runs
                device = {"hardware": key[0]} if by_device else {}
                by_key[key] = {**device, "bucket": key[1], **RUN_TREND_ZERO}
            by_key[key].update(m)
    rows = [by_key[k] for k in sorted(by_key, key=lambda k: (k[0] or "", k[1]))]
    for r in rows:
        decided = r["tests_passed"] + r["tests_failed"]
        r["pass_rate"] = r["tests_passed"] / decided if decided else None
        for name in ("metric_n", "metric_p50", "metric_p95"):
            r.setdefault(name, None)
    extreme = "metric_p50" if metric else "pass_rate"
    series: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(r.get("hardware"), []).append(r)
    return [p for s in series.values() for p in downsample(s, points, extreme)]


# --- JUnit XML import ------------------------------------------------------------------------


def junit_documents(
    suites: list[tuple[str, Any]],
    *,
    model_name: str,
    hardware: list[str],
    tags: dict[str, str] | None = None,
    batch_id: str | None = None,
    run_id: str | None = None,
) -> list[tuple[RunCreate, CaseColumns]]:
    """Build one validated run document and its case rows per parsed JUnit suite."""
    from pydantic import ValidationError

    from app.components.test_suite.junit import JunitError

    if run_id is not None and len(suites) != 1:
        raise JunitError(f"run_id names one run, but the upload makes {len(suites)} runs")
    docs = []
    for source, suite in suites:
        at = suite.completed_at or suite.started_at
        # The reader already enforces CaseIn's bounds (ids <= 1,024 and errors <= 100,000
        # characters, finite durations >= 0, known statuses), so the cases go to the bulk
        # insert as columns: validating and dumping 100,000 CaseIn again cost 2.5 s.
        cases = CaseColumns(
            [c.name for c in suite.cases],
            [c.status for c in suite.cases],
            [c.duration_ms for c in suite.cases],
            [c.error for c in suite.cases],
            [None] * len(suite.cases),
        )
        body: dict[str, Any] = {
            "run_id": run_id,
            "model_name": model_name,
            "hardware": hardware,
            "test_type": "junit",
            "status": "completed",
            "creator": "junit-import",
            "started_at": suite.started_at,
            "completed_at": suite.completed_at,
            "duration": suite.duration,
            "result_file": source[:1024],
            "results": {
                **cases.counts(),
                "junit": {"source": source, "suite": suite.name, "properties": suite.properties},
            },
            "metrics": [
                {"name": name, "value": value, "timestamp": at}
                for name, value in suite.metrics.items()
            ],
            "tags": tags,
            "batch_id": batch_id,
        }
        try:
            docs.append((RunCreate.model_validate(body), cases))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise JunitError(f"{source}: {where}: {first['msg']}") from None
    return docs


def import_junit(session: Session, docs: list[tuple[RunCreate, CaseColumns]]) -> list[str]:
    """Record JUnit runs and their cases in the caller's transaction; return the run ids."""
    run_ids = []
    for doc, cases in docs:
        run_id = record_run(session, doc)
        store.replace_cases(session, run_id, cases.columns())
        run_ids.append(run_id)
    return run_ids
