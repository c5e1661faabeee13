"""Test Suite request and response models (the recording document of SPEC §3, and reads)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.schemas import (
    BatchCounts,
    Device,
    DurationStats,
    ExportFormat,
    Identifier,
    LongName,
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
from app.core.statuses import BatchStatus, RunStatus


class CaseStatus(StrEnum):
    """Outcome of one test, as pytest names it."""

    passed = "passed"
    failed = "failed"
    error = "error"
    skipped = "skipped"
    xfailed = "xfailed"
    xpassed = "xpassed"


# How per-test outcomes count: errors are failures, expected failures are skips.
PASSED = (CaseStatus.passed.value, CaseStatus.xpassed.value)
FAILED = (CaseStatus.failed.value, CaseStatus.error.value)
SKIPPED = (CaseStatus.skipped.value, CaseStatus.xfailed.value)


class CaseIn(Strict):
    """One test's outcome."""

    name: LongName
    status: CaseStatus
    duration_ms: float | None = Field(None, ge=0)
    error: Text | None = None
    hardware: Device | None = None


class ResultsIn(BaseModel):
    """A run's results: counts, per-test details, per-device metrics, and free-form extras."""

    model_config = ConfigDict(extra="allow")

    tests_passed: int | None = Field(None, ge=0)
    tests_failed: int | None = Field(None, ge=0)
    tests_skipped: int | None = Field(None, ge=0)
    test_details: list[CaseIn] | None = None
    performance_metrics: dict[Device, dict[Name, float]] | None = None


class ArtifactIn(Strict):
    """A file a run produced."""

    artifact_type: Name
    artifact_path: LongName
    description: str = ""


class RunFields(Strict):
    """A run's own fields, all optional (PATCH applies only those sent)."""

    model_name: Name | None = None
    hardware: list[Device] | None = Field(None, max_length=16)
    test_type: str | None = Field(None, max_length=32)
    timeout: int | None = Field(None, ge=1)
    save_results: bool | None = None
    status: RunStatus | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    current_step: str | None = Field(None, max_length=512)
    started_at: UTCTime | None = None
    completed_at: UTCTime | None = None
    duration: float | None = Field(None, ge=0)
    error: Text | None = None
    result_file: str | None = Field(None, max_length=1024)
    creator: str | None = Field(None, max_length=256)


class RunUpdate(RunFields):
    """PATCH /run/{run_id}: only the fields sent change."""


class RunCreate(RunFields):
    """POST /runs: a whole run with its nested results, steps, metrics, tags and artifacts."""

    run_id: Identifier | None = None
    model_name: Name
    results: ResultsIn | None = None
    steps: list[NamedStepIn] | None = None
    metrics: list[MetricIn] | None = None
    tags: Tags | None = None
    artifacts: list[ArtifactIn] | None = None
    batch_id: Identifier | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> RunCreate:
        if self.steps and len({s.step_name for s in self.steps}) != len(self.steps):
            raise ValueError("step names must be unique within a run")
        if self.artifacts and len({a.artifact_path for a in self.artifacts}) != len(self.artifacts):
            raise ValueError("artifact paths must be unique within a run")
        return self


class RunComplete(Strict):
    """POST /run/{run_id}/complete: end a run; counts come from its cases when no results."""

    status: RunStatus = RunStatus.completed
    error: Text | None = None
    completed_at: UTCTime | None = None
    results: ResultsIn | None = None


class CaseRead(BaseModel):
    """A stored per-test outcome."""

    name: str
    status: str
    duration_ms: float | None
    error: str | None
    hardware: str | None


class ResultsRead(BaseModel):
    """A run's results as stored."""

    model_config = ConfigDict(extra="allow")

    tests_passed: int
    tests_failed: int
    tests_skipped: int
    test_details: list[CaseRead] | None = None


class ArtifactRead(BaseModel):
    """A stored artifact."""

    artifact_type: str
    artifact_path: str
    description: str
    created_at: datetime


class RunSummary(BaseModel):
    """A run's own fields, its batches and its test counts (list rows)."""

    run_id: str
    model_name: str
    hardware: list[str]
    test_type: str | None
    timeout: int | None
    save_results: bool | None
    status: str
    progress: float
    current_step: str | None
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    error: str | None
    result_file: str | None
    creator: str | None
    created_at: datetime
    batch_ids: list[str]
    tests_passed: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None


class RunRead(RunSummary):
    """A run in the shape of the recording document, plus stored fields."""

    results: ResultsRead | None
    steps: list[StepRead]
    metrics: list[MetricRead]
    tags: dict[str, str]
    artifacts: list[ArtifactRead]


class BatchCreate(Strict):
    """POST /batches: a batch, optionally with its member runs."""

    batch_id: Identifier | None = None
    description: str = Field("", max_length=1024)
    run_ids: list[Identifier] | None = None
    creator: str | None = Field(None, max_length=256)


class BatchSummary(BaseModel):
    """A batch's fields and its members counted by status."""

    batch_id: str
    description: str
    run_count: int
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    status: BatchStatus
    creator: str | None
    created_at: datetime
    counts: BatchCounts


class BatchRunRow(BaseModel):
    """A member run of a batch."""

    run_id: str
    model_name: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    tests_passed: int | None
    tests_failed: int | None


class BatchRead(BatchSummary):
    """A batch with its member runs."""

    runs: list[BatchRunRow]


class RunCounts(DurationStats):
    """Runs counted by outcome, their tests summed, and their durations."""

    total_runs: int
    completed_runs: int
    failed_runs: int
    timeout_runs: int
    cancelled_runs: int
    tests_passed: int
    tests_failed: int
    tests_skipped: int
    pass_rate: float | None
    latest_run: datetime | None


class ModelStats(RunCounts):
    """One model's runs summarised."""

    model_name: str


class HardwareStats(RunCounts):
    """One device's runs summarised (a run on two devices counts for both)."""

    hardware: str


class DailyStats(BaseModel):
    """One UTC day of runs."""

    day: str
    total_runs: int
    completed_runs: int
    failed_runs: int
    avg_duration: float | None


class PerformanceReport(BaseModel):
    """Runs over a time window: per day, per model, per device, latest, and metric series."""

    days: int
    model_name: str | None
    daily_stats: list[DailyStats]
    model_stats: list[ModelStats]
    hardware_stats: list[HardwareStats]
    latest_runs: list[RunSummary]
    performance_metrics: list[MetricStats]
    generated_at: datetime


class ExportIn(Strict):
    """POST /export: what to write, and where (a bare file name in the export folder)."""

    filename: str = Field(..., min_length=1, max_length=255)
    format: ExportFormat | None = None
    include_runs: bool = True
    include_batches: bool = True
    include_metrics: bool = True
    include_steps: bool = True
    include_cases: bool = True
    table: str | None = Field(None, description="jsonl/csv/parquet: the table to write")
    overwrite: bool = False


class ImportDocument(BaseModel):
    """POST /import: an export document exactly as `POST /export` with format json wrote it."""

    model_config = ConfigDict(extra="allow")

    format: str
    component: str
    schema_revision: str | None = None
    tables: dict[str, list[dict[str, Any]]]
