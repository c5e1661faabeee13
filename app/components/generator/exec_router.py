"""HTTP routes of the Generator execution API (/api/generator): generate, follow, cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, WebSocket
from fastapi.responses import FileResponse, StreamingResponse

from app.components.generator import service, store
from app.components.generator.exec_schemas import (
    BatchGenerateRequest,
    BatchGenerateStarted,
    CancelResult,
    GenerateRequest,
    GenerateStarted,
    GenerationOptions,
    TaskStatusRead,
    TemplateInfo,
)
from app.components.generator.families import Family, list_families, resolve_family
from app.components.generator.render import (
    normalize_context,
    normalize_hardware,
    safe_output_dir,
)
from app.components.generator.runner import CREATOR, GenerationRunner, Job, status_event
from app.components.generator.schemas import (
    BatchCreate,
    RecentTaskFilter,
    TaskCreate,
    TaskRead,
    TaskSummary,
)
from app.core.db import Database
from app.core.deps import (
    ContextDep,
    ReadAccess,
    SettingsDep,
    WriteAccess,
    database_of,
    hub_of,
    runner_of,
)
from app.core.errors import NotFound, Unprocessable
from app.core.hardware import Backend, detect
from app.core.live import EventHub, WsKeys, sse_response, websocket_session
from app.core.naming import module_filename
from app.core.pagination import PageDep, set_total
from app.core.schemas import BAD_REQUEST, NOT_FOUND, Responses
from app.core.statuses import TaskStatus

COMPONENT = service.COMPONENT
Plan = tuple[Family, tuple[str, ...], dict[str, Any], Path]
"""What a generation needs, checked before queueing: family, devices, context, folder."""
INVALID: Responses = {**BAD_REQUEST, 422: {"description": "unknown model, template or option"}}


def _plan(output_root: Path, model_name: str, options: GenerationOptions) -> Plan:
    """Check what is cheap to check before queueing: family, hardware, options, folder."""
    if not model_name.strip():
        raise Unprocessable("model_name must not be blank", code="invalid_model_name")
    family = resolve_family(model_name, options.template_type)
    devices = normalize_hardware(family, options.hardware)
    context = normalize_context(options.template_context)
    directory = safe_output_dir(output_root, options.output_dir)
    return family, devices, context, directory


GeneratorDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Generator's database."""
Runner = Annotated[GenerationRunner, Depends(runner_of(COMPONENT, GenerationRunner))]
"""The Generator's runner (its worker pool)."""
Hub = Annotated[EventHub, Depends(hub_of(COMPONENT))]
"""The Generator's event hub (SSE and WebSocket subscribers)."""

router = APIRouter(prefix="/api/generator", tags=["generator"], dependencies=[ReadAccess])
WRITE = [WriteAccess]


def queue(
    db: Database,
    runner: GenerationRunner,
    model_name: str,
    options: GenerationOptions,
    plan: Plan,
    batch_id: str | None = None,
) -> str:
    """Record a queued generation task and hand it to the worker pool; return its id."""
    _family, devices, context, directory = plan
    tags = dict(options.tags)
    if options.task:
        tags["task"] = options.task
    doc = TaskCreate(
        model_name=model_name,
        hardware=list(devices),
        status=TaskStatus.queued,
        current_step="queued",
        template_type=options.template_type,
        template_context=context,
        output_dir=str(directory),
        creator=CREATOR,
        task_type="batch" if batch_id else "single",
        tags=tags or None,
        batch_id=batch_id,
    )
    with db.writing() as session:
        task_id = service.record_task(session, doc)
    runner.submit(
        Job(
            task_id=task_id,
            model_name=model_name,
            hardware=devices,
            template_type=options.template_type,
            template_context=context,
            directory=directory,
            force=options.force,
            fix_syntax=options.fix_syntax,
        )
    )
    return task_id


def plan_batch(root: Path, req: BatchGenerateRequest) -> dict[str, Plan]:
    """Plan every model of a batch; refuse the batch naming each model of unknown architecture."""
    unknown: list[str] = []
    plans = {}
    for name in req.model_names:
        try:
            plans[name] = _plan(root, name, req)
        except Unprocessable as exc:
            if exc.code != "unknown_architecture":
                raise
            unknown.append(name)
    if unknown:
        families = [f.name for f in list_families()]
        raise Unprocessable(
            f"cannot tell the architecture of {', '.join(map(repr, unknown))}; "
            f"pass template_type as one of: {', '.join(families)}",
            code="unknown_architecture",
            extra={"families": families, "models": unknown},
        )
    return plans


@router.post(
    "/model", status_code=202, response_model=GenerateStarted, dependencies=WRITE, responses=INVALID
)
def generate_model(
    req: GenerateRequest, db: GeneratorDb, settings: SettingsDep, runner: Runner
) -> GenerateStarted:
    """Queue a task that renders, checks and writes the model's test file."""
    plan = _plan(settings.folder("output"), req.model_name, req)
    task_id = queue(db, runner, req.model_name, req, plan)
    family, _devices, _context, directory = plan
    with db.reading() as session:
        task = service.require_task(session, task_id)
        return GenerateStarted(
            task_id=task_id,
            status=str(task.status),
            message=f"generation queued for {req.model_name} ({family.name})",
            started_at=task.started_at,
            architecture=family.name,
            output_file=str(directory / module_filename(req.model_name)),
        )


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchGenerateStarted,
    dependencies=WRITE,
    responses=INVALID,
)
def generate_batch(
    req: BatchGenerateRequest, db: GeneratorDb, settings: SettingsDep, runner: Runner
) -> BatchGenerateStarted:
    """Queue one task per model, grouped in a batch whose status follows its tasks."""
    plans = plan_batch(settings.folder("output"), req)
    description = req.description or f"generate {len(plans)} test files"
    with db.writing() as session:
        batch_id = service.create_batch(
            session, BatchCreate(description=description, creator=CREATOR)
        )
    task_ids = [queue(db, runner, name, req, plan, batch_id) for name, plan in plans.items()]
    with db.reading() as session:
        status = str(service.require_batch(session, batch_id).status)
    return BatchGenerateStarted(
        batch_id=batch_id,
        task_ids=task_ids,
        status=status,
        message=f"{len(task_ids)} generation tasks queued",
    )


@router.get("/status/{task_id}", response_model=TaskStatusRead, responses=NOT_FOUND)
def task_status(task_id: str, db: GeneratorDb) -> TaskStatusRead:
    """Return a task's status, progress, current step and elapsed time."""
    with db.reading() as session:
        return TaskStatusRead.model_validate(status_event(service.require_task(session, task_id)))


@router.get("/result/{task_id}", response_model=TaskRead, responses=NOT_FOUND)
def task_result(task_id: str, db: GeneratorDb) -> TaskRead:
    """Return a task with its output file, architecture, steps, metrics and tags."""
    with db.reading() as session:
        return TaskRead.model_validate(service.task_detail(session, task_id))


@router.get(
    "/file/{task_id}",
    response_class=FileResponse,
    responses={**NOT_FOUND, 200: {"content": {"text/x-python": {}}}},
)
def task_file(task_id: str, db: GeneratorDb, settings: SettingsDep) -> FileResponse:
    """Return the test file this task wrote (only that file, only inside the output folder)."""
    with db.reading() as session:
        output_file = service.require_task(session, task_id).output_file
    if not output_file:
        raise NotFound(f"task {task_id} wrote no file", code="no_file")
    root = settings.folder("output")
    # resolve() follows symlinks and `..`: a path recorded by hand, or a file swapped for a
    # link since, cannot lead out of the output folder.
    path = Path(output_file).resolve()
    if not path.is_relative_to(root):
        raise NotFound(
            f"task {task_id}'s file is not inside the output folder", code="file_not_served"
        )
    if not path.is_file():
        raise NotFound(f"task {task_id}'s file {path.name} no longer exists", code="file_gone")
    return FileResponse(path, media_type="text/x-python", filename=path.name)


@router.post(
    "/cancel/{task_id}", response_model=CancelResult, dependencies=WRITE, responses=NOT_FOUND
)
def cancel(task_id: str, db: GeneratorDb, runner: Runner) -> CancelResult:
    """Cancel a queued or running task; its status becomes final and no file is written."""
    cancelled = runner.cancel(task_id)
    with db.reading() as session:
        status = str(service.require_task(session, task_id).status)
    message = "task cancelled" if cancelled else f"task already finished ({status})"
    return CancelResult(task_id=task_id, cancelled=cancelled, status=status, message=message)


@router.get("/tasks", response_model=list[TaskSummary])
def tasks(
    response: Response, db: GeneratorDb, page: PageDep, f: Annotated[RecentTaskFilter, Query()]
) -> list[TaskSummary]:
    """List tasks, newest first (the total is in X-Total-Count)."""
    filters = store.TaskFilter(
        status=[s.value for s in f.status],
        model_name=f.model_name,
        batch_id=f.batch_id,
        since=f.since,
    )
    with db.reading() as session:
        rows, total = store.list_tasks(session, filters, page)
    set_total(response, total)
    return [TaskSummary.model_validate(r) for r in rows]


@router.get("/templates", response_model=list[TemplateInfo])
def templates() -> list[TemplateInfo]:
    """List the architecture families: template, example model, classes, hardware."""
    return [TemplateInfo.model_validate(f.as_dict()) for f in list_families()]


@router.get("/hardware", response_model=list[Backend])
def hardware() -> list[Backend]:
    """List hardware backends: cpu always; others when their library finds a device."""
    return list(detect())


@router.get("/events/{task_id}", responses=NOT_FOUND, response_class=StreamingResponse)
def events(task_id: str, db: GeneratorDb, runner: Runner, hub: Hub) -> StreamingResponse:
    """Stream a task's steps and state changes as Server-Sent Events until it ends."""
    with db.reading() as session:
        service.require_task(session, task_id)
    return sse_response(hub, task_id, lambda: runner.snapshot(task_id))


@router.websocket("/ws/{task_id}")
async def live(
    websocket: WebSocket, task_id: str, runner: Runner, hub: Hub, ctx: ContextDep
) -> None:
    """Push a task's steps and state changes; answer ping, status, auth and cancel (write key)."""

    def cancel_task() -> dict[str, Any]:
        return {"task_id": task_id, "cancelled": runner.cancel(task_id)}

    def snapshot() -> list[dict[str, Any]]:
        return runner.snapshot(task_id)

    keys = WsKeys(ctx.check_key, ctx.settings.protect_reads)
    await websocket_session(websocket, hub, task_id, snapshot, cancel_task, keys)
