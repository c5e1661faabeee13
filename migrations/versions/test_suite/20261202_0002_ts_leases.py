"""Test Suite: run leases (which server process executes a run, and its heartbeat).

Revision ID: ts_0002
Revises: ts_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ts_0002"
down_revision: str | None = "ts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `test_run_leases` (no rows: runs queued before this revision have no lease)."""
    op.create_table(
        "test_run_leases",
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop `test_run_leases`."""
    op.drop_table("test_run_leases")
