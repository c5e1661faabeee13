"""HTTP route of the Generator trends (/api/generator/db/trends): parse → query → respond."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from app.components.generator import reports
from app.components.generator.service import COMPONENT
from app.core.db import Database
from app.core.deps import ReadAccess, database_of
from app.core.responses import rows_response
from app.core.stats import downsample, window_start

router = APIRouter(
    prefix="/api/generator/db", tags=["generator-reports"], dependencies=[ReadAccess]
)

GeneratorDb = Annotated[Database, Depends(database_of(COMPONENT))]
Short = Annotated[str, Field(min_length=1, max_length=256)]


class TaskTrendFilter(BaseModel):
    """GET /trends: which tasks, the bucket and a point cap (unknown parameters refused)."""

    model_config = ConfigDict(extra="forbid")

    bucket: Literal["hour", "day", "week"] = "day"
    days: int | None = Field(30, ge=1, le=3650, description="the last N days (default 30)")
    since: datetime | None = None
    until: datetime | None = None
    model_name: Short | None = None
    hardware: Short | None = None
    architecture: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    task_type: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    points: int = Field(1000, ge=2, le=10_000, description="at most this many points (2-10000)")


def _rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["success_rate"] = row["completed"] / row["finished"] if row["finished"] else None
    return rows


@router.get("/trends")
def task_trends(db: GeneratorDb, f: Annotated[TaskTrendFilter, Query()]) -> Response:
    """Return per time bucket and per architecture: tasks by status, success rate, durations."""
    since = f.since
    start = window_start(f.days)
    if start is not None and (since is None or start > since):
        since = start
    scope = reports.TaskScope(since, f.until, f.model_name, f.hardware, f.architecture, f.task_type)
    with db.reading() as session:
        points = _rates(reports.task_trend(session, scope, f.bucket))
        architectures = _rates(reports.by_architecture(session, scope))
    return rows_response(
        {
            "bucket": f.bucket,
            "points": downsample(points, f.points, "success_rate"),
            "architectures": architectures,
        }
    )
