"""Test Suite request and response models (the recording document of SPEC §3, and reads)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from app.core.columns import (
    RowColumns,
    column,
    devices,
    finite_floats,
    plain_rows,
    texts,
)
from app.core.schemas import (
    BatchCounts,
    Device,
    DurationStats,
    ExportFormat,
    Identifier,
    LongName,
    MetricColumns,
    MetricIn,
    MetricRead,
    MetricStats,
    Name,
    SearchIn,
    StepIn,
    StepRead,
    Strict,
    Tags,
    Text,
    UTCTime,
)
from app.core.statuses import TERMINAL, BatchStatus, RunStatus


class CaseStatus(StrEnum):
    """Outcome of one test, as pytest names it."""

    passed = "passed"
    failed = "failed"
    error = "error"
    skipped = "skipped"
    xfailed = "xfailed"
    xpassed = "xpassed"


class RunOutcome(StrEnum):
    """A terminal run's verdict from its tests (SPEC: derived, never stored)."""

    passed = "passed"
    failed = "failed"
    no_tests = "no_tests"


# How per-test outcomes count: errors are failures, expected failures are skips.
PASSED = (CaseStatus.passed.value, CaseStatus.xpassed.value)
FAILED = (CaseStatus.failed.value, CaseStatus.error.value)
SKIPPED = (CaseStatus.skipped.value, CaseStatus.xfailed.value)

INT32_MAX = 2**31 - 1
# Counters and timeouts are INTEGER columns; larger values are refused, not overflowed.
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
# JSON has no NaN or Infinity, and 1e400 parses as Infinity: refuse them at the edge.
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# Columns a run always has: they may be left out of a body, never sent as null.
NOT_NULL_RUN_FIELDS = ("model_name", "hardware", "status", "progress")


def _check_json(data: Any, where: str) -> None:
    # Free-form result data is stored as JSON: finite numbers, integers that fit in 64 bits.
    stack = [(data, where)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}: numbers must be finite")
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"{path}: integers must fit in 64 bits")
        elif isinstance(value, dict):
            stack.extend((item, f"{path}.{key}") for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))


class Body(Strict):
    """A request body: unknown fields are errors (lone surrogates are refused by the app)."""


MetricsBody = list[MetricIn]
TagsBody = Tags
SearchBody = SearchIn


def _check_order(started_at: datetime | None, completed_at: datetime | None) -> None:
    if started_at is not None and completed_at is not None and completed_at < started_at:
        raise ValueError("completed_at must not be earlier than started_at")


class CaseIn(Body):
    """One test's outcome."""

    name: LongName
    status: CaseStatus
    duration_ms: NonNegative | None = None
    error: Text | None = None
    hardware: Device | None = None


# --- per-test outcomes, column by column ----------------------------------------------------

CASE_FIELDS = ("name", "status", "duration_ms", "error", "hardware")
_CASE_KEYS = frozenset(CASE_FIELDS)
_STATUS_VALUES = frozenset(s.value for s in CaseStatus)
# CaseIn's bounds, restated for the column-wise pass (tests prove each boundary against CaseIn):
# LongName and Text (Device's: app.core.columns).
_NAME_MAX, _ERROR_MAX = 1024, 100_000


@dataclass(frozen=True, slots=True)
class CaseColumns(RowColumns):
    """Per-test outcomes, `list[CaseIn]` on the wire, held as one list per column.

    Validating and dumping one CaseIn per row cost ~40 % of recording a run of 10,000 tests, so
    a list of plain rows is checked column by column (`_fast`) and kept as the columns the store
    inserts. Any row the pass is not sure of (a wrong type, a broken bound, an unknown field, a
    value CaseIn would coerce, such as "1.5" or true for a duration) sends the whole list to
    CaseIn's own validation instead: what is accepted, the values stored and every 422 are
    CaseIn's. The schema stays `list[CaseIn]` (OpenAPI, serialization).
    """

    ITEM: ClassVar[type[BaseModel]] = CaseIn
    FIELDS: ClassVar[tuple[str, ...]] = CASE_FIELDS
    name: list[str]
    status: list[str]
    duration_ms: list[float | None]
    error: list[str | None]
    hardware: list[str | None]

    def models(self) -> list[CaseIn]:
        """Return the rows as CaseIn (built, not validated again: they were validated)."""
        return [
            CaseIn.model_construct(**{**row, "status": CaseStatus(row["status"])})
            for row in self.rows()
        ]

    def counts(self) -> dict[str, int]:
        """Return the run's counts: errors count as failures, expected failures as skips."""
        by_status = Counter(self.status)
        return {
            "tests_passed": sum(by_status[s] for s in PASSED),
            "tests_failed": sum(by_status[s] for s in FAILED),
            "tests_skipped": sum(by_status[s] for s in SKIPPED),
        }

    @classmethod
    def of(cls, cases: Iterable[CaseIn]) -> CaseColumns:
        """Return the columns of validated CaseIn models."""
        cases = list(cases)
        return cls(
            [c.name for c in cases],
            [c.status.value for c in cases],
            [c.duration_ms for c in cases],
            [c.error for c in cases],
            [c.hardware for c in cases],
        )

    @classmethod
    def _fast(cls, rows: list[Any]) -> CaseColumns | None:
        # The column-wise pass: the columns when CaseIn surely accepts every row as it is.
        plain = plain_rows(rows, _CASE_KEYS, ("name", "status"))
        if plain is None:
            return None
        sent, (name, status) = plain
        try:
            if not set(status) <= _STATUS_VALUES:
                return None
        except TypeError:  # an unhashable status
            return None
        duration = column(rows, sent, "duration_ms")
        error = column(rows, sent, "error")
        hardware = column(rows, sent, "hardware")
        if not (
            texts(name, 1, _NAME_MAX, optional=False)
            and texts(error, 0, _ERROR_MAX, optional=True)
            and devices(hardware)
        ):
            return None
        durations = finite_floats(duration, optional=True, low=0)
        if durations is None:
            return None
        return cls(name, status, durations, error, hardware)


class ResultsIn(BaseModel):
    """A run's results: counts, per-test details, per-device metrics, and free-form extras."""

    model_config = ConfigDict(extra="allow")

    tests_passed: Count | None = None
    tests_failed: Count | None = None
    tests_skipped: Count | None = None
    test_details: CaseColumns | None = None
    performance_metrics: dict[Device, dict[Name, Finite]] | None = None

    @model_validator(mode="after")
    def _finite_extras(self) -> ResultsIn:
        for key, value in (self.model_extra or {}).items():
            _check_json(value, key)
        return self


class ArtifactIn(Body):
    """A file a run produced."""

    artifact_type: Name
    artifact_path: LongName
    description: str = ""


class StepBody(StepIn):
    """PUT /run/{run_id}/steps/{step_name}: a step's state (finite duration, ordered times)."""

    duration: NonNegative | None = None

    @model_validator(mode="after")
    def _ordered(self) -> StepBody:
        _check_order(self.started_at, self.completed_at)
        return self


class RunStepIn(StepBody):
    """A step inside a recording document."""

    step_name: LongName


class RunFields(Body):
    """A run's own fields, all optional (PATCH applies only those sent)."""

    model_name: Name | None = None
    hardware: list[Device] | None = Field(None, min_length=1, max_length=16)
    test_type: str | None = Field(None, max_length=32)
    timeout: int | None = Field(None, ge=1, le=INT32_MAX)
    save_results: bool | None = None
    status: RunStatus | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    current_step: str | None = Field(None, max_length=512)
    started_at: UTCTime | None = None
    completed_at: UTCTime | None = None
    duration: NonNegative | None = None
    error: Text | None = None
    result_file: str | None = Field(None, max_length=1024)
    creator: str | None = Field(None, max_length=256)

    @field_validator("hardware")
    @classmethod
    def _distinct_devices(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("hardware must not name a device twice")
        return value

    @model_validator(mode="after")
    def _present_and_ordered(self) -> RunFields:
        for name in NOT_NULL_RUN_FIELDS:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may be left out but not null")
        _check_order(self.started_at, self.completed_at)
        return self


class RunUpdate(RunFields):
    """PATCH /run/{run_id}: only the fields sent change."""


class RunCreate(RunFields):
    """POST /runs: a whole run with its nested results, steps, metrics, tags and artifacts."""

    run_id: Identifier | None = None
    model_name: Name
    results: ResultsIn | None = None
    steps: list[RunStepIn] | None = None
    metrics: MetricColumns | None = None
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


class RunComplete(Body):
    """POST /run/{run_id}/complete: end a run; counts come from its cases when no results."""

    status: RunStatus = RunStatus.completed
    error: Text | None = None
    completed_at: UTCTime | None = None
    results: ResultsIn | None = None

    @field_validator("status")
    @classmethod
    def _terminal(cls, value: RunStatus) -> RunStatus:
        if value.value not in TERMINAL:
            raise ValueError(f"complete takes a terminal status ({', '.join(sorted(TERMINAL))})")
        return value


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
    test_details: list[CaseRead] = Field(default_factory=list)


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
    outcome: RunOutcome | None = Field(
        None,
        description="passed | failed (a test failed or errored, or the run ended in error or "
        "timeout) | no_tests (nothing ran or all skipped); null until the run is terminal",
    )


class RunRead(RunSummary):
    """A run in the shape of the recording document, plus stored fields."""

    results: ResultsRead | None
    steps: list[StepRead]
    metrics: list[MetricRead]
    tags: dict[str, str]
    artifacts: list[ArtifactRead]


class BatchCreate(Body):
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
    outcomes: dict[RunOutcome, int] = Field(
        default_factory=dict, description="terminal members counted by outcome"
    )


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
    outcome: RunOutcome | None = None


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
    outcome_passed: int = Field(0, description="terminal runs whose outcome is passed")
    outcome_failed: int = Field(0, description="terminal runs whose outcome is failed")
    outcome_no_tests: int = Field(0, description="terminal runs whose outcome is no_tests")


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


class ExportIn(Body):
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


# --- query filters (taken with `Annotated[RunFilter, Query()]`) --------------------------------


class RunFilter(BaseModel):
    """GET /db/runs: which runs to list (every filter optional, all must hold)."""

    status: list[RunStatus] = Field(default_factory=list)
    model_name: str | None = None
    test_type: str | None = None
    hardware: str | None = None
    batch_id: str | None = None
    tag: str | None = Field(None, description="name:value (or name)")
    since: datetime | None = None
    until: datetime | None = None
    outcome: list[RunOutcome] = Field(
        default_factory=list, description="passed, failed or no_tests (repeat for several)"
    )


class RecentRunFilter(BaseModel):
    """GET /api/test/runs: the execution API's short filter of runs."""

    status: list[RunStatus] = Field(default_factory=list)
    model_name: str | None = None
    since: datetime | None = None


class StatsFilter(BaseModel):
    """GET /models/stats and /hardware/stats: the window (days) and narrowing of statistics."""

    days: int | None = Field(None, ge=1, le=3650)
    model_name: str | None = None
    hardware: str | None = None
    test_type: str | None = None
