"""Column types and helpers every component's models share (portable DuckDB / PostgreSQL)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, Sequence, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

# JSON for free-form data; JSONB where PostgreSQL serves the same models.
JSONType: TypeEngine[Any] = JSON().with_variant(postgresql.JSONB(), "postgresql")
# A device list as a real array (VARCHAR[] on DuckDB, varchar[] on PostgreSQL), so per-device
# queries are plain SQL (`'cuda' = ANY(hardware)`, `unnest(hardware)`), not JSON text.
HardwareList: TypeEngine[Any] = postgresql.ARRAY(String(32))
UTCDateTime = DateTime(timezone=True)


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
