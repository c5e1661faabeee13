"""Aggregate expressions both components' statistics use (portable SQL: FILTER, WITHIN GROUP)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, any_, func, literal, literal_column, select
from sqlalchemy.orm import DeclarativeBase, Session

from app.core.models import utcnow
from app.core.records import rows_of, table_of


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


@dataclass(frozen=True)
class Scope:
    """What statistics look at: a time window and optional narrowing (model, device)."""

    since: datetime | None = None
    model_name: str | None = None
    hardware: str | None = None


def scope_conditions(owner: type[DeclarativeBase], scope: Scope) -> list[ColumnElement[bool]]:
    """Return the WHERE terms of a scope over a table with started_at, model_name, hardware[]."""
    table = table_of(owner)
    conds: list[ColumnElement[bool]] = []
    if scope.since is not None:
        conds.append(table.c.started_at >= scope.since)
    if scope.model_name:
        conds.append(table.c.model_name == scope.model_name)
    if scope.hardware:
        conds.append(literal(scope.hardware) == any_(table.c.hardware))
    return conds


def metric_stats(
    session: Session,
    owner: type[DeclarativeBase],
    metrics: type[DeclarativeBase],
    key: str,
    conditions: Sequence[Any],
) -> list[dict[str, Any]]:
    """Return one row per (model, hardware, metric, unit) over the owners `conditions` keep.

    `owner` is the table with `model_name` (runs, tasks), `metrics` its metric points, and
    `key` the column they share (run_id, task_id).
    """
    o, m = table_of(owner), table_of(metrics)
    keys = (o.c.model_name, m.c.hardware, m.c.metric_name, m.c.metric_unit)
    query = (
        select(*keys, *series_columns(m.c.metric_value))
        .select_from(m)
        .join(o, o.c[key] == m.c[key])
        .where(*conditions)
        .group_by(*keys)
        .order_by(o.c.model_name, m.c.hardware.nulls_first(), m.c.metric_name, m.c.metric_unit)
    )
    return rows_of(session, query)


def window_start(days: int | None) -> datetime | None:
    """Return the start of a window of the last `days` × 24 h, or None for all time."""
    return None if days is None else utcnow() - timedelta(days=days)


def escape_like(text: str) -> str:
    """Return a LIKE pattern matching `text` anywhere, with % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def downsample(rows: Sequence[dict[str, Any]], points: int, key: str) -> list[dict[str, Any]]:
    """Return at most `points` rows, keeping each chunk's min and max of `key`, in order.

    The series is cut into ⌈points/2⌉ consecutive chunks; each keeps its rows with the
    smallest and largest `key` (rows whose key is null count as neither), so peaks survive.
    """
    n = len(rows)
    if n <= points:
        return list(rows)
    chunks = max(1, points // 2)
    size = math.ceil(n / chunks)
    out: list[dict[str, Any]] = []
    for start in range(0, n, size):
        chunk = rows[start : start + size]
        valued = [i for i, r in enumerate(chunk) if r.get(key) is not None]
        if not valued:
            out.append(chunk[0])
            continue
        lo = min(valued, key=lambda i: chunk[i][key])
        hi = max(valued, key=lambda i: chunk[i][key])
        out.extend(chunk[i] for i in sorted({lo, hi}))
    return out[:points]
