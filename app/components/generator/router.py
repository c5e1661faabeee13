"""HTTP routes of the Generator database API (/api/generator/db)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.components.generator import schemas, service, store
from app.components.generator.schemas import (
    StepWrite,
    TaskComplete,
    TaskCreate,
    TaskFilter,
    TaskRead,
    TaskSummary,
    TaskUpdate,
)
from app.core.db import Database
from app.core.db_routes import (
    DbRoutes,
    add_batch_writes,
    add_child_routes,
    add_export_and_delete_routes,
    add_read_routes,
    read_as,
)
from app.core.deps import PrefersMinimal, ReadAccess, WriteAccess, database_of
from app.core.pagination import PageDep
from app.core.responses import rows_response
from app.core.schemas import CONFLICT, NOT_FOUND

COMPONENT = service.COMPONENT

GeneratorDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Generator's database."""

router = APIRouter(prefix="/api/generator/db", tags=["generator-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]
DOCS = {
    "get": "Return a task with its steps, metrics and tags.",
    "search": "Find tasks whose id, model, hardware, status, architecture or tag contain the text.",
    "add_to_batch": "Move a task into a batch.",
    "model_stats": "Summarise tasks per model (counts and durations), most tasks first.",
    "hardware_stats": "Summarise tasks per device (a task for two devices counts for both).",
    "step_name": "may contain /",
}
ROUTES = DbRoutes(
    noun="task",
    service=service,
    store=store,
    schemas=schemas,
    step_in=StepWrite,
    detail=service.task_detail,
    read=TaskRead,
    summary=TaskSummary,
    latest=store.latest_tasks,
    search=store.search_tasks,
    delete=service.delete_task,
    docs=DOCS,
)
"""What the routes shared with every component (`app.core.db_routes`) need from this one."""


# --- recording -------------------------------------------------------------------------------


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskRead | TaskSummary,
    dependencies=WRITE,
    responses=CONFLICT,
)
def record_task(
    doc: TaskCreate, db: GeneratorDb, minimal: PrefersMinimal
) -> TaskRead | TaskSummary:
    """Record a whole task (steps, metrics, tags) atomically."""
    task_id = db.write(lambda session: service.record_task(session, doc))
    if minimal:
        return read_as(TaskSummary, service.task_summary, db, task_id)
    return read_as(TaskRead, service.task_detail, db, task_id)


@router.patch(
    "/task/{task_id}",
    response_model=TaskRead | TaskSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def update_task(
    task_id: str, upd: TaskUpdate, db: GeneratorDb, minimal: PrefersMinimal
) -> TaskRead | TaskSummary:
    """Change only the fields sent (status, progress, current_step, error, ...)."""
    written = db.write(lambda session: service.update_task(session, task_id, upd))
    if minimal:  # built in the transaction that wrote it: no second read
        return TaskSummary.model_validate(written)
    return read_as(TaskRead, service.task_detail, db, task_id)


add_child_routes(router, ROUTES)


@router.post(
    "/task/{task_id}/complete",
    response_model=TaskRead | TaskSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def complete_task(
    task_id: str, db: GeneratorDb, minimal: PrefersMinimal, body: TaskComplete | None = None
) -> TaskRead | TaskSummary:
    """End a task with a terminal status (default completed) and its output file."""
    end = body or TaskComplete()
    written = db.write(lambda session: service.complete_task(session, task_id, end))
    if minimal:
        return TaskSummary.model_validate(written)
    return read_as(TaskRead, service.task_detail, db, task_id)


add_batch_writes(router, ROUTES)


# --- reads -----------------------------------------------------------------------------------


@router.get("/tasks", response_model=list[TaskSummary])
def list_tasks(db: GeneratorDb, page: PageDep, f: Annotated[TaskFilter, Query()]) -> Response:
    """List tasks, newest first; the total is in X-Total-Count."""
    filters = store.TaskFilter(
        **f.model_dump(exclude={"status"}), status=[s.value for s in f.status]
    )
    with db.reading() as session:
        rows, total = store.list_tasks(session, filters, page)
    return rows_response(rows, total=total)


add_read_routes(router, ROUTES)


# --- export, import, delete ------------------------------------------------------------------


add_export_and_delete_routes(router, ROUTES)
