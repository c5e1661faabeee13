"""Retention and backup of the Generator's tasks: POST /api/generator/db/retention and /backup."""

from __future__ import annotations

from app.components.generator.models import (
    CHILD_TABLES,
    Task,
    TaskBatch,
    TaskMetric,
    TaskStep,
    TaskTag,
)
from app.core.maintenance_routes import maintenance_router
from app.core.retention import RetentionSpec
from app.core.sweep import Watched, watch

SPEC = RetentionSpec(
    component="generator",
    owner=Task,
    key="task_id",
    children=CHILD_TABLES,
    tags=TaskTag,
    batches=TaskBatch,
    member_batch=Task.batch_id,
    member_owner=Task.task_id,
)

router = maintenance_router(SPEC, "/api/generator/db", "generator-db", "generator", "Generator")

STALE = watch(
    Watched(
        "generator",
        Task,
        Task.task_id,
        (
            (TaskStep, TaskStep.task_id, (TaskStep.started_at, TaskStep.completed_at)),
            (TaskMetric, TaskMetric.task_id, (TaskMetric.timestamp,)),
        ),
    )
)
"""What the stale-run sweep reads of a task: its row, steps and metrics."""
