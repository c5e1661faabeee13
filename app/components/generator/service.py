"""Generator lifecycle rules on top of the store: record, update, complete, batch, delete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.components.generator import store
from app.components.generator.models import Task, TaskBatch, TaskMetric, TaskStep, TaskTag
from app.components.generator.schemas import (
    BatchCreate,
    ExportIn,
    TaskComplete,
    TaskCreate,
    TaskUpdate,
)
from app.core import lifecycle, transfer
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.exchange import Exchange
from app.core.pagination import Page
from app.core.schemas import Metrics, StepIn
from app.core.statuses import TERMINAL, StepStatus
from app.core.transfer import TableSpec

COMPONENT = "generator"

# Steps and metrics are exported in the order they were stored (their surrogate `id`), so an
# import re-creates them in that order and a task reads back exactly as it did before.
TABLES = (
    TableSpec(Task, ("task_id",), "tasks", keys=("task_id",)),
    TableSpec(TaskStep, ("task_id", "id"), "steps", keys=("task_id", "step_name")),
    TableSpec(TaskMetric, ("task_id", "timestamp", "id"), "metrics", owner="task_id"),
    TableSpec(TaskTag, ("task_id", "tag_name"), "tasks", keys=("task_id", "tag_name")),
    TableSpec(TaskBatch, ("batch_id",), "batches", keys=("batch_id",)),
)


def new_id() -> str:
    """Return a fresh task or batch id."""
    return uuid.uuid4().hex


def require_task(session: Session, task_id: str) -> Task:
    """Return a task or raise 404."""
    return lifecycle.require(store.get_task(session, task_id), f"task {task_id}")


def require_batch(session: Session, batch_id: str) -> TaskBatch:
    """Return a batch or raise 404."""
    return lifecycle.require(store.get_batch(session, batch_id), f"batch {batch_id}")


def _check_transition(task: Task, new_status: str | None) -> None:
    lifecycle.check_transition("task", task.task_id, str(task.status), new_status)


def refresh_batches(session: Session, batch_ids: list[str]) -> None:
    """Derive each batch's status, timing and member count from its tasks."""
    store.lock_batches(session, batch_ids)
    for batch_id in batch_ids:
        counts = store.member_counts(session, [batch_id]).get(batch_id, {})
        timing = store.member_timing(session, batch_id)
        fields = lifecycle.batch_fields(counts, timing, "task_count")
        store.set_batch_fields(session, batch_id, fields)


def _batches_of(*tasks: Task | None) -> list[str]:
    return sorted({t.batch_id for t in tasks if t is not None and t.batch_id})


# --- recording -------------------------------------------------------------------------------


def _derive_timing(fields: dict[str, Any], task: Task | None, *, status_changed: bool) -> None:
    """Fill what a task's timestamps imply: the end of a terminal status, and the duration."""
    started = fields.get("started_at", task.started_at if task else None)
    completed = fields.get("completed_at", task.completed_at if task else None)
    sent_times = "started_at" in fields or "completed_at" in fields
    if sent_times and started and completed and completed < started:
        raise Unprocessable(
            f"completed_at {completed.isoformat()} is before started_at {started.isoformat()}",
            code="invalid_timestamps",
        )
    if status_changed:
        lifecycle.finish_fields(fields, started, completed)
    if fields.get("duration") is None and sent_times:
        fields["duration"] = lifecycle.seconds(started, fields.get("completed_at", completed))


def record_task(session: Session, doc: TaskCreate) -> str:
    """Store a whole task document atomically; re-posting a task_id upserts what was sent."""
    task_id = doc.task_id or new_id()
    fields = doc.model_dump(exclude_unset=True, exclude={"task_id", "steps", "metrics", "tags"})
    existing = store.get_task(session, task_id)
    old_batch = existing.batch_id if existing else None
    if existing is None:
        if "started_at" not in fields:
            fields["started_at"] = lifecycle.implied_start(fields)
        lifecycle.new_record_defaults(fields)
        fields.setdefault("task_type", "single")
        status_changed = True
    else:
        _check_transition(existing, fields.get("status"))
        status_changed = "status" in fields and str(fields["status"]) != str(existing.status)
    _derive_timing(fields, existing, status_changed=status_changed)
    batch_id = fields.get("batch_id")
    if batch_id and store.get_batch(session, batch_id) is None:
        store.add_batch(session, {"batch_id": batch_id, "status": "initializing"})
    if existing is None:
        task = store.add_task(session, {"task_id": task_id, **fields})
    else:
        task = existing
        store.set_task_fields(session, task, fields)
    if doc.steps is not None:
        store.replace_steps(session, task_id, [_step_values(s.model_dump()) for s in doc.steps])
    if doc.metrics is not None:
        # Points sent without a timestamp take the task's own time, so re-posting the same
        # document stores the same rows.
        default = task.completed_at or task.started_at
        store.replace_metrics(session, task_id, lifecycle.metric_columns(doc.metrics, default))
    if doc.tags is not None:
        store.set_tags(session, task_id, doc.tags, replace=True)
    refresh_batches(session, sorted({b for b in (old_batch, task.batch_id) if b}))
    return task_id


def update_task(session: Session, task_id: str, upd: TaskUpdate) -> dict[str, Any]:
    """Change only the fields sent; a status change must be a valid transition.

    Returns the task's summary as written (its row with the fields set).
    """
    task = require_task(session, task_id)
    fields = upd.model_dump(exclude_unset=True)
    _check_transition(task, fields.get("status"))
    status_changed = "status" in fields and str(fields["status"]) != str(task.status)
    _derive_timing(fields, task, status_changed=status_changed)
    store.set_task_fields(session, task, fields)
    # Status and timestamps of a member decide its batch's status and timing.
    refresh_batches(session, _batches_of(task))
    return store.summary_of(task)


def _step_values(values: dict[str, Any]) -> dict[str, Any]:
    started, completed = values.get("started_at"), values.get("completed_at")
    if started and completed and completed < started:
        raise Unprocessable(
            f"step {values.get('step_name', '')!r}: completed_at is before started_at",
            code="invalid_timestamps",
        )
    if values.get("duration") is None:
        values["duration"] = lifecycle.seconds(started, completed)
    return values


def put_step(session: Session, task_id: str, step_name: str, step: StepIn) -> dict[str, Any]:
    """Create or update one step; return it as stored (a PUT sends every field)."""
    values = _step_values(step.model_dump())
    if not store.put_step(session, task_id, step_name, values):
        raise NotFound(f"task {task_id} not found")
    return lifecycle.stored_step(step_name, values)


def add_metrics(session: Session, task_id: str, metrics: Metrics) -> int:
    """Append metric points to a task."""
    require_task(session, task_id)
    return store.append_metrics(session, task_id, lifecycle.metric_columns(metrics))


def put_tags(session: Session, task_id: str, tags: dict[str, str], merge: bool) -> None:
    """Set a task's tags (all of them, or merged into those it has)."""
    require_task(session, task_id)
    store.set_tags(session, task_id, tags, replace=not merge)


def complete_task(session: Session, task_id: str, body: TaskComplete) -> dict[str, Any]:
    """End a task with a terminal status and what it produced; return its summary as written."""
    task = require_task(session, task_id)
    status = body.status.value
    if status not in TERMINAL:
        raise Unprocessable(
            f"complete takes a terminal status (completed, error, cancelled), not {status}",
            code="invalid_status",
        )
    if str(task.status) == status:
        return store.summary_of(task)
    _check_transition(task, status)
    fields: dict[str, Any] = {"status": status}
    for key in ("error", "completed_at", "output_file", "architecture"):
        value = getattr(body, key)
        if value is not None:
            fields[key] = value
    if status == "completed":
        fields["current_step"] = "completed"
    _derive_timing(fields, task, status_changed=True)
    store.set_task_fields(session, task, fields)
    refresh_batches(session, _batches_of(task))
    return store.summary_of(task)


# --- batches ---------------------------------------------------------------------------------


def create_batch(session: Session, body: BatchCreate) -> str:
    """Create a batch, optionally with members; every member task must exist."""
    batch_id = body.batch_id or new_id()
    if store.get_batch(session, batch_id) is not None:
        raise Conflict(f"batch {batch_id} exists", code="batch_exists")
    task_ids = list(dict.fromkeys(body.task_ids or []))
    missing = sorted(set(task_ids) - store.existing_tasks(session, task_ids))
    if missing:
        raise NotFound(f"tasks not found: {', '.join(missing)}", extra={"missing": missing})
    previous = {
        t.batch_id for t in (store.get_task(session, i) for i in task_ids) if t and t.batch_id
    }
    store.add_batch(
        session,
        {
            "batch_id": batch_id,
            "description": body.description,
            "creator": body.creator,
            "status": "initializing",
            "task_count": len(task_ids),
        },
    )
    store.assign(session, task_ids, batch_id)
    refresh_batches(session, sorted(previous | {batch_id}))
    return batch_id


def add_to_batch(session: Session, batch_id: str, task_id: str) -> None:
    """Move a task into a batch (a task belongs to one batch at a time)."""
    require_batch(session, batch_id)
    task = require_task(session, task_id)
    previous = task.batch_id
    store.assign(session, [task_id], batch_id)
    session.expire(task)
    refresh_batches(session, sorted({b for b in (previous, batch_id) if b}))


# --- deletes ---------------------------------------------------------------------------------


def delete_task(session: Session, task_id: str) -> dict[str, int]:
    """Delete a task and all its rows; its batch's status follows."""
    task = require_task(session, task_id)
    batches = _batches_of(task)
    counts = store.delete_tasks(session, [task_id])
    refresh_batches(session, batches)
    return counts


def delete_batch(session: Session, batch_id: str, delete_tasks: bool) -> dict[str, int]:
    """Delete a batch, and its tasks too when asked (otherwise they are only unlinked)."""
    require_batch(session, batch_id)
    counts: dict[str, int] = {}
    if delete_tasks:
        counts = store.delete_tasks(session, store.task_ids_of_batch(session, batch_id))
    counts.update(store.delete_batch(session, batch_id))
    return counts


# --- reads -----------------------------------------------------------------------------------


def task_summary(session: Session, task_id: str) -> dict[str, Any]:
    """Return a task's own fields (no child rows), or raise 404."""
    return store.summary_of(require_task(session, task_id))


def task_detail(session: Session, task_id: str) -> dict[str, Any]:
    """Return a task with its steps, metrics and tags, or raise 404."""
    return lifecycle.require(store.task_detail(session, task_id), f"task {task_id}")


def batch_summary(session: Session, batches: list[TaskBatch]) -> list[dict[str, Any]]:
    """Return batches with their members counted by status."""
    counts = store.member_counts(session, [b.batch_id for b in batches])
    return lifecycle.batch_rows(batches, counts, store.BATCH_FIELDS)


def batch_detail(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch, its counts by member status, and its member tasks."""
    item = batch_of(session, batch_id)
    item["tasks"] = store.member_tasks(session, batch_id)
    return item


def batch_of(session: Session, batch_id: str) -> dict[str, Any]:
    """Return a batch and its counts by member status (no members), or raise 404."""
    return batch_summary(session, [require_batch(session, batch_id)])[0]


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
        "tasks": body.include_tasks,
        "steps": body.include_tasks and body.include_steps,
        "metrics": body.include_tasks and body.include_metrics,
        "batches": body.include_batches,
    }


def _check_imported(session: Session, tables: dict[str, list[dict[str, Any]]]) -> None:
    transfer.check_values(tables, TaskStep.__tablename__, "status", {s.value for s in StepStatus})
    transfer.check_devices(tables, Task.__tablename__)
    children = (TaskStep.__tablename__, TaskMetric.__tablename__, TaskTag.__tablename__)
    referenced = {row["task_id"] for name in children for row in tables.get(name, [])}
    existing = store.existing_tasks(session, sorted(referenced))
    transfer.check_references(referenced, existing, "tasks")


EXCHANGE = Exchange(COMPONENT, TABLES, export_groups, _check_imported)
"""This component's export and import, as the shared routes in `app.core.db_routes` call them."""
