"""Generator report queries (task trends per time bucket and per architecture): SQL only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import any_, func, literal, literal_column, select
from sqlalchemy.orm import Session

from app.components.generator.models import Task
from app.core.records import rows_of
from app.core.stats import count_where, percentile

AT = func.coalesce(Task.started_at, Task.created_at)
BUCKETS = ("hour", "day", "week")


@dataclass(frozen=True)
class TaskScope:
    """Which tasks a trend looks at."""

    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    hardware: str | None = None
    architecture: str | None = None
    task_type: str | None = None


def _conditions(scope: TaskScope) -> list[Any]:
    conds: list[Any] = []
    if scope.since is not None:
        conds.append(scope.since <= AT)
    if scope.until is not None:
        conds.append(scope.until >= AT)
    if scope.model_name:
        conds.append(Task.model_name == scope.model_name)
    if scope.hardware:
        conds.append(literal(scope.hardware) == any_(Task.hardware))
    if scope.architecture:
        conds.append(Task.architecture == scope.architecture)
    if scope.task_type:
        conds.append(Task.task_type == scope.task_type)
    return conds


def _columns() -> list[Any]:
    completed = Task.status == "completed"
    return [
        func.count().label("tasks"),
        count_where(completed, "completed"),
        count_where(Task.status == "error", "failed"),
        count_where(Task.status == "cancelled", "cancelled"),
        count_where(Task.status.in_(["completed", "error", "cancelled"]), "finished"),
        percentile(Task.duration, "0.5").filter(completed).label("p50_duration"),
        percentile(Task.duration, "0.95").filter(completed).label("p95_duration"),
    ]


def task_trend(session: Session, scope: TaskScope, bucket: str) -> list[dict[str, Any]]:
    """Return per time bucket: tasks by status and completed tasks' duration p50/p95."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}")
    # The unit is one of BUCKETS, inlined: date_trunc wants a literal.
    start = func.date_trunc(literal_column(f"'{bucket}'"), AT)
    query = (
        select(start.label("bucket"), *_columns())
        .where(*_conditions(scope))
        .group_by(start)
        .order_by(start)
    )
    return rows_of(session, query)


def by_architecture(session: Session, scope: TaskScope) -> list[dict[str, Any]]:
    """Return per architecture over the scope: tasks by status and duration p50/p95."""
    query = (
        select(Task.architecture.label("architecture"), *_columns())
        .where(*_conditions(scope))
        .group_by(Task.architecture)
        .order_by(Task.architecture.nulls_last())
    )
    return rows_of(session, query)
