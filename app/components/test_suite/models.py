"""Test Suite tables: runs, results, per-test cases, steps, metrics, tags, artifacts, batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Double, Integer, String, Text, UniqueConstraint, func
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
from app.core.statuses import RunStatus


class Base(DeclarativeBase):
    """Declarative base of the Test Suite's database (its own metadata, its own migrations)."""


class Run(Base):
    """One test run of a model's suite on one or more devices."""

    __tablename__ = "test_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))
    hardware: Mapped[list[str]] = mapped_column(HardwareList)
    test_type: Mapped[str | None] = mapped_column(String(32))
    timeout: Mapped[int | None] = mapped_column(Integer)
    save_results: Mapped[bool | None] = mapped_column(Boolean)
    status: Mapped[RunStatus] = status_column(RunStatus)
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(512))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    result_file: Mapped[str | None] = mapped_column(String(1024))
    creator: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class RunResult(Base):
    """A run's test counts and free-form result data (one row per run)."""

    __tablename__ = "test_run_results"

    id: Mapped[int] = sequence_id("test_run_results_id_seq")
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    tests_passed: Mapped[int] = mapped_column(Integer, default=0)
    tests_failed: Mapped[int] = mapped_column(Integer, default=0)
    tests_skipped: Mapped[int] = mapped_column(Integer, default=0)
    result_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class RunCase(Base):
    """One test's outcome in a run, queryable per test across runs."""

    __tablename__ = "test_run_cases"
    __table_args__ = (pg_index("test_run_cases", "run_id"),)

    id: Mapped[int] = sequence_id("test_run_cases_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    hardware: Mapped[str | None] = mapped_column(String(32))


class RunStep(StepColumns, Base):
    """A named step of a run (unique per run)."""

    __tablename__ = "test_run_steps"
    __table_args__ = (UniqueConstraint("run_id", "step_name", name="uq_test_run_steps_run_step"),)

    id: Mapped[int] = sequence_id("test_run_steps_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))


class RunMetric(MetricColumns, Base):
    """One point of a metric series of a run (append-only)."""

    __tablename__ = "test_run_metrics"
    __table_args__ = (pg_index("test_run_metrics", "run_id"),)

    id: Mapped[int] = sequence_id("test_run_metrics_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))


class RunTag(TagColumns, Base):
    """A name/value tag of a run (name unique per run)."""

    __tablename__ = "test_run_tags"
    __table_args__ = (UniqueConstraint("run_id", "tag_name", name="uq_test_run_tags_run_tag"),)

    id: Mapped[int] = sequence_id("test_run_tags_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))


class RunBatch(BatchColumns, Base):
    """A batch of runs; its status follows its members."""

    __tablename__ = "batch_test_runs"

    run_count: Mapped[int] = mapped_column(Integer, default=0)


class RunBatchLink(Base):
    """Membership of a run in a batch (unique pair)."""

    __tablename__ = "test_run_batch"
    __table_args__ = (
        UniqueConstraint("run_id", "batch_id", name="uq_test_run_batch_pair"),
        pg_index("test_run_batch", "batch_id"),
    )

    id: Mapped[int] = sequence_id("test_run_batch_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(String(64))


class RunArtifact(Base):
    """A file a run produced (path unique per run)."""

    __tablename__ = "test_run_artifacts"
    __table_args__ = (
        UniqueConstraint("run_id", "artifact_path", name="uq_test_run_artifacts_run_path"),
    )

    id: Mapped[int] = sequence_id("test_run_artifacts_id_seq")
    run_id: Mapped[str] = mapped_column(String(64))
    artifact_type: Mapped[str] = mapped_column(String(64))
    artifact_path: Mapped[str] = mapped_column(String(1024))
    description: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


CHILD_TABLES = (RunResult, RunCase, RunStep, RunMetric, RunTag, RunBatchLink, RunArtifact)


class RunLease(LeaseColumns, Base):
    """The server process executing a run (while it is queued or running) and its heartbeat."""

    __tablename__ = "test_run_leases"
