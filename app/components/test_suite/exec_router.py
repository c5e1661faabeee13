"""HTTP routes of the Test Suite execution API (/api/test): start, follow and cancel runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, WebSocket
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from app.components.test_suite import service, store, suites_router
from app.components.test_suite.collection import COLLECTOR
from app.components.test_suite.estimates import expected_duration
from app.components.test_suite.exec_schemas import (
    BatchRequest,
    BatchStarted,
    CancelResult,
    HardwareRead,
    ModelModule,
    RunRequest,
    RunStarted,
    RunStatusRead,
    SuiteType,
    SuiteTypeInfo,
)
from app.components.test_suite.hardware import PROBES
from app.components.test_suite.runner import (
    CREATOR,
    Job,
    SuiteRunner,
    status_event,
)
from app.components.test_suite.schemas import (
    BatchCreate,
    RecentRunFilter,
    RunCreate,
    RunRead,
    RunSummary,
)
from app.components.test_suite.suites import DEFAULT_SUITE, Suite, all_suites, get_suite
from app.core.config import Settings
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
from app.core.errors import NotFound
from app.core.live import EventHub, WsKeys, sse_response, websocket_session
from app.core.naming import model_slug, module_filename
from app.core.pagination import Page, PageDep, set_total
from app.core.schemas import NOT_FOUND, ErrorBody
from app.core.statuses import RunStatus

COMPONENT = service.COMPONENT
TYPE_INFO = {
    SuiteType.basic: ("quick checks every run does", ["basic"]),
    SuiteType.comprehensive: (
        "the full suite: basic and comprehensive tests",
        ["basic", "comprehensive"],
    ),
    SuiteType.fault_tolerance: ("basic plus fault-tolerance tests", ["basic", "fault_tolerance"]),
}


def module_for(tests_dir: Path, model_name: str) -> Path:
    """Return a model's test module in the tests folder, or raise 404."""
    path = tests_dir / module_filename(model_name)
    if not path.is_file():
        raise NotFound(
            f"no test module for model {model_name!r}: expected {path.name} in {tests_dir} "
            "(generate one with POST /api/generator/model, or put it there)",
            code="no_test_module",
        )
    return path


SuiteDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Test Suite's database."""
Runner = Annotated[SuiteRunner, Depends(runner_of(COMPONENT, SuiteRunner))]
"""The Test Suite's runner (its worker pool)."""
Hub = Annotated[EventHub, Depends(hub_of(COMPONENT))]
"""The Test Suite's event hub (SSE and WebSocket subscribers)."""

router = APIRouter(prefix="/api/test", tags=["test-suite"], dependencies=[ReadAccess])
WRITE = [WriteAccess]
REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a device the suite may not use"},
    409: {"model": ErrorBody, "description": "the suite's interpreter cannot run pytest"},
    503: {"model": ErrorBody, "description": "the suites file is unusable"},
}
SUITE_LOOKUP: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no suite of that name (`unknown_suite`)"},
    503: REFUSED[503],
}
"""What a read naming a suite (`?suite=`) can answer besides 200."""


def prepare(
    settings: Settings, suite_name: str, model_name: str, hardware: list[str]
) -> tuple[Suite, Path | None]:
    """Return the suite a request names, refusing a model, device or interpreter it cannot run."""
    suite = get_suite(settings, suite_name)
    path = suite.check_model(model_name)
    for device in hardware:
        suite.check_device(device)
    answer = PROBES.answer(suite.python, suite.literal_env(), settings.device_probe_ttl)
    answer.require_runnable(suite.name)
    return suite, path


def queue(
    db: Database,
    settings: Settings,
    suite: Suite,
    model_name: str,
    req: RunRequest | BatchRequest,
    batch_id: str | None = None,
) -> str:
    """Record a queued run of a model in a suite; return its id."""
    doc = RunCreate(
        model_name=model_name,
        hardware=req.hardware,
        test_type=req.test_type.value,
        timeout=timeout_of(settings, suite, req),
        save_results=req.save_results,
        status=RunStatus.queued,
        current_step="queued",
        creator=CREATOR,
        tags={**req.tags, "suite": suite.name},
        batch_id=batch_id,
    )
    with db.writing() as session:
        return service.record_run(session, doc)


def timeout_of(settings: Settings, suite: Suite, req: RunRequest | BatchRequest) -> int:
    """Return a run's timeout: the request's, else the suite's, else APP_DEFAULT_RUN_TIMEOUT."""
    return req.timeout or suite.timeout or settings.default_run_timeout


def start(
    runner: SuiteRunner,
    settings: Settings,
    run_id: str,
    suite: Suite,
    model_name: str,
    req: RunRequest | BatchRequest,
) -> None:
    """Hand a queued run to the worker pool."""
    runner.submit(
        Job(
            run_id=run_id,
            suite=suite,
            model_name=model_name,
            hardware=list(req.hardware),
            test_type=req.test_type.value,
            timeout_s=float(timeout_of(settings, suite, req)),
            save_results=req.save_results,
        )
    )


def snapshot(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Return the events a new subscriber first gets: the run's state (and `end` if final)."""
    with db.reading() as session:
        run = service.require_run(session, run_id)
        event = status_event(run, expected_duration(session, run))
    return (
        [event, {**event, "type": "end"}]
        if event["status"] in {"completed", "error", "timeout", "cancelled"}
        else [event]
    )


@router.post(
    "/run",
    status_code=202,
    response_model=RunStarted,
    dependencies=WRITE,
    responses={**NOT_FOUND, **REFUSED},
)
def run_tests(req: RunRequest, db: SuiteDb, settings: SettingsDep, runner: Runner) -> RunStarted:
    """Queue a run of a model in a suite (default: its test_<slug>.py in the tests folder)."""
    suite, path = prepare(settings, req.suite, req.model_name, req.hardware)
    run_id = queue(db, settings, suite, req.model_name, req)
    start(runner, settings, run_id, suite, req.model_name, req)
    with db.reading() as session:
        run = service.require_run(session, run_id)
        return RunStarted(
            run_id=run_id,
            status=str(run.status),
            message=f"run queued for {req.model_name} in suite {suite.name}",
            started_at=run.started_at,
            test_file=str(path or suite.root),
            suite=suite.name,
        )


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchStarted,
    dependencies=WRITE,
    responses={**NOT_FOUND, **REFUSED},
)
def run_batch(
    req: BatchRequest, db: SuiteDb, settings: SettingsDep, runner: Runner
) -> BatchStarted:
    """Queue one run per model of a suite, grouped in a batch whose status follows its runs."""
    names = list(dict.fromkeys(req.model_names))
    suite = prepare(settings, req.suite, names[0], req.hardware)[0]
    for name in names[1:]:
        suite.check_model(name)
    with db.writing() as session:
        batch_id = service.create_batch(
            session, BatchCreate(description=req.description or f"batch of {len(names)} models")
        )
    run_ids = []
    for name in names:
        run_id = queue(db, settings, suite, name, req, batch_id)
        run_ids.append(run_id)
        start(runner, settings, run_id, suite, name, req)
    with db.reading() as session:
        status = str(service.require_batch(session, batch_id).status)
    return BatchStarted(
        batch_id=batch_id, run_ids=run_ids, status=status, message=f"{len(run_ids)} runs queued"
    )


@router.get("/status/{run_id}", response_model=RunStatusRead, responses=NOT_FOUND)
def run_status(run_id: str, db: SuiteDb) -> RunStatusRead:
    """Return a run's status, progress, current step, elapsed and estimated remaining time."""
    with db.reading() as session:
        run = service.require_run(session, run_id)
        return RunStatusRead.model_validate(status_event(run, expected_duration(session, run)))


@router.get("/results/{run_id}", response_model=RunRead, responses=NOT_FOUND)
def run_results(run_id: str, db: SuiteDb) -> RunRead:
    """Return a run's results, per-test details, steps, metrics and artifacts."""
    with db.reading() as session:
        return RunRead.model_validate(service.run_detail(session, run_id))


@router.post(
    "/cancel/{run_id}", response_model=CancelResult, dependencies=WRITE, responses=NOT_FOUND
)
def cancel(run_id: str, db: SuiteDb, runner: Runner) -> CancelResult:
    """Cancel a queued or running run; its pytest process group is killed."""
    cancelled = runner.cancel(run_id)
    with db.reading() as session:
        status = str(service.require_run(session, run_id).status)
    message = "run cancelled" if cancelled else f"run already finished ({status})"
    return CancelResult(run_id=run_id, cancelled=cancelled, status=status, message=message)


@router.get("/runs", response_model=list[RunSummary])
def runs(
    response: Response, db: SuiteDb, page: PageDep, f: Annotated[RecentRunFilter, Query()]
) -> list[RunSummary]:
    """List runs, newest first (the total is in X-Total-Count)."""
    filters = store.RunFilter(
        status=[s.value for s in f.status], model_name=f.model_name, since=f.since
    )
    with db.reading() as session:
        rows, total = store.list_runs(session, filters, page)
    set_total(response, total)
    return [RunSummary.model_validate(r) for r in rows]


@router.get("/models", response_model=list[ModelModule], responses=SUITE_LOOKUP)
def models(
    db: SuiteDb,
    settings: SettingsDep,
    suite: Annotated[str | None, Query(max_length=64, description="only this suite")] = None,
) -> list[ModelModule]:
    """List what each suite can run: generated modules, and each suite file's `models`."""
    chosen = [get_suite(settings, suite)] if suite else list(all_suites(settings).values())
    with db.reading() as session:
        latest = {model_slug(r["model_name"]): r for r in store.latest_run_per_model(session)}
        out = []
        for each in chosen:
            if each.builtin:
                out += _generated_models(each.root, latest)
                continue
            for name in each.models or ():
                last = _last_in_suite(session, each.name, name)
                out.append(
                    ModelModule(
                        model_name=name,
                        suite=each.name,
                        test_file=None,
                        last_run_id=last["run_id"] if last else None,
                        last_status=str(last["status"]) if last else None,
                        last_started_at=last["started_at"] if last else None,
                    )
                )
    return out


def _generated_models(tests_dir: Path, latest: dict[str, dict[str, Any]]) -> list[ModelModule]:
    modules = sorted(tests_dir.glob("test_*.py")) if tests_dir.is_dir() else []
    out = []
    for path in modules:
        slug = path.stem.removeprefix("test_")
        last = latest.get(slug)
        out.append(
            ModelModule(
                model_name=last["model_name"] if last else slug,
                test_file=str(path),
                last_run_id=last["run_id"] if last else None,
                last_status=str(last["status"]) if last else None,
                last_started_at=last["started_at"] if last else None,
            )
        )
    return out


def _last_in_suite(session: Session, suite: str, model_name: str) -> dict[str, Any] | None:
    rows, _ = store.list_runs(
        session,
        store.RunFilter(model_name=model_name, tag=f"suite:{suite}"),
        Page(limit=1, offset=0),
    )
    return rows[0] if rows else None


@router.get("/hardware", response_model=list[HardwareRead], responses=SUITE_LOOKUP)
def hardware(
    settings: SettingsDep,
    suite: Annotated[str, Query(max_length=64, description="whose interpreter to ask")] = (
        DEFAULT_SUITE
    ),
    refresh: Annotated[bool, Query(description="probe now, not from the cache")] = False,
) -> list[HardwareRead]:
    """List the backends a suite's interpreter sees, and when it was asked (cached briefly)."""
    chosen = get_suite(settings, suite)
    answer = PROBES.answer(
        chosen.python, chosen.literal_env(), settings.device_probe_ttl, refresh=refresh
    )
    return [HardwareRead(**state.model_dump(), suite=chosen.name) for state in answer.states()]


@router.get(
    "/types",
    response_model=list[SuiteTypeInfo],
    responses={**NOT_FOUND, 503: {"model": ErrorBody, "description": "busy or too slow"}},
)
def types(
    settings: SettingsDep,
    model_name: Annotated[str | None, Query(description="collect this model's module")] = None,
) -> list[SuiteTypeInfo]:
    """List test types, their markers, and (for a model) the tests each selects.

    Collecting runs `pytest --collect-only`: cached by the module's mtime and size, at most
    two at once (else 503 `busy`), each killed after 30 s (503 `collect_timeout`).
    """
    path = module_for(settings.effective_tests_dir, model_name) if model_name else None
    return [
        SuiteTypeInfo(
            name=t.value,
            description=text,
            markers=markers,
            tests=COLLECTOR.tests(path, t.value) if path else [],
        )
        for t, (text, markers) in TYPE_INFO.items()
    ]


@router.get("/events/{run_id}", responses=NOT_FOUND, response_class=StreamingResponse)
def events(run_id: str, db: SuiteDb, hub: Hub) -> StreamingResponse:
    """Stream a run's state changes as Server-Sent Events until it ends."""
    with db.reading() as session:
        service.require_run(session, run_id)
    return sse_response(hub, run_id, lambda: snapshot(db, run_id))


@router.websocket("/ws/{run_id}")
async def live(
    websocket: WebSocket, run_id: str, db: SuiteDb, runner: Runner, hub: Hub, ctx: ContextDep
) -> None:
    """Push a run's state changes; answer ping, status, auth and cancel (needs a write key)."""

    def cancel_run() -> dict[str, Any]:
        return {"run_id": run_id, "cancelled": runner.cancel(run_id)}

    keys = WsKeys(ctx.check_key, ctx.settings.protect_reads)
    await websocket_session(websocket, hub, run_id, lambda: snapshot(db, run_id), cancel_run, keys)


# Suites and artifacts live in their own module; served under this router's prefix and keys.
router.include_router(suites_router.router)
