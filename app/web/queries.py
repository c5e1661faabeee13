"""Read-only dashboard queries the component stores do not have yet (matrix, bucketed series).

SQL only, no HTTP; they read the Test Suite's tables. When the report endpoints land in the
Test Suite's store, these move there and the page data calls switch to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, case, cast, desc, func, or_, select
from sqlalchemy.orm import Session

from app.components.test_suite.models import (
    Run,
    RunArtifact,
    RunCase,
    RunMetric,
    RunResult,
    RunStep,
)
from app.core.bulk import arg_max
from app.core.records import rows_of
from app.core.stats import escape_like, percentile

# A chart carries at most this many points per series: rows are averaged into time buckets.
MAX_POINTS = 120
FAILED_CASES = ("failed", "error")
PASSED_CASES = ("passed", "xpassed")


def _bucket_seconds(session: Session, column: Any, conds: list[Any]) -> int:
    span = session.execute(
        select(func.min(column), func.max(column)).where(column.is_not(None), *conds)
    ).one()
    if span[0] is None or span[1] is None:
        return 3600
    seconds = (span[1] - span[0]).total_seconds()
    return max(60, int(seconds // MAX_POINTS) + 1)


def _device_cases(run_ids: Any) -> Any:
    """Return per (run, device) counts of passed and failed per-test outcomes."""
    return (
        select(
            RunCase.run_id,
            RunCase.hardware,
            func.count().filter(RunCase.status.in_(PASSED_CASES)).label("passed"),
            func.count().filter(RunCase.status.in_(FAILED_CASES)).label("failed"),
        )
        .where(RunCase.run_id.in_(run_ids), RunCase.hardware.is_not(None))
        .group_by(RunCase.run_id, RunCase.hardware)
        .subquery("device_cases")
    )


def _bucket(column: Any, seconds: int) -> Any:
    epoch = cast(func.extract("epoch", column), Integer)
    return (epoch - epoch % seconds).label("bucket")


def matrix(
    session: Session, since: datetime | None, model_like: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Return the latest run per (model, device) for a page of models, the devices, the total."""
    conds: list[Any] = [Run.started_at.is_not(None)]
    if since is not None:
        conds.append(Run.started_at >= since)
    if model_like:
        conds.append(Run.model_name.ilike(escape_like(model_like), escape="\\"))
    models_q = select(Run.model_name).where(*conds).group_by(Run.model_name)
    total = session.scalar(select(func.count()).select_from(models_q.subquery())) or 0
    names = list(session.scalars(models_q.order_by(Run.model_name).limit(limit).offset(offset)))
    if not names:
        return [], [], int(total)
    per_device = (
        select(
            Run.run_id,
            Run.model_name,
            Run.status,
            Run.started_at,
            func.unnest(Run.hardware).label("device"),
        )
        .where(Run.model_name.in_(names), *conds)
        .subquery("per_device")
    )
    ranked = select(
        per_device,
        func.row_number()
        .over(
            partition_by=(per_device.c.model_name, per_device.c.device),
            order_by=(desc(per_device.c.started_at), desc(per_device.c.run_id)),
        )
        .label("rank"),
    ).subquery("ranked")
    query = (
        select(
            ranked.c.model_name,
            ranked.c.device,
            ranked.c.run_id,
            ranked.c.status,
            ranked.c.started_at,
        )
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.model_name, ranked.c.device)
    )
    cells = rows_of(session, query)
    # Counts of the (few) latest runs only, by id: cheaper than joining inside the window.
    run_ids = sorted({c["run_id"] for c in cells})
    totals = {
        r.run_id: (r.tests_passed, r.tests_failed)
        for r in session.execute(
            select(RunResult.run_id, RunResult.tests_passed, RunResult.tests_failed).where(
                RunResult.run_id.in_(run_ids)
            )
        )
    }
    cases = _device_cases(run_ids)
    by_device = {
        (r.run_id, r.hardware): (r.passed, r.failed) for r in session.execute(select(cases))
    }
    for cell in cells:
        # A device's pass rate counts that device's per-test outcomes; runs whose outcomes
        # carry no device fall back to the run's own counts.
        passed, failed = by_device.get(
            (cell["run_id"], cell["device"]), totals.get(cell["run_id"], (None, None))
        )
        cell["tests_passed"], cell["tests_failed"] = passed, failed
        decided = (passed or 0) + (failed or 0)
        cell["pass_rate"] = (passed or 0) / decided if decided else None
        cell["status"] = str(cell["status"])
    devices = sorted({c["device"] for c in cells})
    return cells, devices, int(total)


def run_series(
    session: Session, model_name: str, since: datetime | None, device: str | None
) -> list[dict[str, Any]]:
    """Return pass rate and p50/p95 duration per device per time bucket (≤ MAX_POINTS each)."""
    conds: list[Any] = [Run.model_name == model_name, Run.started_at.is_not(None)]
    if since is not None:
        conds.append(Run.started_at >= since)
    seconds = _bucket_seconds(session, Run.started_at, conds)
    per_device = (
        select(
            Run.run_id,
            Run.status,
            Run.duration,
            _bucket(Run.started_at, seconds),
            func.unnest(Run.hardware).label("device"),
        )
        .where(*conds)
        .subquery("per_device")
    )
    completed = per_device.c.status == "completed"
    cases = _device_cases(select(Run.run_id).where(*conds))
    # sum() of counts is NUMERIC on PostgreSQL (Decimal in Python): cast back to an integer.
    passed = func.coalesce(
        cast(func.sum(func.coalesce(cases.c.passed, RunResult.tests_passed)), BigInteger), 0
    )
    failed = func.coalesce(
        cast(func.sum(func.coalesce(cases.c.failed, RunResult.tests_failed)), BigInteger), 0
    )
    query = (
        select(
            per_device.c.device,
            per_device.c.bucket,
            func.count().label("runs"),
            passed.label("passed"),
            failed.label("failed"),
            percentile(per_device.c.duration, "0.5").filter(completed).label("p50"),
            percentile(per_device.c.duration, "0.95").filter(completed).label("p95"),
        )
        .select_from(per_device)
        .outerjoin(RunResult, RunResult.run_id == per_device.c.run_id)
        .outerjoin(
            cases,
            and_(cases.c.run_id == per_device.c.run_id, cases.c.hardware == per_device.c.device),
        )
        .group_by(per_device.c.device, per_device.c.bucket)
        .order_by(per_device.c.device, per_device.c.bucket)
    )
    if device:
        query = query.where(per_device.c.device == device)
    rows = rows_of(session, query)
    for row in rows:
        decided = row["passed"] + row["failed"]
        row["pass_rate"] = row["passed"] / decided if decided else None
    return rows


def metric_series(
    session: Session, model_name: str, since: datetime | None, device: str | None
) -> list[dict[str, Any]]:
    """Return each metric's average per device per time bucket (≤ MAX_POINTS each)."""
    conds: list[Any] = [Run.model_name == model_name]
    if since is not None:
        conds.append(RunMetric.timestamp >= since)
    if device:
        conds.append(RunMetric.hardware == device)
    span = session.execute(
        select(func.min(RunMetric.timestamp), func.max(RunMetric.timestamp))
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*conds)
    ).one()
    if span[0] is None:
        return []
    seconds = max(60, int((span[1] - span[0]).total_seconds() // MAX_POINTS) + 1)
    bucket = _bucket(RunMetric.timestamp, seconds)
    query = (
        select(
            RunMetric.metric_name,
            RunMetric.metric_unit,
            func.coalesce(RunMetric.hardware, "").label("device"),
            bucket,
            func.avg(RunMetric.metric_value).label("value"),
        )
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*conds)
        .group_by(RunMetric.metric_name, RunMetric.metric_unit, "device", "bucket")
        .order_by(RunMetric.metric_name, "device", "bucket")
    )
    return rows_of(session, query)


CASE_SORTS = {
    "position": (RunCase.position,),
    "name": (RunCase.name, RunCase.position),
    "status": (RunCase.status, RunCase.position),
    "duration": (desc(RunCase.duration_ms).nulls_last(), RunCase.position),
}


def run_cases(
    session: Session,
    run_id: str,
    *,
    text: str | None,
    status: str | None,
    sort: str,
    failures_first: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of a run's per-test outcomes, filtered and sorted, and the match count."""
    conds: list[Any] = [RunCase.run_id == run_id]
    if text:
        pattern = escape_like(text)
        conds.append(
            or_(
                RunCase.name.ilike(pattern, escape="\\"),
                RunCase.error.ilike(pattern, escape="\\"),
            )
        )
    if status:
        conds.append(RunCase.status == status)
    total = session.scalar(select(func.count()).select_from(RunCase).where(*conds)) or 0
    order: list[Any] = []
    if failures_first:
        order.append(case((RunCase.status.in_(FAILED_CASES), 0), else_=1))
    order.extend(CASE_SORTS[sort])
    query = (
        select(
            RunCase.position,
            RunCase.name,
            RunCase.status,
            RunCase.duration_ms,
            RunCase.error,
            RunCase.hardware,
        )
        .where(*conds)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )
    return rows_of(session, query), int(total)


def case_status_counts(session: Session, run_id: str) -> dict[str, int]:
    """Return a run's per-test outcomes counted by status."""
    query = (
        select(RunCase.status, func.count())
        .where(RunCase.run_id == run_id)
        .group_by(RunCase.status)
        .order_by(RunCase.status)
    )
    return {str(s): int(n) for s, n in session.execute(query)}


def run_steps(session: Session, run_id: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Return a run's first steps in recorded order, and how many there are."""
    total = session.scalar(select(func.count()).where(RunStep.run_id == run_id)) or 0
    query = (
        select(
            RunStep.step_name,
            RunStep.status,
            RunStep.progress,
            RunStep.started_at,
            RunStep.completed_at,
            RunStep.duration,
            RunStep.error,
        )
        .where(RunStep.run_id == run_id)
        .order_by(RunStep.started_at.nulls_last(), RunStep.id)
        .limit(limit)
    )
    return rows_of(session, query), int(total)


def run_metric_summary(session: Session, run_id: str) -> list[dict[str, Any]]:
    """Return one row per (metric, unit, device) of a run: count, avg, min, max, last."""
    last = (
        func.max(RunMetric.timestamp).label("last_at"),
        arg_max(RunMetric.metric_value, RunMetric.timestamp).label("last"),
    )
    query = (
        select(
            RunMetric.metric_name,
            RunMetric.metric_unit,
            RunMetric.hardware,
            func.count().label("count"),
            func.avg(RunMetric.metric_value).label("avg"),
            func.min(RunMetric.metric_value).label("min"),
            func.max(RunMetric.metric_value).label("max"),
            *last,
        )
        .where(RunMetric.run_id == run_id)
        .group_by(RunMetric.metric_name, RunMetric.metric_unit, RunMetric.hardware)
        .order_by(RunMetric.metric_name, RunMetric.hardware.nulls_first())
    )
    return rows_of(session, query)


def run_artifacts(session: Session, run_id: str, limit: int) -> list[dict[str, Any]]:
    """Return a run's artifacts in recorded order."""
    query = (
        select(
            RunArtifact.id,
            RunArtifact.artifact_type,
            RunArtifact.artifact_path,
            RunArtifact.description,
            RunArtifact.created_at,
        )
        .where(RunArtifact.run_id == run_id)
        .order_by(RunArtifact.id)
        .limit(limit)
    )
    return rows_of(session, query)


def models_with_runs(session: Session, model_name: str) -> bool:
    """Return whether any run of the model exists."""
    return bool(session.scalar(select(func.count()).where(Run.model_name == model_name)))


def model_devices(session: Session, model_name: str) -> list[str]:
    """Return the devices a model's runs used."""
    inner = (
        select(func.unnest(Run.hardware).label("device"))
        .where(and_(Run.model_name == model_name))
        .subquery()
    )
    return list(session.scalars(select(inner.c.device).distinct().order_by(inner.c.device)))
