"""Generator: task leases (which server process executes a task, and its heartbeat).

Revision ID: gen_0002
Revises: gen_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gen_0002"
down_revision: str | None = "gen_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `generator_task_leases` (no rows: tasks queued before this revision have no lease)."""
    op.create_table(
        "generator_task_leases",
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop `generator_task_leases`."""
    op.drop_table("generator_task_leases")
