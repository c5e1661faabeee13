"""HTTP routes of the unified API (/api/db): one answer across the enabled components."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from app.core.db import Database
from app.core.deps import ContextDep, ReadAccess, RegistryDep
from app.core.responses import rows_response
from app.core.schemas import NOT_FOUND, SearchIn
from app.unified import service

router = APIRouter(prefix="/api/db", tags=["unified"], dependencies=[ReadAccess])

RECENT_LIMIT = 100
"""The most recent runs, tasks and regressions a model answer lists (`recent`, default 10)."""


def _databases(ctx: ContextDep, registry: RegistryDep) -> dict[str, Database]:
    return {comp.name: ctx.database(comp.name) for comp in registry}


@router.get("/overview")
def overview(ctx: ContextDep, registry: RegistryDep) -> Response:
    """Count each enabled component's runs or tasks by status, its models, devices and activity."""
    return rows_response(service.overview(_databases(ctx, registry)))


@router.get("/model/{model_name:path}", responses=NOT_FOUND)
def model(
    ctx: ContextDep,
    registry: RegistryDep,
    model_name: Annotated[
        str, Path(min_length=1, max_length=256, description="may contain '/' (org/model)")
    ],
    recent: Annotated[
        int, Query(ge=1, le=RECENT_LIMIT, description="recent runs/tasks/regressions (1-100)")
    ] = 10,
) -> Response:
    """Return a model's whole-history counts and rates, recent runs and tasks, regressions."""
    return rows_response(service.model(_databases(ctx, registry), model_name, recent))


@router.post("/search")
def search(
    ctx: ContextDep,
    registry: RegistryDep,
    query: Annotated[
        str | None, Query(min_length=1, max_length=256, description="text to find (1-256)")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="results per component (1-1000, def. 100)")
    ] = None,
    body: Annotated[SearchIn | None, Body(description="the same, as a JSON body")] = None,
) -> Response:
    """Search every enabled component (query string or JSON body), results labelled by it."""
    if body is not None:
        if query is not None or limit is not None:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", "query" if query is not None else "limit"),
                        "msg": "send the search either in the query string or as a body",
                        "input": query if query is not None else limit,
                    }
                ]
            )
        text, count = body.query, body.limit
    elif query is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("query", "query"), "msg": "Field required", "input": None}]
        )
    else:
        text, count = query, limit if limit is not None else 100
    return rows_response(service.search(_databases(ctx, registry), text, count))
