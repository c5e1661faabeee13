"""HTTP routes of the Generator database API (/api/generator/db)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from app.components.generator import service, store
from app.components.generator.schemas import (
    BatchCreate,
    BatchRead,
    BatchSummary,
    ExportIn,
    HardwareStats,
    ModelStats,
    PerformanceReport,
    StepWrite,
    TaskComplete,
    TaskCreate,
    TaskRead,
    TaskSummary,
    TaskUpdate,
)
from app.core.context import AppContext
from app.core.models import utcnow
from app.core.pagination import Page, page_params, set_total
from app.core.responses import rows_response
from app.core.schemas import (
    CONFLICT,
    NOT_FOUND,
    Deleted,
    MetricIn,
    SearchIn,
    StepRead,
    Tags,
)
from app.core.stats import window_start
from app.core.statuses import BatchStatus, TaskStatus
from app.core.transfer_routes import add_delete_batch_route, add_transfer_routes

COMPONENT = service.COMPONENT


def build_db_router(ctx: AppContext) -> APIRouter:
    """Return the /api/generator/db router."""
    router = APIRouter(
        prefix="/api/generator/db",
        tags=["generator-db"],
        dependencies=[Depends(ctx.require_read())],
    )
    write = [Depends(ctx.require_write())]

    def db() -> Any:
        return ctx.database(COMPONENT)

    def detail(task_id: str) -> TaskRead:
        with db().reading() as session:
            return TaskRead.model_validate(service.task_detail(session, task_id))

    # --- recording ---------------------------------------------------------------------------

    @router.post(
        "/tasks", status_code=201, response_model=TaskRead, dependencies=write, responses=CONFLICT
    )
    def record_task(doc: TaskCreate) -> TaskRead:
        """Record a whole task (steps, metrics, tags) atomically."""
        with db().writing() as session:
            task_id = service.record_task(session, doc)
        return detail(task_id)

    @router.patch(
        "/task/{task_id}",
        response_model=TaskRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def update_task(task_id: str, upd: TaskUpdate) -> TaskRead:
        """Change only the fields sent (status, progress, current_step, error, ...)."""
        with db().writing() as session:
            service.update_task(session, task_id, upd)
        return detail(task_id)

    @router.put(
        "/task/{task_id}/steps/{step_name:path}",
        response_model=StepRead,
        dependencies=write,
        responses=NOT_FOUND,
    )
    def put_step(
        task_id: str,
        step: StepWrite,
        step_name: str = Path(..., min_length=1, max_length=1024, description="may contain /"),
    ) -> StepRead:
        """Create or update one step of a task."""
        with db().writing() as session:
            service.put_step(session, task_id, step_name, step)
            row = store.get_step(session, task_id, step_name)
            return StepRead.model_validate(row, from_attributes=True)

    @router.post(
        "/task/{task_id}/metrics", status_code=201, dependencies=write, responses=NOT_FOUND
    )
    def add_metrics(
        task_id: str, metrics: list[MetricIn] = Body(..., max_length=1_000_000)
    ) -> dict[str, int]:
        """Append metric points to a task's series."""
        with db().writing() as session:
            added = service.add_metrics(session, task_id, metrics)
        return {"added": added}

    @router.put("/task/{task_id}/tags", dependencies=write, responses=NOT_FOUND)
    def put_tags(
        task_id: str, tags: Tags, merge: bool = Query(False, description="keep tags not sent")
    ) -> dict[str, str]:
        """Set a task's tags (replacing them, or merged with `merge=true`)."""
        with db().writing() as session:
            service.put_tags(session, task_id, tags, merge=merge)
        return detail(task_id).tags

    @router.post(
        "/task/{task_id}/complete",
        response_model=TaskRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def complete_task(task_id: str, body: TaskComplete | None = None) -> TaskRead:
        """End a task with a terminal status (default completed) and its output file."""
        with db().writing() as session:
            service.complete_task(session, task_id, body or TaskComplete())
        return detail(task_id)

    @router.post(
        "/batches",
        status_code=201,
        response_model=BatchRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def create_batch(body: BatchCreate) -> BatchRead:
        """Create a batch, optionally with its member tasks."""
        with db().writing() as session:
            batch_id = service.create_batch(session, body)
        return get_batch(batch_id)

    @router.put(
        "/batch/{batch_id}/tasks/{task_id}",
        response_model=BatchRead,
        dependencies=write,
        responses=NOT_FOUND,
    )
    def add_to_batch(batch_id: str, task_id: str) -> BatchRead:
        """Move a task into a batch."""
        with db().writing() as session:
            service.add_to_batch(session, batch_id, task_id)
        return get_batch(batch_id)

    # --- reads -------------------------------------------------------------------------------

    @router.get("/tasks", response_model=list[TaskSummary])
    def list_tasks(
        page: Page = Depends(page_params),
        status: list[TaskStatus] = Query(default_factory=list),
        model_name: str | None = None,
        batch_id: str | None = None,
        hardware: str | None = None,
        architecture: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Response:
        """List tasks, newest first; the total is in X-Total-Count."""
        f = store.TaskFilter(
            status=[s.value for s in status],
            model_name=model_name,
            batch_id=batch_id,
            hardware=hardware,
            architecture=architecture,
            since=since,
            until=until,
        )
        with db().reading() as session:
            rows, total = store.list_tasks(session, f, page)
        return rows_response(rows, total=total)

    @router.get("/task/{task_id}", response_model=TaskRead, responses=NOT_FOUND)
    def get_task(task_id: str) -> Response:
        """Return a task with its steps, metrics and tags."""
        with db().reading() as session:
            return rows_response(service.task_detail(session, task_id))

    @router.get("/batches", response_model=list[BatchSummary])
    def list_batches(
        response: Response, page: Page = Depends(page_params), status: BatchStatus | None = None
    ) -> list[BatchSummary]:
        """List batches, newest first; the total is in X-Total-Count."""
        with db().reading() as session:
            rows, total = service.list_batches(session, status.value if status else None, page)
        set_total(response, total)
        return [BatchSummary.model_validate(r) for r in rows]

    @router.get("/batch/{batch_id}", response_model=BatchRead, responses=NOT_FOUND)
    def get_batch(batch_id: str) -> BatchRead:
        """Return a batch, its members counted by status, and its tasks."""
        with db().reading() as session:
            return BatchRead.model_validate(service.batch_detail(session, batch_id))

    @router.get("/models/stats", response_model=list[ModelStats])
    def model_stats(
        days: int | None = Query(None, ge=1, le=3650),
        model_name: str | None = None,
        hardware: str | None = None,
    ) -> Response:
        """Summarise tasks per model (counts and durations), most tasks first."""
        with db().reading() as session:
            rows = store.model_stats(session, store.Scope(window_start(days), model_name, hardware))
        return rows_response(rows)

    @router.get("/hardware/stats", response_model=list[HardwareStats])
    def hardware_stats(
        days: int | None = Query(None, ge=1, le=3650),
        model_name: str | None = None,
        hardware: str | None = None,
    ) -> Response:
        """Summarise tasks per device (a task for two devices counts for both)."""
        scope = store.Scope(window_start(days), model_name, hardware)
        with db().reading() as session:
            rows = store.hardware_stats(session, scope)
        return rows_response(rows)

    @router.get("/performance", response_model=PerformanceReport)
    def performance(days: int = Query(30, ge=1, le=365), model_name: str | None = None) -> Response:
        """Report the last `days` of tasks: per day, model, device, latest tasks and metrics."""
        scope = store.Scope(window_start(days), model_name, None)
        with db().reading() as session:
            report = {
                "days": days,
                "model_name": model_name,
                "daily_stats": store.daily_stats(session, scope),
                "model_stats": store.model_stats(session, scope),
                "hardware_stats": store.hardware_stats(session, scope),
                "latest_tasks": store.latest_tasks(session, scope),
                "performance_metrics": store.metric_stats(session, scope),
                "generated_at": utcnow(),
            }
        return rows_response(report)

    @router.post("/search", response_model=list[TaskSummary])
    def search(body: SearchIn) -> Response:
        """Find tasks whose id, model, hardware, status, architecture or tag contain the text."""
        with db().reading() as session:
            rows = store.search_tasks(session, body.query, body.limit)
        return rows_response(rows)

    # --- export, import, delete --------------------------------------------------------------

    add_transfer_routes(
        router,
        ctx,
        COMPONENT,
        write=write,
        export_in=ExportIn,
        export=service.export,
        import_document=service.import_document,
    )

    @router.delete(
        "/task/{task_id}", response_model=Deleted, dependencies=write, responses=NOT_FOUND
    )
    def delete_task(task_id: str) -> Deleted:
        """Delete a task and every row that belongs to it."""
        with db().writing() as session:
            counts = service.delete_task(session, task_id)
        return Deleted(message=f"task {task_id} deleted", timestamp=utcnow(), deleted=counts)

    add_delete_batch_route(
        router,
        ctx,
        COMPONENT,
        write=write,
        members="tasks",
        delete_batch=lambda session, batch_id, with_members: service.delete_batch(
            session, batch_id, delete_tasks=with_members
        ),
    )

    return router
