"""Test Suite: initial schema (runs, results, cases, steps, metrics, tags, batches, artifacts).

Revision ID: ts_0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ts_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON on DuckDB, JSONB on PostgreSQL (as app.core.models.JSONType).
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Child tables get BIGINT ids from sequences; Alembic never generates sequences itself.
SEQUENCES = (
    "test_run_results_id_seq",
    "test_run_cases_id_seq",
    "test_run_steps_id_seq",
    "test_run_metrics_id_seq",
    "test_run_tags_id_seq",
    "test_run_batch_id_seq",
    "test_run_artifacts_id_seq",
)


def _id(seq: str) -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger(), server_default=sa.text(f"nextval('{seq}')"), primary_key=True
    )


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    """Create the Test Suite tables and their sequences (no FOREIGN KEYs on DuckDB)."""
    for seq in SEQUENCES:
        op.execute(sa.schema.CreateSequence(sa.Sequence(seq)))
    op.create_table(
        "test_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("hardware", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("test_type", sa.String(32)),
        sa.Column("timeout", sa.Integer()),
        sa.Column("save_results", sa.Boolean()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("current_step", sa.String(512)),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.Column("result_file", sa.String(1024)),
        sa.Column("creator", sa.String(256)),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "test_run_results",
        _id("test_run_results_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("tests_passed", sa.Integer(), nullable=False),
        sa.Column("tests_failed", sa.Integer(), nullable=False),
        sa.Column("tests_skipped", sa.Integer(), nullable=False),
        sa.Column("result_data", JSON_TYPE),
    )
    op.create_table(
        "test_run_cases",
        _id("test_run_cases_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_ms", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.Column("hardware", sa.String(32)),
    )
    op.create_table(
        "test_run_steps",
        _id("test_run_steps_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("step_name", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.UniqueConstraint("run_id", "step_name", name="uq_test_run_steps_run_step"),
    )
    op.create_table(
        "test_run_metrics",
        _id("test_run_metrics_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("metric_name", sa.String(256), nullable=False),
        sa.Column("metric_value", sa.Double(), nullable=False),
        sa.Column("metric_unit", sa.String(32), nullable=False),
        sa.Column("hardware", sa.String(32)),
        _ts("timestamp", server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "test_run_tags",
        _id("test_run_tags_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tag_name", sa.String(256), nullable=False),
        sa.Column("tag_value", sa.String(1024), nullable=False),
        sa.UniqueConstraint("run_id", "tag_name", name="uq_test_run_tags_run_tag"),
    )
    op.create_table(
        "batch_test_runs",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("creator", sa.String(256)),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "test_run_batch",
        _id("test_run_batch_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("run_id", "batch_id", name="uq_test_run_batch_pair"),
    )
    op.create_table(
        "test_run_artifacts",
        _id("test_run_artifacts_id_seq"),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("artifact_type", sa.String(64), nullable=False),
        sa.Column("artifact_path", sa.String(1024), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("run_id", "artifact_path", name="uq_test_run_artifacts_run_path"),
    )


def downgrade() -> None:
    """Drop the Test Suite tables and sequences."""
    for table in (
        "test_run_artifacts",
        "test_run_batch",
        "batch_test_runs",
        "test_run_tags",
        "test_run_metrics",
        "test_run_steps",
        "test_run_cases",
        "test_run_results",
        "test_runs",
    ):
        op.drop_table(table)
    for seq in SEQUENCES:
        op.execute(sa.schema.DropSequence(sa.Sequence(seq)))
