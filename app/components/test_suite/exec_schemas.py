"""Test Suite execution API models: start runs and batches, follow them, list what can run."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from app.core.schemas import Device, Name, Strict, Tags


class SuiteType(StrEnum):
    """Which tests a run selects, by marker."""

    basic = "basic"
    comprehensive = "comprehensive"
    fault_tolerance = "fault_tolerance"


class RunRequest(Strict):
    """POST /run: run a model's test module."""

    model_name: Name
    hardware: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1, max_length=16)
    test_type: SuiteType = SuiteType.basic
    timeout: int = Field(300, ge=1, le=86_400)
    save_results: bool = True
    tags: Tags = Field(default_factory=dict)


class RunStarted(BaseModel):
    """The answer to POST /run."""

    run_id: str
    status: str
    message: str
    started_at: datetime | None
    test_file: str


class BatchRequest(Strict):
    """POST /batch: one run per model."""

    model_names: list[Name] = Field(..., min_length=1, max_length=1000)
    hardware: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1, max_length=16)
    test_type: SuiteType = SuiteType.basic
    timeout: int = Field(300, ge=1, le=86_400)
    save_results: bool = True
    description: str = Field("", max_length=1024)
    tags: Tags = Field(default_factory=dict)


class BatchStarted(BaseModel):
    """The answer to POST /batch."""

    batch_id: str
    run_ids: list[str]
    status: str
    message: str


class RunStatusRead(BaseModel):
    """GET /status/{run_id}."""

    run_id: str
    model_name: str
    status: str
    progress: float
    current_step: str | None
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    elapsed_time: float | None
    estimated_remaining_time: float | None


class CancelResult(BaseModel):
    """The answer to POST /cancel/{run_id}."""

    run_id: str
    cancelled: bool
    status: str
    message: str


class ModelModule(BaseModel):
    """A model whose test module is in the tests folder, and its last run."""

    model_name: str
    test_file: str
    last_run_id: str | None
    last_status: str | None
    last_started_at: datetime | None


class SuiteTypeInfo(BaseModel):
    """A test type: its markers and the tests it selects."""

    name: str
    description: str
    markers: list[str]
    tests: list[str]
