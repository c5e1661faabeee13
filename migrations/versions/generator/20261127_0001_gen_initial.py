"""Generator: initial schema (tasks, steps, metrics, tags, batches).

Revision ID: gen_0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gen_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON on DuckDB, JSONB on PostgreSQL (as app.core.models.JSONType).
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

SEQUENCES = (
    "generator_task_steps_id_seq",
    "generator_task_metrics_id_seq",
    "generator_task_tags_id_seq",
)


def _id(seq: str) -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger(), server_default=sa.text(f"nextval('{seq}')"), primary_key=True
    )


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    """Create the Generator tables and their sequences (no FOREIGN KEYs on DuckDB)."""
    for seq in SEQUENCES:
        op.execute(sa.schema.CreateSequence(sa.Sequence(seq)))
    op.create_table(
        "generator_tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("hardware", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("current_step", sa.String(512)),
        sa.Column("template_type", sa.String(64)),
        sa.Column("template_context", JSON_TYPE),
        sa.Column("output_file", sa.String(1024)),
        sa.Column("output_dir", sa.String(1024)),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.Column("architecture", sa.String(64)),
        sa.Column("creator", sa.String(256)),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(64)),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "generator_task_steps",
        _id("generator_task_steps_id_seq"),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("step_name", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.UniqueConstraint("task_id", "step_name", name="uq_generator_task_steps_task_step"),
    )
    op.create_table(
        "generator_task_metrics",
        _id("generator_task_metrics_id_seq"),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("metric_name", sa.String(256), nullable=False),
        sa.Column("metric_value", sa.Double(), nullable=False),
        sa.Column("metric_unit", sa.String(32), nullable=False),
        sa.Column("hardware", sa.String(32)),
        _ts("timestamp", server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "generator_task_tags",
        _id("generator_task_tags_id_seq"),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("tag_name", sa.String(256), nullable=False),
        sa.Column("tag_value", sa.String(1024), nullable=False),
        sa.UniqueConstraint("task_id", "tag_name", name="uq_generator_task_tags_task_tag"),
    )
    op.create_table(
        "generator_batch_tasks",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("task_count", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("duration", sa.Double()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("creator", sa.String(256)),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    """Drop the Generator tables and sequences."""
    for table in (
        "generator_batch_tasks",
        "generator_task_tags",
        "generator_task_metrics",
        "generator_task_steps",
        "generator_tasks",
    ):
        op.drop_table(table)
    for seq in SEQUENCES:
        op.execute(sa.schema.DropSequence(sa.Sequence(seq)))
