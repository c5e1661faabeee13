"""Read-only SQL over the Test Suite's tables: POST /api/test/db/query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.components.test_suite.models import Base
from app.core import sql_query
from app.core.db import Database
from app.core.deps import ReadAccess, WriteAccess, database_of

SuiteDb = Annotated[Database, Depends(database_of("test_suite"))]
TABLES = frozenset(Base.metadata.tables)

router = APIRouter(prefix="/api/test/db", tags=["test-db"], dependencies=[ReadAccess])


@router.post("/query", dependencies=[WriteAccess])
def query(
    body: sql_query.QueryIn,
    db: SuiteDb,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
) -> Response:
    """Run one read-only SELECT / WITH over the Test Suite's tables (time and row limits)."""
    return sql_query.respond(db, body, TABLES, format)
