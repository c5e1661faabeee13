"""Generator request and response models (the task document of SPEC §3, and reads)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from app.core.schemas import (
    BatchCounts,
    Device,
    DurationStats,
    ExportBase,
    Identifier,
    MetricColumns,
    MetricRead,
    MetricStats,
    Name,
    NamedStepIn,
    StepIn,
    StepRead,
    Strict,
    Tags,
    Text,
    UTCTime,
)
from app.core.statuses import BatchStatus, TaskStatus

# Columns that are NOT NULL: sending them as null is a 422, not a failed INSERT (a 500).
NOT_NULL_FIELDS = ("model_name", "hardware", "status", "progress", "task_type")


def _finite_json(value: Any, where: str = "template_context") -> None:
    # Python's JSON parser accepts NaN/Infinity; stored, they would break the JSON export.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must hold finite numbers only")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _finite_json(item, f"{where}[{i}]")


class StepWrite(StepIn):
    """PUT /task/{task_id}/steps/{step_name}: one step's state (finite duration)."""

    # Overrides core's StepIn, which lets an infinite duration through.
    duration: float | None = Field(None, ge=0, allow_inf_nan=False)


class TaskStepIn(NamedStepIn):
    """A step inside a task document (finite duration)."""

    duration: float | None = Field(None, ge=0, allow_inf_nan=False)


class TaskFields(Strict):
    """A task's own fields, all optional (PATCH applies only those sent)."""

    model_name: Name | None = None
    hardware: list[Device] | None = Field(None, min_length=1, max_length=16)
    status: TaskStatus | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    current_step: str | None = Field(None, max_length=512)
    template_type: str | None = Field(None, max_length=64)
    template_context: dict[str, Any] | None = None
    output_file: str | None = Field(None, max_length=1024)
    output_dir: str | None = Field(None, max_length=1024)
    started_at: UTCTime | None = None
    completed_at: UTCTime | None = None
    duration: float | None = Field(None, ge=0, allow_inf_nan=False)
    error: Text | None = None
    architecture: str | None = Field(None, max_length=64)
    creator: str | None = Field(None, max_length=256)
    task_type: str | None = Field(None, min_length=1, max_length=32)

    @field_validator("hardware")
    @classmethod
    def _unique_devices(cls, value: list[str] | None) -> list[str] | None:
        # A device listed twice would count the task twice in the per-device statistics.
        if value is not None and len(set(value)) != len(value):
            raise ValueError("hardware devices must be unique")
        return value

    @field_validator("template_context")
    @classmethod
    def _finite_context(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _finite_json(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskFields:
        nulls = [
            n for n in NOT_NULL_FIELDS if n in self.model_fields_set and getattr(self, n) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} must not be null")
        if self.started_at and self.completed_at and self.completed_at < self.started_at:
            raise ValueError("completed_at must not be before started_at")
        return self


class TaskUpdate(TaskFields):
    """PATCH /task/{task_id}: only the fields sent change."""


class TaskCreate(TaskFields):
    """POST /tasks: a whole task with its steps, metrics and tags."""

    task_id: Identifier | None = None
    model_name: Name
    steps: list[TaskStepIn] | None = None
    metrics: MetricColumns | None = None
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


# --- query filters (taken with `Annotated[TaskFilter, Query()]`) -------------------------------


class TaskFilter(BaseModel):
    """GET /db/tasks: which tasks to list (every filter optional, all must hold)."""

    status: list[TaskStatus] = Field(default_factory=list)
    model_name: str | None = None
    batch_id: str | None = None
    hardware: str | None = None
    architecture: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class RecentTaskFilter(BaseModel):
    """GET /api/generator/tasks: the execution API's short filter of tasks."""

    status: list[TaskStatus] = Field(default_factory=list)
    model_name: str | None = None
    batch_id: str | None = None
    since: datetime | None = None


class StatsFilter(BaseModel):
    """GET /models/stats and /hardware/stats: the window (days) and narrowing of statistics."""

    days: int | None = Field(None, ge=1, le=3650)
    model_name: str | None = None
    hardware: str | None = None
