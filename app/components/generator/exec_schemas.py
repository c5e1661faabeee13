"""Generator execution API models: start tasks and batches, follow them, list templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.core.schemas import Device, Name, Strict, Tags


class GenerationOptions(Strict):
    """What every generation request shares: devices, where to write, and template options."""

    hardware: list[Device] = Field(
        default_factory=lambda: ["cpu"],
        min_length=1,
        max_length=16,
        description="devices the generated suite targets",
    )
    output_dir: str | None = Field(
        None,
        max_length=1024,
        description="folder inside the configured output folder (default: the folder itself)",
    )
    force: bool = Field(False, description="overwrite an existing test file")
    template_type: str | None = Field(
        None, max_length=64, description="family name or alias (default: from the model name)"
    )
    template_context: dict[str, Any] | None = Field(
        None, description="template options: batch_size, sequence_length, repeats"
    )
    task: str | None = Field(
        None, max_length=64, description="the model's task (e.g. fill-mask), kept as a tag"
    )
    fix_syntax: bool = Field(True, description="normalise the rendered source before checking")
    tags: Tags = Field(default_factory=dict)


class GenerateRequest(GenerationOptions):
    """POST /model: generate one model's test file."""

    model_name: Name


class GenerateStarted(BaseModel):
    """The answer to POST /model."""

    task_id: str
    status: str
    message: str
    started_at: datetime | None
    architecture: str
    output_file: str


class BatchGenerateRequest(GenerationOptions):
    """POST /batch: one task per model, grouped in a batch."""

    model_names: list[Name] = Field(..., min_length=1, max_length=1000)
    description: str = Field("", max_length=1024)

    @field_validator("model_names")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        # Two tasks for one model would race for the same file.
        if len(set(value)) != len(value):
            raise ValueError("model names must be unique within a batch")
        return value


class BatchGenerateStarted(BaseModel):
    """The answer to POST /batch."""

    batch_id: str
    task_ids: list[str]
    status: str
    message: str


class TaskStatusRead(BaseModel):
    """GET /status/{task_id}."""

    task_id: str
    model_name: str
    status: str
    progress: float
    current_step: str | None
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    elapsed_time: float | None
    output_file: str | None
    architecture: str | None
    batch_id: str | None


class CancelResult(BaseModel):
    """The answer to POST /cancel/{task_id}."""

    task_id: str
    cancelled: bool
    status: str
    message: str


class TemplateInfo(BaseModel):
    """An architecture family: its template, example model, classes and supported hardware."""

    name: str
    alias: str
    description: str
    template: str
    example_model: str
    model_type: str
    config_class: str
    model_class: str
    auto_class: str
    hardware: list[str]
