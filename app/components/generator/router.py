"""HTTP routes of the Generator database API (/api/generator/db)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import FileResponse

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
from app.core.deps import ReadAccess, SettingsDep, WriteAccess, database_of
from app.core.models import utcnow
from app.core.pagination import PageDep, set_total
from app.core.responses import rows_response
from app.core.schemas import (
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    Deleted,
    ExportFormat,
    ExportResult,
    ImportDocument,
    ImportResult,
    MetricIn,
    SearchIn,
    StepRead,
    Tags,
)
from app.core.stats import window_start
from app.core.statuses import BatchStatus

COMPONENT = service.COMPONENT

GeneratorDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Generator's database."""

router = APIRouter(prefix="/api/generator/db", tags=["generator-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]


def task_read(db: Database, task_id: str) -> TaskRead:
    """Read a task with its steps, metrics and tags (after a write has committed)."""
    with db.reading() as session:
        return TaskRead.model_validate(service.task_detail(session, task_id))


def batch_read(db: Database, batch_id: str) -> BatchRead:
    """Read a batch with its members counted by status and its tasks."""
    with db.reading() as session:
        return BatchRead.model_validate(service.batch_detail(session, batch_id))


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
    return task_read(db, task_id)


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
    return task_read(db, task_id)


@router.put(
    "/task/{task_id}/steps/{step_name:path}",
    response_model=StepRead,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
def put_step(
    task_id: str,
    step: StepWrite,
    step_name: Annotated[str, Path(min_length=1, max_length=1024, description="may contain /")],
    db: GeneratorDb,
) -> StepRead:
    """Create or update one step of a task."""
    with db.writing() as session:
        service.put_step(session, task_id, step_name, step)
        row = store.get_step(session, task_id, step_name)
        return StepRead.model_validate(row, from_attributes=True)


@router.post("/task/{task_id}/metrics", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_metrics(
    task_id: str, metrics: Annotated[list[MetricIn], Body(max_length=1_000_000)], db: GeneratorDb
) -> dict[str, int]:
    """Append metric points to a task's series."""
    with db.writing() as session:
        added = service.add_metrics(session, task_id, metrics)
    return {"added": added}


@router.put("/task/{task_id}/tags", dependencies=WRITE, responses=NOT_FOUND)
def put_tags(
    task_id: str,
    tags: Tags,
    db: GeneratorDb,
    merge: Annotated[bool, Query(description="keep tags not sent")] = False,
) -> dict[str, str]:
    """Set a task's tags (replacing them, or merged with `merge=true`)."""
    with db.writing() as session:
        service.put_tags(session, task_id, tags, merge=merge)
    return task_read(db, task_id).tags


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
    return task_read(db, task_id)


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
    return batch_read(db, batch_id)


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
    return batch_read(db, batch_id)


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


@router.get("/batches", response_model=list[BatchSummary])
def list_batches(
    response: Response, db: GeneratorDb, page: PageDep, status: BatchStatus | None = None
) -> list[BatchSummary]:
    """List batches, newest first; the total is in X-Total-Count."""
    with db.reading() as session:
        rows, total = service.list_batches(session, status.value if status else None, page)
    set_total(response, total)
    return [BatchSummary.model_validate(r) for r in rows]


@router.get("/batch/{batch_id}", response_model=BatchRead, responses=NOT_FOUND)
def get_batch(batch_id: str, db: GeneratorDb) -> BatchRead:
    """Return a batch, its members counted by status, and its tasks."""
    return batch_read(db, batch_id)


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


@router.post(
    "/export",
    response_model=ExportResult,
    dependencies=WRITE,
    responses={**BAD_REQUEST, **CONFLICT},
)
def export(body: ExportIn, db: GeneratorDb, settings: SettingsDep) -> ExportResult:
    """Write an export (json, jsonl, csv, parquet) into the export folder."""
    return transfer.write_export(db, COMPONENT, settings.folder("export"), body, service.export)


@router.get("/export", dependencies=WRITE, response_class=FileResponse)
def download(
    db: GeneratorDb,
    settings: SettingsDep,
    format: Annotated[ExportFormat, Query()] = "json",
    table: Annotated[str | None, Query(description="jsonl/csv/parquet: the table to write")] = None,
) -> FileResponse:
    """Stream an export as a download (the full JSON document, or one table)."""
    body = ExportIn(filename=f"{COMPONENT}-export.{format}", format=format, table=table)
    return transfer.download(db, COMPONENT, settings, body, service.export, format)


@router.post("/import", response_model=ImportResult, dependencies=WRITE)
def import_(document: ImportDocument, db: GeneratorDb) -> ImportResult:
    """Load an export document back, atomically and idempotently."""
    return transfer.import_into(db, document, service.import_document)


@router.delete("/task/{task_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_task(task_id: str, db: GeneratorDb) -> Deleted:
    """Delete a task and every row that belongs to it."""
    with db.writing() as session:
        counts = service.delete_task(session, task_id)
    return transfer.deleted("task", task_id, counts)


@router.delete("/batch/{batch_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_batch(
    batch_id: str, db: GeneratorDb, delete_tasks: Annotated[bool, Query()] = False
) -> Deleted:
    """Delete a batch; its tasks too with `delete_tasks=true`, else they are only unlinked."""
    with db.writing() as session:
        counts = service.delete_batch(session, batch_id, delete_tasks=delete_tasks)
    return transfer.deleted("batch", batch_id, counts)
