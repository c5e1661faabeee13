"""HTTP routes of the Test Suite database API (/api/test/db): parse → service → commit → respond."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from app.components.test_suite import service, store
from app.components.test_suite.schemas import (
    ArtifactIn,
    ArtifactRead,
    BatchCreate,
    BatchRead,
    BatchSummary,
    CaseIn,
    ExportIn,
    HardwareStats,
    ModelStats,
    PerformanceReport,
    ResultsIn,
    RunComplete,
    RunCreate,
    RunFilter,
    RunRead,
    RunSummary,
    RunUpdate,
    SearchBody,
    StatsFilter,
    StepBody,
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
)
from app.core.stats import window_start

COMPONENT = service.COMPONENT

SuiteDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Test Suite's database."""

router = APIRouter(prefix="/api/test/db", tags=["test-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]
ROUTES = DbRoutes(
    component=COMPONENT,
    noun="run",
    exchange=service.EXCHANGE,
    export_in=ExportIn,
    step_in=StepBody,
    batch_read=BatchRead,
    batch_summary=BatchSummary,
    put_step=service.put_step,
    get_step=store.get_step,
    add_metrics=service.add_metrics,
    put_tags=service.put_tags,
    detail=service.run_detail,
    batch_detail=service.batch_detail,
    list_batches=service.list_batches,
    delete_batch=service.delete_batch,
)
"""What the routes shared with every component (`app.core.db_routes`) need from this one."""


def scope(f: StatsFilter) -> store.Scope:
    """Return the statistics scope a stats filter asks for."""
    return store.Scope(window_start(f.days), f.model_name, f.hardware, f.test_type)


# --- recording -------------------------------------------------------------------------------


@router.post(
    "/runs",
    status_code=201,
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses=CONFLICT,
)
def record_run(
    doc: RunCreate,
    response: Response,
    db: SuiteDb,
    prefer: Annotated[
        str | None,
        Header(
            description="`return=minimal` answers with the run's summary (no child rows): "
            "the fast path for large documents",
        ),
    ] = None,
) -> RunRead | RunSummary:
    """Record a whole run (results, steps, metrics, tags, artifacts) atomically."""
    with db.writing() as session:
        run_id = service.record_run(session, doc)
    if prefer and "return=minimal" in prefer.replace(" ", "").lower():
        response.headers["Preference-Applied"] = "return=minimal"
        with db.reading() as session:
            return RunSummary.model_validate(store.run_summary(session, run_id))
    return read_as(RunRead, service.run_detail, db, run_id)


@router.patch(
    "/run/{run_id}", response_model=RunRead, dependencies=WRITE, responses={**NOT_FOUND, **CONFLICT}
)
def update_run(run_id: str, upd: RunUpdate, db: SuiteDb) -> RunRead:
    """Change only the fields sent (status, progress, current_step, error, ...)."""
    with db.writing() as session:
        service.update_run(session, run_id, upd)
    return read_as(RunRead, service.run_detail, db, run_id)


add_child_routes(router, ROUTES)


@router.post("/run/{run_id}/artifacts", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_artifacts(run_id: str, artifacts: list[ArtifactIn], db: SuiteDb) -> list[ArtifactRead]:
    """Record files a run produced (a known path is updated)."""
    with db.writing() as session:
        service.add_artifacts(session, run_id, artifacts)
    return read_as(RunRead, service.run_detail, db, run_id).artifacts


@router.put(
    "/run/{run_id}/results", response_model=RunRead, dependencies=WRITE, responses=NOT_FOUND
)
def put_results(run_id: str, results: ResultsIn, db: SuiteDb) -> RunRead:
    """Replace a run's results (counts derived from test_details when given)."""
    with db.writing() as session:
        service.put_results(session, run_id, results)
    return read_as(RunRead, service.run_detail, db, run_id)


@router.post("/run/{run_id}/cases", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_cases(
    run_id: str, cases: Annotated[list[CaseIn], Body(max_length=1_000_000)], db: SuiteDb
) -> dict[str, int]:
    """Append per-test outcomes to a run (as each test finishes)."""
    with db.writing() as session:
        added = service.add_cases(session, run_id, cases)
    return {"added": added}


@router.post(
    "/run/{run_id}/complete",
    response_model=RunRead,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def complete_run(run_id: str, db: SuiteDb, body: RunComplete | None = None) -> RunRead:
    """End a run with a terminal status (default completed)."""
    with db.writing() as session:
        service.complete_run(session, run_id, body or RunComplete())
    return read_as(RunRead, service.run_detail, db, run_id)


@router.post(
    "/batches",
    status_code=201,
    response_model=BatchRead,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def create_batch(body: BatchCreate, db: SuiteDb) -> BatchRead:
    """Create a batch, optionally with its member runs."""
    with db.writing() as session:
        batch_id = service.create_batch(session, body)
    return read_as(BatchRead, service.batch_detail, db, batch_id)


@router.put(
    "/batch/{batch_id}/runs/{run_id}",
    response_model=BatchRead,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
def add_to_batch(batch_id: str, run_id: str, db: SuiteDb) -> BatchRead:
    """Make a run a member of a batch."""
    with db.writing() as session:
        service.add_to_batch(session, batch_id, run_id)
    return read_as(BatchRead, service.batch_detail, db, batch_id)


# --- reads -----------------------------------------------------------------------------------


@router.get("/runs", response_model=list[RunSummary])
def list_runs(db: SuiteDb, page: PageDep, f: Annotated[RunFilter, Query()]) -> Response:
    """List runs, newest first; the total is in X-Total-Count."""
    filters = store.RunFilter(
        **f.model_dump(exclude={"status", "outcome"}),
        status=[s.value for s in f.status],
        outcome=[o.value for o in f.outcome],
    )
    with db.reading() as session:
        rows, total = store.list_runs(session, filters, page)
    return rows_response(rows, total=total)


@router.get("/run/{run_id}", response_model=RunRead, responses=NOT_FOUND)
def get_run(run_id: str, db: SuiteDb) -> Response:
    """Return a run with its results, per-test details, steps, metrics, tags and artifacts."""
    with db.reading() as session:
        return rows_response(service.run_detail(session, run_id))


add_batch_reads(router, ROUTES)


@router.get("/models/stats", response_model=list[ModelStats])
def model_stats(db: SuiteDb, f: Annotated[StatsFilter, Query()]) -> Response:
    """Summarise runs per model (counts, tests, pass rate, durations), most runs first."""
    with db.reading() as session:
        return rows_response(store.model_stats(session, scope(f)))


@router.get("/hardware/stats", response_model=list[HardwareStats])
def hardware_stats(db: SuiteDb, f: Annotated[StatsFilter, Query()]) -> Response:
    """Summarise runs per device (a run on two devices counts for both)."""
    with db.reading() as session:
        return rows_response(store.hardware_stats(session, scope(f)))


@router.get("/performance", response_model=PerformanceReport)
def performance(
    db: SuiteDb,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
    model_name: str | None = None,
) -> Response:
    """Report the last `days` of runs: per day, model, device, latest runs and metrics."""
    s = store.Scope(window_start(days), model_name, None, None)
    with db.reading() as session:
        report = {
            "days": days,
            "model_name": model_name,
            "daily_stats": store.daily_stats(session, s),
            "model_stats": store.model_stats(session, s),
            "hardware_stats": store.hardware_stats(session, s),
            "latest_runs": store.latest_runs(session, s),
            "performance_metrics": store.metric_stats(session, s),
            "generated_at": utcnow(),
        }
    return rows_response(report)


@router.post("/search", response_model=list[RunSummary])
def search(body: SearchBody, db: SuiteDb) -> Response:
    """Find runs whose id, model, hardware, test type, status or tag value contain the text."""
    with db.reading() as session:
        return rows_response(store.search_runs(session, body.query, body.limit))


# --- export, import, delete ------------------------------------------------------------------


add_transfer_routes(router, ROUTES)


@router.delete("/run/{run_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_run(run_id: str, db: SuiteDb) -> Deleted:
    """Delete a run and every row that belongs to it."""
    with db.writing() as session:
        counts = service.delete_run(session, run_id)
    return transfer.deleted("run", run_id, counts)


add_batch_delete(router, ROUTES)
