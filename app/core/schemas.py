"""Request/response pieces both components share: ids, steps, metrics, tags, stats, exports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from app.core.columns import (
    NONE,
    RowColumns,
    column,
    devices,
    finite_floats,
    plain_rows,
    texts,
)
from app.core.statuses import StepStatus


def _aware(value: datetime | None) -> datetime | None:
    # Naive timestamps are taken as UTC; everything is stored and returned in UTC.
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def _no_epoch_numbers(value: object) -> object:
    # Pydantic would read a bare number as Unix time; the API takes ISO 8601 text only.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("timestamps are ISO 8601 strings, not numbers")
    return value


UTCTime = Annotated[datetime, BeforeValidator(_no_epoch_numbers), AfterValidator(_aware)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")]
Device = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LongName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Text = Annotated[str, StringConstraints(max_length=100_000)]


class Strict(BaseModel):
    """A request body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class StepIn(Strict):
    """A step's state, as sent."""

    status: StepStatus = StepStatus.completed
    progress: float = Field(0.0, ge=0.0, le=1.0)
    started_at: UTCTime | None = None
    completed_at: UTCTime | None = None
    duration: float | None = Field(None, ge=0, allow_inf_nan=False)
    error: Text | None = None


class NamedStepIn(StepIn):
    """A step inside a recording document."""

    step_name: LongName


class StepRead(BaseModel):
    """A stored step."""

    step_name: str
    status: str
    progress: float
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    error: str | None


class MetricIn(Strict):
    """One metric point."""

    name: Name
    value: float
    unit: Annotated[str, StringConstraints(max_length=32)] = ""
    hardware: Device | None = None
    timestamp: UTCTime | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("metric values must be finite numbers")
        return value


METRIC_FIELDS = ("name", "value", "unit", "hardware", "timestamp")
_METRIC_KEYS = frozenset(METRIC_FIELDS)
# MetricIn's bounds, restated for the column-wise pass (tests prove each boundary against it).
_NAME_MAX, _UNIT_MAX = 256, 32
# UTCTime's own parser for text: its before-validator only refuses numbers, so for strings
# UTCTime is this parse followed by `_aware`, the very functions MetricIn runs.
_TIMES = TypeAdapter(list[datetime])


def _times(values: list[Any]) -> list[datetime | None] | None:
    # The timestamps as MetricIn stores them, when each is None or text it parses; else None.
    kinds = set(map(type, values))
    if not kinds <= {str, NONE}:
        return None  # datetimes, numbers and the rest: MetricIn decides
    present = [v for v in values if v is not None] if NONE in kinds else values
    try:
        parsed = iter([_aware(t) for t in _TIMES.validate_python(present)])
    except (ValidationError, ValueError):
        return None
    if NONE not in kinds:
        return list(parsed)
    return [None if v is None else next(parsed) for v in values]


@dataclass(frozen=True, slots=True)
class MetricColumns(RowColumns):
    """Metric points, `list[MetricIn]` on the wire, held as one list per column.

    A plain list of points is checked column by column (app.core.columns) and kept as the
    columns the store inserts; any point the pass is not sure of (a wrong type, a broken bound,
    an unknown field, a value MetricIn would coerce, such as "1.5" or true, a timestamp that is
    not text) sends the whole list to MetricIn's own validation: what is accepted, the values
    stored and every 422 are MetricIn's.
    """

    ITEM: ClassVar[type[BaseModel]] = MetricIn
    FIELDS: ClassVar[tuple[str, ...]] = METRIC_FIELDS
    name: list[str]
    value: list[float]
    unit: list[str]
    hardware: list[str | None]
    timestamp: list[datetime | None]

    def stored(self, default_time: datetime) -> dict[str, list[Any]]:
        """Return the metric table's columns; points without a timestamp take `default_time`."""
        return {
            "metric_name": self.name,
            "metric_value": self.value,
            "metric_unit": self.unit,
            "hardware": self.hardware,
            "timestamp": [t or default_time for t in self.timestamp],
        }

    @classmethod
    def _fast(cls, rows: list[Any]) -> MetricColumns | None:
        # The column-wise pass: the columns when MetricIn surely accepts every point as it is.
        plain = plain_rows(rows, _METRIC_KEYS, ("name", "value"))
        if plain is None:
            return None
        sent, (name, value) = plain
        unit = column(rows, sent, "unit", "")
        hardware = column(rows, sent, "hardware")
        if not (
            texts(name, 1, _NAME_MAX, optional=False)
            and texts(unit, 0, _UNIT_MAX, optional=False)
            and devices(hardware)
        ):
            return None
        values = finite_floats(value, optional=False)
        if values is None:
            return None
        timestamp = _times(column(rows, sent, "timestamp"))
        if timestamp is None:
            return None
        return cls(name, values, unit, hardware, timestamp)


Metrics = MetricColumns | Sequence[MetricIn]
"""Metric points as a service takes them: a request's columns, or models built in code."""


class MetricRead(BaseModel):
    """A stored metric point."""

    name: str
    value: float
    unit: str
    hardware: str | None
    timestamp: datetime


Tags = dict[Name, Annotated[str, StringConstraints(max_length=1024)]]


class BatchCounts(BaseModel):
    """Members of a batch by status."""

    total: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


class DurationStats(BaseModel):
    """Duration figures over completed members, in seconds."""

    avg_duration: float | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    p50_duration: float | None = None
    p95_duration: float | None = None


class MetricStats(BaseModel):
    """One (model, hardware, metric, unit) series summarised."""

    model_name: str
    hardware: str | None
    metric_name: str
    metric_unit: str
    count: int
    avg: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None


class SearchIn(Strict):
    """A case-insensitive substring search."""

    query: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    limit: int = Field(100, ge=1, le=1000)


ExportFormat = Literal["json", "jsonl", "csv", "parquet"]


class ExportResult(BaseModel):
    """What an export wrote."""

    status: str = "success"
    path: str
    filename: str
    format: str
    bytes: int
    rows: dict[str, int]
    schema_revision: str | None
    schema_file: str | None = Field(
        None, description="jsonl/csv/parquet: the side file naming each column's type"
    )


class ImportResult(BaseModel):
    """What an import loaded."""

    status: str = "success"
    rows: dict[str, int]
    schema_revision: str | None


class Deleted(BaseModel):
    """The answer to a delete."""

    status: str = "success"
    message: str
    timestamp: datetime
    deleted: dict[str, int] = Field(default_factory=dict)


class FieldError(BaseModel):
    """One field FastAPI's validation refused (an item of a 422's `detail` list)."""

    model_config = ConfigDict(extra="allow")

    type: str
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """Every error answer: a sentence (or, for validation, the fields) and a stable code."""

    model_config = ConfigDict(extra="allow")  # some errors add fields (e.g. `limit`)

    detail: str | list[FieldError]
    code: str


Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "not found"}}
CONFLICT: Responses = {409: {"model": ErrorBody, "description": "conflicts with the current state"}}
BAD_REQUEST: Responses = {400: {"model": ErrorBody, "description": "not allowed"}}


class ExportBase(Strict):
    """POST /export: what to write, and where (a bare file name in the export folder)."""

    filename: str = Field(..., min_length=1, max_length=255)
    format: ExportFormat | None = None
    include_batches: bool = True
    include_metrics: bool = True
    include_steps: bool = True
    table: str | None = Field(None, description="jsonl/csv/parquet: the table to write")
    overwrite: bool = False


class ImportDocument(BaseModel):
    """POST /import: an export document exactly as `POST /export` with format json wrote it."""

    model_config = ConfigDict(extra="allow")

    format: str
    component: str
    schema_revision: str | None = None
    tables: dict[str, list[dict[str, Any]]]
