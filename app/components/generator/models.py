"""Generator tables: tasks, their steps, metrics and tags, and batches of tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Double, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.core.models import (
    BatchColumns,
    HardwareList,
    JSONType,
    LeaseColumns,
    MetricColumns,
    StepColumns,
    TagColumns,
    UTCDateTime,
    pg_index,
    sequence_id,
    status_column,
)
from app.core.statuses import TaskStatus


class Base(DeclarativeBase):
    """Declarative base of the Generator's database (its own metadata, its own migrations)."""


class Task(Base):
    """One generation task: render, check and write a model's test file."""

    __tablename__ = "generator_tasks"
    __table_args__ = (pg_index("generator_tasks", "batch_id"),)

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))
    hardware: Mapped[list[str]] = mapped_column(HardwareList)
    status: Mapped[TaskStatus] = status_column(TaskStatus)
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(512))
    template_type: Mapped[str | None] = mapped_column(String(64))
    template_context: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output_file: Mapped[str | None] = mapped_column(String(1024))
    output_dir: Mapped[str | None] = mapped_column(String(1024))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    architecture: Mapped[str | None] = mapped_column(String(64))
    creator: Mapped[str | None] = mapped_column(String(256))
    task_type: Mapped[str] = mapped_column(String(32), default="single")
    batch_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class TaskStep(StepColumns, Base):
    """A named step of a task (unique per task)."""

    __tablename__ = "generator_task_steps"
    __table_args__ = (
        UniqueConstraint("task_id", "step_name", name="uq_generator_task_steps_task_step"),
    )

    id: Mapped[int] = sequence_id("generator_task_steps_id_seq")
    task_id: Mapped[str] = mapped_column(String(64))


class TaskMetric(MetricColumns, Base):
    """One point of a metric series of a task (append-only)."""

    __tablename__ = "generator_task_metrics"
    __table_args__ = (pg_index("generator_task_metrics", "task_id"),)

    id: Mapped[int] = sequence_id("generator_task_metrics_id_seq")
    task_id: Mapped[str] = mapped_column(String(64))


class TaskTag(TagColumns, Base):
    """A name/value tag of a task (name unique per task)."""

    __tablename__ = "generator_task_tags"
    __table_args__ = (
        UniqueConstraint("task_id", "tag_name", name="uq_generator_task_tags_task_tag"),
    )

    id: Mapped[int] = sequence_id("generator_task_tags_id_seq")
    task_id: Mapped[str] = mapped_column(String(64))


class TaskBatch(BatchColumns, Base):
    """A batch of tasks; its status follows its members."""

    __tablename__ = "generator_batch_tasks"

    task_count: Mapped[int] = mapped_column(Integer, default=0)


CHILD_TABLES = (TaskStep, TaskMetric, TaskTag)


class TaskLease(LeaseColumns, Base):
    """The server process executing a task (while it is queued or running) and its heartbeat."""

    __tablename__ = "generator_task_leases"
