"""Single-table exports with the columns users group by (SQL only; the JSON document stays raw).

A jsonl, csv or parquet export of one table is read by pandas, polars or DuckDB on its own, so
each carries what a question about it needs without a join: runs their test counts, outcome and
batch ids; cases, metrics and steps the run's model (and cases the run's type and start time).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from app.components.test_suite.models import Run, RunBatchLink, RunCase, RunMetric
from app.components.test_suite.store import summary_select


def _columns(model: Any) -> list[Any]:
    return [c for c in model.__table__.columns if c.name != "id"]


def runs() -> Any:
    """Return every run with its test counts, outcome and batch ids (NULL when in none)."""
    batch_ids = (
        select(func.array_agg(aggregate_order_by(RunBatchLink.batch_id, RunBatchLink.batch_id)))
        .where(RunBatchLink.run_id == Run.run_id)
        .scalar_subquery()
    )
    return summary_select(batch_ids).order_by(Run.run_id)


def cases() -> Any:
    """Return every test case with its run's model, test type and start time."""
    return (
        select(
            *_columns(RunCase),
            Run.model_name,
            Run.test_type,
            Run.started_at.label("run_started_at"),
        )
        .outerjoin(Run, Run.run_id == RunCase.run_id)
        .order_by(RunCase.run_id, RunCase.position)
    )


def metrics() -> Any:
    """Return every metric point with its run's model and test type."""
    return (
        select(*_columns(RunMetric), Run.model_name, Run.test_type)
        .outerjoin(Run, Run.run_id == RunMetric.run_id)
        .order_by(RunMetric.run_id, RunMetric.timestamp, RunMetric.id)
    )
