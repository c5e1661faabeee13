"""Test Suite execution API models: start runs and batches, follow them, list what can run."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from app.core.schemas import Device, Name, Strict, Tags

SuiteName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
"""A suite's name (`generated` is the built-in one; others come from APP_SUITES_FILE)."""
TIMEOUT_HELP = "seconds for the whole run (default: the suite's timeout, else 300)"


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
    suite: SuiteName = "generated"
    timeout: int | None = Field(None, ge=1, le=86_400, description=TIMEOUT_HELP)
    save_results: bool = True
    tags: Tags = Field(default_factory=dict)


class RunStarted(BaseModel):
    """The answer to POST /run."""

    run_id: str
    status: str
    message: str
    started_at: datetime | None
    test_file: str
    suite: str = "generated"


class BatchRequest(Strict):
    """POST /batch: one run per model."""

    model_names: list[Name] = Field(..., min_length=1, max_length=1000)
    hardware: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1, max_length=16)
    test_type: SuiteType = SuiteType.basic
    suite: SuiteName = "generated"
    timeout: int | None = Field(None, ge=1, le=86_400, description=TIMEOUT_HELP)
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
    """A model a suite can run (the generated suite: its module in the tests folder)."""

    model_name: str
    suite: str = "generated"
    test_file: str | None
    last_run_id: str | None
    last_status: str | None
    last_started_at: datetime | None


class SuiteTypeInfo(BaseModel):
    """A test type: its markers and the tests it selects."""

    name: str
    description: str
    markers: list[str]
    tests: list[str]


class SuiteRead(BaseModel):
    """A suite as configured by the operator (GET /suites, GET /suites/{name})."""

    name: str
    description: str
    builtin: bool
    root: str
    python: str
    paths: list[str]
    args: list[str]
    env: dict[str, str]
    model_args: list[str]
    device_args: list[str]
    timeout: int | None
    devices: list[str] | None = Field(description="devices it may use (null: any)")
    models: list[str] | None = Field(description="models it runs (null: any name)")


class ArtifactFile(BaseModel):
    """An artifact of a run and where to download it (when it is inside the results folder)."""

    artifact_id: int
    artifact_type: str
    artifact_path: str
    description: str
    created_at: datetime
    download_url: str | None


class HardwareRead(BaseModel):
    """A backend as a suite's interpreter sees it, and when it was checked."""

    name: str
    available: bool
    detail: str
    checked_at: datetime
    python: str
    suite: str
