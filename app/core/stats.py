"""Aggregate expressions both components' statistics use (portable SQL: FILTER, WITHIN GROUP)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column

from app.core.models import utcnow


def count_where(condition: ColumnElement[bool], label: str) -> ColumnElement[int]:
    """Return COUNT(*) FILTER (WHERE condition) AS label."""
    return func.count().filter(condition).label(label)


def percentile(column: Any, fraction: str) -> Any:
    """Return a continuous percentile (`percentile_cont(f) WITHIN GROUP (ORDER BY column)`)."""
    # A literal, not a bound float: DuckDB's overload resolution can fail on a DOUBLE parameter.
    return func.percentile_cont(literal_column(fraction)).within_group(column)


def duration_columns(duration: Any, completed: ColumnElement[bool]) -> list[Any]:
    """Return avg/min/max/p50/p95 of durations over completed rows, labelled as the API names."""
    return [
        func.avg(duration).filter(completed).label("avg_duration"),
        func.min(duration).filter(completed).label("min_duration"),
        func.max(duration).filter(completed).label("max_duration"),
        percentile(duration, "0.5").filter(completed).label("p50_duration"),
        percentile(duration, "0.95").filter(completed).label("p95_duration"),
    ]


def series_columns(value: Any) -> list[Any]:
    """Return count/avg/min/max/p50/p95 of a metric series."""
    return [
        func.count(value).label("count"),
        func.avg(value).label("avg"),
        func.min(value).label("min"),
        func.max(value).label("max"),
        percentile(value, "0.5").label("p50"),
        percentile(value, "0.95").label("p95"),
    ]


def window_start(days: int | None) -> datetime | None:
    """Return the start of a window of the last `days` × 24 h, or None for all time."""
    return None if days is None else utcnow() - timedelta(days=days)


def escape_like(text: str) -> str:
    """Return a LIKE pattern matching `text` anywhere, with % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
