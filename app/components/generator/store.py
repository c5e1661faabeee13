"""Generator database layer: every query and write of tasks and batches, no HTTP, no rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Date,
    String,
    any_,
    cast,
    delete,
    desc,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.components.generator.models import (
    CHILD_TABLES,
    Task,
    TaskBatch,
    TaskMetric,
    TaskStep,
    TaskTag,
)
from app.core import stats
from app.core.pagination import Page
from app.core.records import (
    Children,
    add_row,
    affected,
    delete_owned,
    existing_keys,
    lock_rows,
    page_by_status,
    rows_of,
    set_fields,
    update_by_key,
)
from app.core.stats import count_where, duration_columns, escape_like

TASK_FIELDS = [c.key for c in Task.__table__.columns]
BATCH_FIELDS = [c.key for c in TaskBatch.__table__.columns]
STEP_FIELDS = ("step_name", "status", "progress", "started_at", "completed_at", "duration", "error")


@dataclass(frozen=True)
class TaskFilter:
    """Filters of GET /tasks."""

    status: Sequence[str] = ()
    model_name: str | None = None
    batch_id: str | None = None
    hardware: str | None = None
    architecture: str | None = None
    since: datetime | None = None
    until: datetime | None = None


Scope = stats.Scope
"""What task statistics look at: a time window and optional narrowing (model, device)."""


# --- tasks -----------------------------------------------------------------------------------


def get_task(session: Session, task_id: str) -> Task | None:
    """Return a task row, or None."""
    return session.get(Task, task_id)


def add_task(session: Session, fields: dict[str, Any]) -> Task:
    """Insert a task row."""
    return add_row(session, Task, fields)


def set_task_fields(session: Session, task: Task, fields: dict[str, Any]) -> None:
    """Change some of a task's own fields."""
    set_fields(session, task, fields)


def existing_tasks(session: Session, task_ids: Sequence[str]) -> set[str]:
    """Return which of the given task ids exist."""
    return existing_keys(session, Task.task_id, task_ids)


CHILDREN = Children("task_id", Task, TaskStep, TaskMetric, TaskTag)
"""A task's steps, metric points and tags."""
replace_steps = CHILDREN.replace_steps
put_step = CHILDREN.put_step
get_step = CHILDREN.get_step
replace_metrics = CHILDREN.replace_metrics
append_metrics = CHILDREN.append_metrics
set_tags = CHILDREN.set_tags


# --- batches ---------------------------------------------------------------------------------


def get_batch(session: Session, batch_id: str) -> TaskBatch | None:
    """Return a batch row, or None."""
    return session.get(TaskBatch, batch_id)


def add_batch(session: Session, fields: dict[str, Any]) -> TaskBatch:
    """Insert a batch row."""
    return add_row(session, TaskBatch, fields)


def assign(session: Session, task_ids: Sequence[str], batch_id: str | None) -> None:
    """Make tasks members of a batch (a task belongs to one batch at a time)."""
    if task_ids:
        session.execute(
            update(Task).where(Task.task_id.in_(list(task_ids))).values(batch_id=batch_id)
        )


def member_tasks(session: Session, batch_id: str) -> list[dict[str, Any]]:
    """Return a batch's member tasks, oldest first."""
    query = (
        select(
            Task.task_id,
            Task.model_name,
            Task.status,
            Task.started_at,
            Task.completed_at,
            Task.duration,
            Task.output_file,
            Task.architecture,
        )
        .where(Task.batch_id == batch_id)
        .order_by(Task.started_at, Task.task_id)
    )
    return rows_of(session, query)


def member_counts(session: Session, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Return, per batch, its members counted by status."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if batch_ids:
        query = (
            select(Task.batch_id, cast(Task.status, String), func.count())
            .where(Task.batch_id.in_(list(batch_ids)))
            .group_by(Task.batch_id, Task.status)
        )
        for batch_id, status, n in session.execute(query):
            counts[str(batch_id)][str(status)] = int(n)
    return counts


def member_timing(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch's member count, earliest start and latest completion."""
    row = session.execute(
        select(
            func.count().label("members"),
            func.min(Task.started_at).label("started_at"),
            func.max(Task.completed_at).label("completed_at"),
        ).where(Task.batch_id == batch_id)
    ).one()
    return dict(row._mapping)


def lock_batches(session: Session, batch_ids: Sequence[str]) -> None:
    """Hold batch rows while their status is derived (PostgreSQL; see records.lock_rows)."""
    lock_rows(session, TaskBatch, "batch_id", batch_ids)


def set_batch_fields(session: Session, batch_id: str, fields: dict[str, Any]) -> None:
    """Change some of a batch's fields."""
    update_by_key(session, TaskBatch, "batch_id", batch_id, fields)


def list_batches(session: Session, status: str | None, page: Page) -> tuple[list[TaskBatch], int]:
    """Return a page of batches, newest first, and the total."""
    return page_by_status(session, TaskBatch, "batch_id", status, page)


def task_ids_of_batch(session: Session, batch_id: str) -> list[str]:
    """Return the ids of a batch's member tasks."""
    return list(session.scalars(select(Task.task_id).where(Task.batch_id == batch_id)))


# --- deletes ---------------------------------------------------------------------------------


def delete_tasks(session: Session, task_ids: Sequence[str]) -> dict[str, int]:
    """Delete tasks and every row that belongs to them (children first, no FKs to cascade)."""
    counts = delete_owned(session, CHILD_TABLES, "task_id", task_ids)
    counts.update(delete_owned(session, [Task], "task_id", task_ids))
    return counts


def delete_batch(session: Session, batch_id: str) -> dict[str, int]:
    """Delete a batch row, unlinking its tasks (not deleting them)."""
    unlinked = session.execute(update(Task).where(Task.batch_id == batch_id).values(batch_id=None))
    batch = session.execute(delete(TaskBatch).where(TaskBatch.batch_id == batch_id))
    return {
        "unlinked_tasks": affected(unlinked),
        TaskBatch.__tablename__: affected(batch),
    }


# --- reads -----------------------------------------------------------------------------------

NEWEST_FIRST = (desc(Task.started_at).nulls_last(), desc(Task.created_at), desc(Task.task_id))


def summary_of(task: Task) -> dict[str, Any]:
    """Return a task's own fields (its summary) from its row."""
    return {k: getattr(task, k) for k in TASK_FIELDS}


def _task_conditions(f: TaskFilter) -> list[Any]:
    conds: list[Any] = []
    if f.status:
        conds.append(Task.status.in_(list(f.status)))
    if f.model_name:
        conds.append(Task.model_name == f.model_name)
    if f.batch_id:
        conds.append(Task.batch_id == f.batch_id)
    if f.hardware:
        conds.append(literal(f.hardware) == any_(Task.hardware))
    if f.architecture:
        conds.append(Task.architecture == f.architecture)
    if f.since:
        conds.append(Task.started_at >= f.since)
    if f.until:
        conds.append(Task.started_at <= f.until)
    return conds


def list_tasks(session: Session, f: TaskFilter, page: Page) -> tuple[list[dict[str, Any]], int]:
    """Return a page of tasks, newest first, and the number of matches."""
    conds = _task_conditions(f)
    total = session.scalar(select(func.count()).select_from(Task).where(*conds)) or 0
    query = select(Task).where(*conds).order_by(*NEWEST_FIRST).limit(page.limit).offset(page.offset)
    return [summary_of(t) for t in session.scalars(query)], int(total)


def task_detail(session: Session, task_id: str) -> dict[str, Any] | None:
    """Return a task with its steps, metrics and tags."""
    task = get_task(session, task_id)
    if task is None:
        return None
    item = summary_of(task)
    steps = select(TaskStep).where(TaskStep.task_id == task_id)
    item["steps"] = [
        {k: getattr(s, k) for k in STEP_FIELDS}
        for s in session.scalars(steps.order_by(TaskStep.started_at.nulls_last(), TaskStep.id))
    ]
    metrics = select(TaskMetric).where(TaskMetric.task_id == task_id)
    item["metrics"] = [
        {
            "name": m.metric_name,
            "value": m.metric_value,
            "unit": m.metric_unit,
            "hardware": m.hardware,
            "timestamp": m.timestamp,
        }
        for m in session.scalars(metrics.order_by(TaskMetric.timestamp, TaskMetric.id))
    ]
    item["tags"] = CHILDREN.tags_of(session, task_id)
    return item


def search_tasks(session: Session, query_text: str, limit: int) -> list[dict[str, Any]]:
    """Return tasks whose id, model, hardware, status, architecture, template or tag match."""
    pattern = escape_like(query_text)

    def like(column: Any) -> Any:
        return column.ilike(pattern, escape="\\")

    cond = or_(
        like(Task.task_id),
        like(Task.model_name),
        like(func.array_to_string(Task.hardware, ",")),
        like(cast(Task.status, String)),
        like(Task.architecture),
        like(Task.template_type),
        exists().where(TaskTag.task_id == Task.task_id, like(TaskTag.tag_value)),
    )
    query = select(Task).where(cond).order_by(*NEWEST_FIRST).limit(limit)
    return [summary_of(t) for t in session.scalars(query)]


# --- statistics ------------------------------------------------------------------------------


def _scope_conditions(scope: Scope) -> list[Any]:
    return list(stats.scope_conditions(Task, scope))


def _stat_columns(source: Any = None) -> list[Any]:
    # `source` is a subquery with the task columns (per device), else the tasks table itself.
    status = source.c.status if source is not None else Task.status
    duration = source.c.duration if source is not None else Task.duration
    started_at = source.c.started_at if source is not None else Task.started_at
    completed = status == "completed"
    return [
        func.count().label("total_tasks"),
        count_where(completed, "completed_tasks"),
        count_where(status == "error", "failed_tasks"),
        count_where(status == "running", "running_tasks"),
        count_where(status == "cancelled", "cancelled_tasks"),
        *duration_columns(duration, completed),
        func.max(started_at).label("latest_task"),
    ]


def model_stats(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """Return one row of task statistics per model, most tasks first (one query)."""
    query = (
        select(Task.model_name, *_stat_columns())
        .where(*_scope_conditions(scope))
        .group_by(Task.model_name)
        .order_by(desc("total_tasks"), Task.model_name)
    )
    return rows_of(session, query)


def hardware_stats(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """Return one row of task statistics per device, most tasks first (one query)."""
    conds = _scope_conditions(Scope(scope.since, scope.model_name, None))
    # Filter the tasks first, then unnest their devices: DuckDB does not push a filter below
    # a lateral unnest join.
    per_device = (
        select(
            Task.status, Task.duration, Task.started_at, func.unnest(Task.hardware).label("device")
        )
        .where(*conds)
        .subquery("per_device")
    )
    query = (
        select(per_device.c.device.label("hardware"), *_stat_columns(per_device))
        .group_by(per_device.c.device)
        .order_by(desc("total_tasks"), per_device.c.device)
    )
    if scope.hardware:
        query = query.where(per_device.c.device == scope.hardware)
    return rows_of(session, query)


def daily_stats(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """Return one row per UTC day that has tasks in scope."""
    day = cast(Task.started_at, Date)
    query = (
        select(
            day.label("day"),
            func.count().label("total_tasks"),
            count_where(Task.status == "completed", "completed_tasks"),
            count_where(Task.status == "error", "failed_tasks"),
            func.avg(Task.duration).label("avg_duration"),
        )
        .where(Task.started_at.is_not(None), *_scope_conditions(scope))
        .group_by(day)
        .order_by(day)
    )
    return [{**row, "day": row["day"].isoformat()} for row in rows_of(session, query)]


def metric_stats(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """Return one row per (model, hardware, metric, unit) over tasks in scope."""
    return stats.metric_stats(session, Task, TaskMetric, "task_id", _scope_conditions(scope))


def latest_tasks(session: Session, scope: Scope, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest tasks in scope."""
    query = select(Task).where(*_scope_conditions(scope)).order_by(*NEWEST_FIRST).limit(limit)
    return [summary_of(t) for t in session.scalars(query)]


def totals(session: Session, model_name: str | None = None) -> dict[str, Any]:
    """Return task counts by status, models, devices and last activity (whole history).

    Narrowed to one model when `model_name` is given; every figure is an SQL aggregate.
    """
    conds = [Task.model_name == model_name] if model_name is not None else []
    by_status = {
        str(status): int(n)
        for status, n in session.execute(
            select(Task.status, func.count())
            .where(*conds)
            .group_by(Task.status)
            .order_by(Task.status)
        )
    }
    head = session.execute(
        select(
            func.count(func.distinct(Task.model_name)),
            func.max(Task.started_at),
            func.max(Task.completed_at),
            func.max(Task.created_at),
        ).where(*conds)
    ).one()
    devices = select(func.unnest(Task.hardware).label("device")).where(*conds).subquery("devices")
    device_count = session.scalar(select(func.count(func.distinct(devices.c.device)))) or 0
    moments = [m for m in head[1:] if m is not None]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "models": int(head[0] or 0),
        "devices": int(device_count),
        "last_activity": max(moments) if moments else None,
    }
