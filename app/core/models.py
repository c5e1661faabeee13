"""Column types and helpers every component's models share (portable DuckDB / PostgreSQL)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    Enum,
    Index,
    Sequence,
    String,
    Text,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from app.core.statuses import BatchStatus

# JSON for free-form data; JSONB where PostgreSQL serves the same models.
JSONType: TypeEngine[Any] = JSON().with_variant(postgresql.JSONB(), "postgresql")
# A device list as a real array (VARCHAR[] on DuckDB, varchar[] on PostgreSQL), so per-device
# queries are plain SQL (`'cuda' = ANY(hardware)`, `unnest(hardware)`), not JSON text.
HardwareList: TypeEngine[Any] = postgresql.ARRAY(String(32))
UTCDateTime = DateTime(timezone=True)


def pg_index(table: str, *columns: str) -> Index:
    """Return an index on PostgreSQL only, named `ix_<table>_<columns>`.

    DuckDB gets no secondary index (no gain for its scans, and they block ALTER TABLE:
    migrations/NOTES.md); PostgreSQL without them reads a run's cases and metrics by a
    sequential scan of the whole table (the PostgreSQL bench: `run/{id}` 314 ms, 28 ms with).
    """
    return Index(f"ix_{table}_{'_'.join(columns)}", *columns).ddl_if(dialect="postgresql")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def sequence_id(sequence_name: str) -> Mapped[int]:
    """Return a BIGINT primary key fed by a sequence (DuckDB has no SERIAL or IDENTITY)."""
    seq = Sequence(sequence_name)
    return mapped_column(BigInteger, seq, server_default=seq.next_value(), primary_key=True)


def status_column(enum_cls: type[enum.Enum], **kwargs: Any) -> Mapped[Any]:
    """Return a VARCHAR-backed enum column (DuckDB ENUM types cannot be extended later)."""
    return mapped_column(
        Enum(
            enum_cls,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
            create_constraint=False,
        ),
        **kwargs,
    )


# --- columns every component's tables share ------------------------------------------------
# A table class declares its `id` and its owner key (`run_id`, `task_id`) and inherits the rest
# from one of these: SQLAlchemy places a class's own columns before its mixins', so each table
# keeps the column order its hand-written migration created.


class StepColumns:
    """A named step of an owner row: status, progress and timing."""

    step_name: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)


class MetricColumns:
    """One point of a metric series of an owner row."""

    metric_name: Mapped[str] = mapped_column(String(256))
    metric_value: Mapped[float] = mapped_column(Double)
    metric_unit: Mapped[str] = mapped_column(String(32), default="")
    hardware: Mapped[str | None] = mapped_column(String(32))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class TagColumns:
    """A name/value tag of an owner row."""

    tag_name: Mapped[str] = mapped_column(String(256))
    tag_value: Mapped[str] = mapped_column(String(1024))


class BatchColumns:
    """A batch's own fields; the table adds its member count (`run_count`, `task_count`).

    `sort_order` keeps the migrations' order: batch_id, description, the count, the rest.
    """

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True, sort_order=-1)
    description: Mapped[str] = mapped_column(String(1024), default="", sort_order=-1)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, sort_order=1)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, sort_order=1)
    duration: Mapped[float | None] = mapped_column(Double, sort_order=1)
    status: Mapped[BatchStatus] = status_column(BatchStatus, sort_order=1)
    creator: Mapped[str | None] = mapped_column(String(256), sort_order=1)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.now(), sort_order=1
    )


class LeaseColumns:
    """Which server process executes a run or task, and when it last said it is alive.

    A row per job a runner holds (taken when queued, dropped when it ends); the owner refreshes
    `heartbeat_at` every few seconds. What a gone owner leaves (no heartbeat for
    APP_LEASE_TIMEOUT s, or its process no longer exists on this host) is ended as `error` by
    any other process of the same database (`app.core.leases`).
    """

    job_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
