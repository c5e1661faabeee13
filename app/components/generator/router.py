"""HTTP routes of the Generator database API (/api/generator/db)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.components.generator import service, store
from app.components.generator.schemas import (
    BatchCreate,
    BatchRead,
    BatchSummary,
    ExportIn,
    HardwareStats,
    ModelStats,
    PerformanceReport,
    StatsFilter,
    StepWrite,
    TaskComplete,
    TaskCreate,
    TaskFilter,
    TaskRead,
    TaskSummary,
    TaskUpdate,
)
from app.core import transfer_routes as transfer
from app.core.db import Database
from app.core.db_routes import (
    DbRoutes,
    add_batch_delete,
    add_batch_reads,
    add_child_routes,
    add_transfer_routes,
    read_as,
)
from app.core.deps import ReadAccess, WriteAccess, database_of
from app.core.models import utcnow
from app.core.pagination import PageDep
from app.core.responses import rows_response
from app.core.schemas import (
    CONFLICT,
    NOT_FOUND,
    Deleted,
    SearchIn,
)
from app.core.stats import window_start

COMPONENT = service.COMPONENT

GeneratorDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Generator's database."""

router = APIRouter(prefix="/api/generator/db", tags=["generator-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]
ROUTES = DbRoutes(
    component=COMPONENT,
    noun="task",
    exchange=service.EXCHANGE,
    export_in=ExportIn,
    step_in=StepWrite,
    batch_read=BatchRead,
    batch_summary=BatchSummary,
    put_step=service.put_step,
    get_step=store.get_step,
    add_metrics=service.add_metrics,
    put_tags=service.put_tags,
    detail=service.task_detail,
    batch_detail=service.batch_detail,
    list_batches=service.list_batches,
    delete_batch=service.delete_batch,
    step_name_doc="may contain /",
)
"""What the routes shared with every component (`app.core.db_routes`) need from this one."""


def scope(f: StatsFilter) -> store.Scope:
    """Return the statistics scope a stats filter asks for."""
    return store.Scope(window_start(f.days), f.model_name, f.hardware)


# --- recording -------------------------------------------------------------------------------


@router.post(
    "/tasks", status_code=201, response_model=TaskRead, dependencies=WRITE, responses=CONFLICT
)
def record_task(doc: TaskCreate, db: GeneratorDb) -> TaskRead:
    """Record a whole task (steps, metrics, tags) atomically."""
    with db.writing() as session:
        task_id = service.record_task(session, doc)
    return read_as(TaskRead, service.task_detail, db, task_id)


@router.patch(
    "/task/{task_id}",
    response_model=TaskRead,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def update_task(task_id: str, upd: TaskUpdate, db: GeneratorDb) -> TaskRead:
    """Change only the fields sent (status, progress, current_step, error, ...)."""
    with db.writing() as session:
        service.update_task(session, task_id, upd)
    return read_as(TaskRead, service.task_detail, db, task_id)


add_child_routes(router, ROUTES)


@router.post(
    "/task/{task_id}/complete",
    response_model=TaskRead,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def complete_task(task_id: str, db: GeneratorDb, body: TaskComplete | None = None) -> TaskRead:
    """End a task with a terminal status (default completed) and its output file."""
    with db.writing() as session:
        service.complete_task(session, task_id, body or TaskComplete())
    return read_as(TaskRead, service.task_detail, db, task_id)


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchRead,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def create_batch(body: BatchCreate, db: GeneratorDb) -> BatchRead:
    """Create a batch, optionally with its member tasks."""
    with db.writing() as session:
        batch_id = service.create_batch(session, body)
    return read_as(BatchRead, service.batch_detail, db, batch_id)


@router.put(
    "/batch/{batch_id}/tasks/{task_id}",
    response_model=BatchRead,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
def add_to_batch(batch_id: str, task_id: str, db: GeneratorDb) -> BatchRead:
    """Move a task into a batch."""
    with db.writing() as session:
        service.add_to_batch(session, batch_id, task_id)
    return read_as(BatchRead, service.batch_detail, db, batch_id)


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


@router.get("/task/{task_id}", response_model=TaskRead, responses=NOT_FOUND)
def get_task(task_id: str, db: GeneratorDb) -> Response:
    """Return a task with its steps, metrics and tags."""
    with db.reading() as session:
        return rows_response(service.task_detail(session, task_id))


add_batch_reads(router, ROUTES)


@router.get("/models/stats", response_model=list[ModelStats])
def model_stats(db: GeneratorDb, f: Annotated[StatsFilter, Query()]) -> Response:
    """Summarise tasks per model (counts and durations), most tasks first."""
    with db.reading() as session:
        return rows_response(store.model_stats(session, scope(f)))


@router.get("/hardware/stats", response_model=list[HardwareStats])
def hardware_stats(db: GeneratorDb, f: Annotated[StatsFilter, Query()]) -> Response:
    """Summarise tasks per device (a task for two devices counts for both)."""
    with db.reading() as session:
        return rows_response(store.hardware_stats(session, scope(f)))


@router.get("/performance", response_model=PerformanceReport)
def performance(
    db: GeneratorDb,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
    model_name: str | None = None,
) -> Response:
    """Report the last `days` of tasks: per day, model, device, latest tasks and metrics."""
    s = store.Scope(window_start(days), model_name, None)
    with db.reading() as session:
        report = {
            "days": days,
            "model_name": model_name,
            "daily_stats": store.daily_stats(session, s),
            "model_stats": store.model_stats(session, s),
            "hardware_stats": store.hardware_stats(session, s),
            "latest_tasks": store.latest_tasks(session, s),
            "performance_metrics": store.metric_stats(session, s),
            "generated_at": utcnow(),
        }
    return rows_response(report)


@router.post("/search", response_model=list[TaskSummary])
def search(body: SearchIn, db: GeneratorDb) -> Response:
    """Find tasks whose id, model, hardware, status, architecture or tag contain the text."""
    with db.reading() as session:
        return rows_response(store.search_tasks(session, body.query, body.limit))


# --- export, import, delete ------------------------------------------------------------------


add_transfer_routes(router, ROUTES)


@router.delete("/task/{task_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_task(task_id: str, db: GeneratorDb) -> Deleted:
    """Delete a task and every row that belongs to it."""
    with db.writing() as session:
        counts = service.delete_task(session, task_id)
    return transfer.deleted("task", task_id, counts)


add_batch_delete(router, ROUTES)
