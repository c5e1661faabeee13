"""Test Suite: indexes on PostgreSQL only (cases and metrics by run, run links by batch).

DuckDB keeps no secondary index (migrations/NOTES.md); on PostgreSQL a run's or task's child
rows were read and deleted by a sequential scan of the whole table.

Revision ID: ts_0003
Revises: ts_0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "ts_0003"
down_revision: str | None = "ts_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("test_run_cases", "run_id"),
    ("test_run_metrics", "run_id"),
    ("test_run_batch", "batch_id"),
)


def upgrade() -> None:
    """Create the indexes (PostgreSQL only)."""
    if op.get_bind().dialect.name == "postgresql":
        for table, column in INDEXES:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    """Drop the indexes (PostgreSQL only)."""
    if op.get_bind().dialect.name == "postgresql":
        for table, column in INDEXES:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
