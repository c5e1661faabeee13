"""Generator request and response models (the task document of SPEC §3, and reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from app.core.schemas import (
    BatchCounts,
    Device,
    DurationStats,
    ExportBase,
    Identifier,
    MetricIn,
    MetricRead,
    MetricStats,
    Name,
    NamedStepIn,
    StepRead,
    Strict,
    Tags,
    Text,
    UTCTime,
)
from app.core.statuses import BatchStatus, TaskStatus


class TaskFields(Strict):
    """A task's own fields, all optional (PATCH applies only those sent)."""

    model_name: Name | None = None
    hardware: list[Device] | None = Field(None, max_length=16)
    status: TaskStatus | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    current_step: str | None = Field(None, max_length=512)
    template_type: str | None = Field(None, max_length=64)
    template_context: dict[str, Any] | None = None
    output_file: str | None = Field(None, max_length=1024)
    output_dir: str | None = Field(None, max_length=1024)
    started_at: UTCTime | None = None
    completed_at: UTCTime | None = None
    duration: float | None = Field(None, ge=0)
    error: Text | None = None
    architecture: str | None = Field(None, max_length=64)
    creator: str | None = Field(None, max_length=256)
    task_type: str | None = Field(None, max_length=32)


class TaskUpdate(TaskFields):
    """PATCH /task/{task_id}: only the fields sent change."""


class TaskCreate(TaskFields):
    """POST /tasks: a whole task with its steps, metrics and tags."""

    task_id: Identifier | None = None
    model_name: Name
    steps: list[NamedStepIn] | None = None
    metrics: list[MetricIn] | None = None
    tags: Tags | None = None
    batch_id: Identifier | None = None

    @model_validator(mode="after")
    def _unique_steps(self) -> TaskCreate:
        if self.steps and len({s.step_name for s in self.steps}) != len(self.steps):
            raise ValueError("step names must be unique within a task")
        return self


class TaskComplete(Strict):
    """POST /task/{task_id}/complete: end a task, with what it produced."""

    status: TaskStatus = TaskStatus.completed
    error: Text | None = None
    completed_at: UTCTime | None = None
    output_file: str | None = Field(None, max_length=1024)
    architecture: str | None = Field(None, max_length=64)


class TaskSummary(BaseModel):
    """A task's own fields (list rows)."""

    task_id: str
    model_name: str
    hardware: list[str]
    status: str
    progress: float
    current_step: str | None
    template_type: str | None
    template_context: dict[str, Any] | None
    output_file: str | None
    output_dir: str | None
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    error: str | None
    architecture: str | None
    creator: str | None
    task_type: str
    batch_id: str | None
    created_at: datetime


class TaskRead(TaskSummary):
    """A task in the shape of the recording document, plus stored fields."""

    steps: list[StepRead]
    metrics: list[MetricRead]
    tags: dict[str, str]


class BatchCreate(Strict):
    """POST /batches: a batch, optionally with its member tasks."""

    batch_id: Identifier | None = None
    description: str = Field("", max_length=1024)
    task_ids: list[Identifier] | None = None
    creator: str | None = Field(None, max_length=256)


class BatchSummary(BaseModel):
    """A batch's fields and its members counted by status."""

    batch_id: str
    description: str
    task_count: int
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    status: BatchStatus
    creator: str | None
    created_at: datetime
    counts: BatchCounts


class BatchTaskRow(BaseModel):
    """A member task of a batch."""

    task_id: str
    model_name: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    output_file: str | None
    architecture: str | None


class BatchRead(BatchSummary):
    """A batch with its member tasks."""

    tasks: list[BatchTaskRow]


class TaskCounts(DurationStats):
    """Tasks counted by outcome, and their durations."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    running_tasks: int
    cancelled_tasks: int
    latest_task: datetime | None


class ModelStats(TaskCounts):
    """One model's tasks summarised."""

    model_name: str


class HardwareStats(TaskCounts):
    """One device's tasks summarised (a task for two devices counts for both)."""

    hardware: str


class DailyStats(BaseModel):
    """One UTC day of tasks."""

    day: str
    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    avg_duration: float | None


class PerformanceReport(BaseModel):
    """Tasks over a time window: per day, per model, per device, latest, and metric series."""

    days: int
    model_name: str | None
    daily_stats: list[DailyStats]
    model_stats: list[ModelStats]
    hardware_stats: list[HardwareStats]
    latest_tasks: list[TaskSummary]
    performance_metrics: list[MetricStats]
    generated_at: datetime


class ExportIn(ExportBase):
    """POST /export for the Generator's tables."""

    include_tasks: bool = True
