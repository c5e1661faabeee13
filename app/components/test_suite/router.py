"""HTTP routes of the Test Suite database API (/api/test/db): parse → service → commit → respond."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from fastapi.responses import FileResponse

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
    MetricsBody,
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
    TagsBody,
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
    StepRead,
)
from app.core.stats import window_start
from app.core.statuses import BatchStatus

COMPONENT = service.COMPONENT

SuiteDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Test Suite's database."""

router = APIRouter(prefix="/api/test/db", tags=["test-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]


def run_read(db: Database, run_id: str) -> RunRead:
    """Read a run with everything that belongs to it (after a write has committed)."""
    with db.reading() as session:
        return RunRead.model_validate(service.run_detail(session, run_id))


PreferMinimal = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="`return=minimal` answers with the run's summary (no child rows): what a "
        "client that sends progress often wants (the pytest plugin does)",
    ),
]


def run_answer(
    db: Database, run_id: str, prefer: str | None, response: Response
) -> RunRead | RunSummary:
    """Return the run, or only its summary when the client sent `Prefer: return=minimal`."""
    if prefer and "return=minimal" in prefer.replace(" ", "").lower():
        response.headers["Preference-Applied"] = "return=minimal"
        with db.reading() as session:
            return RunSummary.model_validate(store.run_summary(session, run_id))
    return run_read(db, run_id)


def batch_read(db: Database, batch_id: str) -> BatchRead:
    """Read a batch with its members counted by status and its runs."""
    with db.reading() as session:
        return BatchRead.model_validate(service.batch_detail(session, batch_id))


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
    return run_read(db, run_id)


@router.patch(
    "/run/{run_id}",
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def update_run(
    run_id: str, upd: RunUpdate, db: SuiteDb, response: Response, prefer: PreferMinimal = None
) -> RunRead | RunSummary:
    """Change only the fields sent (status, progress, current_step, error, ...)."""
    with db.writing() as session:
        service.update_run(session, run_id, upd)
    return run_answer(db, run_id, prefer, response)


@router.put(
    "/run/{run_id}/steps/{step_name:path}",
    response_model=StepRead,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
def put_step(
    run_id: str,
    step: StepBody,
    step_name: Annotated[
        str, Path(min_length=1, max_length=1024, description="URL-encoded; may contain '/'")
    ],
    db: SuiteDb,
) -> StepRead:
    """Create or update one step of a run."""
    with db.writing() as session:
        service.put_step(session, run_id, step_name, step)
        row = store.get_step(session, run_id, step_name)
        return StepRead.model_validate(row, from_attributes=True)


@router.post("/run/{run_id}/metrics", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_metrics(
    run_id: str, metrics: Annotated[MetricsBody, Body(max_length=1_000_000)], db: SuiteDb
) -> dict[str, int]:
    """Append metric points to a run's series."""
    with db.writing() as session:
        added = service.add_metrics(session, run_id, metrics)
    return {"added": added}


@router.put("/run/{run_id}/tags", dependencies=WRITE, responses=NOT_FOUND)
def put_tags(
    run_id: str,
    tags: Annotated[TagsBody, Body()],
    db: SuiteDb,
    merge: Annotated[bool, Query(description="keep tags not sent")] = False,
) -> dict[str, str]:
    """Set a run's tags (replacing them, or merged with `merge=true`)."""
    with db.writing() as session:
        service.put_tags(session, run_id, tags, merge=merge)
    return run_read(db, run_id).tags


@router.post("/run/{run_id}/artifacts", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_artifacts(run_id: str, artifacts: list[ArtifactIn], db: SuiteDb) -> list[ArtifactRead]:
    """Record files a run produced (a known path is updated)."""
    with db.writing() as session:
        service.add_artifacts(session, run_id, artifacts)
    return run_read(db, run_id).artifacts


@router.put(
    "/run/{run_id}/results", response_model=RunRead, dependencies=WRITE, responses=NOT_FOUND
)
def put_results(run_id: str, results: ResultsIn, db: SuiteDb) -> RunRead:
    """Replace a run's results (counts derived from test_details when given)."""
    with db.writing() as session:
        service.put_results(session, run_id, results)
    return run_read(db, run_id)


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
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def complete_run(
    run_id: str,
    db: SuiteDb,
    response: Response,
    body: RunComplete | None = None,
    prefer: PreferMinimal = None,
) -> RunRead | RunSummary:
    """End a run with a terminal status (default completed)."""
    with db.writing() as session:
        service.complete_run(session, run_id, body or RunComplete())
    return run_answer(db, run_id, prefer, response)


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
    return batch_read(db, batch_id)


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
    return batch_read(db, batch_id)


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


@router.get("/batches", response_model=list[BatchSummary])
def list_batches(
    response: Response, db: SuiteDb, page: PageDep, status: BatchStatus | None = None
) -> list[BatchSummary]:
    """List batches, newest first; the total is in X-Total-Count."""
    with db.reading() as session:
        rows, total = service.list_batches(session, status.value if status else None, page)
    set_total(response, total)
    return [BatchSummary.model_validate(r) for r in rows]


@router.get("/batch/{batch_id}", response_model=BatchRead, responses=NOT_FOUND)
def get_batch(batch_id: str, db: SuiteDb) -> BatchRead:
    """Return a batch, its members counted by status, and its runs."""
    return batch_read(db, batch_id)


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


@router.post(
    "/export",
    response_model=ExportResult,
    dependencies=WRITE,
    responses={**BAD_REQUEST, **CONFLICT},
)
def export(body: ExportIn, db: SuiteDb, settings: SettingsDep) -> ExportResult:
    """Write an export (json, jsonl, csv, parquet) into the export folder."""
    return transfer.write_export(db, COMPONENT, settings.folder("export"), body, service.export)


@router.get("/export", dependencies=WRITE, response_class=FileResponse)
def download(
    db: SuiteDb,
    settings: SettingsDep,
    format: Annotated[ExportFormat, Query()] = "json",
    table: Annotated[str | None, Query(description="jsonl/csv/parquet: the table to write")] = None,
) -> FileResponse:
    """Stream an export as a download (the full JSON document, or one table)."""
    body = ExportIn(filename=f"{COMPONENT}-export.{format}", format=format, table=table)
    return transfer.download(db, COMPONENT, settings, body, service.export, format)


@router.post("/import", response_model=ImportResult, dependencies=WRITE)
def import_(document: ImportDocument, db: SuiteDb) -> ImportResult:
    """Load an export document back, atomically and idempotently."""
    return transfer.import_into(db, document, service.import_document)


@router.delete("/run/{run_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_run(run_id: str, db: SuiteDb) -> Deleted:
    """Delete a run and every row that belongs to it."""
    with db.writing() as session:
        counts = service.delete_run(session, run_id)
    return transfer.deleted("run", run_id, counts)


@router.delete("/batch/{batch_id}", response_model=Deleted, dependencies=WRITE, responses=NOT_FOUND)
def delete_batch(
    batch_id: str, db: SuiteDb, delete_runs: Annotated[bool, Query()] = False
) -> Deleted:
    """Delete a batch; its runs too with `delete_runs=true`, else they are only unlinked."""
    with db.writing() as session:
        counts = service.delete_batch(session, batch_id, delete_runs=delete_runs)
    return transfer.deleted("batch", batch_id, counts)
