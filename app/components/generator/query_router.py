"""Read-only SQL over the Generator's tables: POST /api/generator/db/query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.components.generator.models import Base
from app.core import sql_query
from app.core.db import Database
from app.core.deps import ReadAccess, WriteAccess, database_of

GeneratorDb = Annotated[Database, Depends(database_of("generator"))]
TABLES = frozenset(Base.metadata.tables)

router = APIRouter(prefix="/api/generator/db", tags=["generator-db"], dependencies=[ReadAccess])


@router.post("/query", dependencies=[WriteAccess])
def query(
    body: sql_query.QueryIn,
    db: GeneratorDb,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
) -> Response:
    """Run one read-only SELECT / WITH over the Generator's tables (time and row limits)."""
    return sql_query.respond(db, body, TABLES, format)
