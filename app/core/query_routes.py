"""The read-only SQL route every component serves: POST <prefix>/query (one builder, typed).

No `from __future__ import annotations` here on purpose: FastAPI reads the route's annotations
when the route is declared, and `Depends(database_of(component))` needs the builder's argument.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import MetaData

from app.core import sql_query
from app.core.db import Database
from app.core.deps import ReadAccess, WriteAccess, database_of


def query_router(
    component: str, prefix: str, tag: str, metadata: MetaData, title: str
) -> APIRouter:
    """Return a router with `POST {prefix}/query` over the tables of `metadata` only."""
    tables = frozenset(metadata.tables)
    router = APIRouter(prefix=prefix, tags=[tag], dependencies=[ReadAccess])

    doc = f"Run one read-only SELECT / WITH over the {title}'s tables (time and row limits)."

    @router.post("/query", dependencies=[WriteAccess], summary=doc.rstrip("."), description=doc)
    def query(
        body: sql_query.QueryIn,
        db: Annotated[Database, Depends(database_of(component))],
        format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
    ) -> Response:
        # Its docstring is `doc` above (summary and description): it names the component.
        return sql_query.respond(db, body, tables, format)

    return router
