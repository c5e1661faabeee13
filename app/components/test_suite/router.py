"""HTTP routes of the Test Suite database API (/api/test/db): parse → service → commit → respond."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from app.components.test_suite import schemas, service, store
from app.components.test_suite.schemas import (
    ArtifactIn,
    ArtifactRead,
    CaseColumns,
    ResultsIn,
    RunComplete,
    RunCreate,
    RunFilter,
    RunRead,
    RunSummary,
    RunUpdate,
    StepBody,
)
from app.core.columns import MaxRows
from app.core.db import Database
from app.core.db_routes import (
    DbRoutes,
    add_batch_writes,
    add_child_routes,
    add_export_and_delete_routes,
    add_read_routes,
    read_as,
)
from app.core.deps import AnswersMinimal, PrefersMinimal, ReadAccess, WriteAccess, database_of
from app.core.pagination import PageDep
from app.core.responses import rows_response
from app.core.schemas import CONFLICT, NOT_FOUND

COMPONENT = service.COMPONENT

SuiteDb = Annotated[Database, Depends(database_of(COMPONENT))]
"""The Test Suite's database."""

router = APIRouter(prefix="/api/test/db", tags=["test-db"], dependencies=[ReadAccess])
WRITE = [WriteAccess]
DOCS = {
    "get": "Return a run with its results, per-test details, steps, metrics, tags and artifacts.",
    "search": (
        "Find runs whose id, model, hardware, test type, status or tag value contain the text."
    ),
    "add_to_batch": "Make a run a member of a batch.",
    "model_stats": (
        "Summarise runs per model (counts, tests, pass rate, durations), most runs first."
    ),
    "hardware_stats": "Summarise runs per device (a run on two devices counts for both).",
}
ROUTES = DbRoutes(
    noun="run",
    service=service,
    store=store,
    schemas=schemas,
    step_in=StepBody,
    detail=service.run_detail,
    read=RunRead,
    summary=RunSummary,
    latest=store.latest_runs,
    search=store.search_runs,
    delete=service.delete_run,
    docs=DOCS,
)
"""What the routes shared with every component (`app.core.db_routes`) need from this one."""


def run_answer(db: Database, run_id: str, minimal: bool) -> RunRead | RunSummary:
    """Return the run as committed: its summary, or all of it.

    Read in a session of the caller's, not in the group commit's transaction: the writer
    applies every write of the database one after another, and a whole run's read (eight
    statements) there was most of its time (py-spy, BENCHMARKS.md); reads run side by side.
    """
    if minimal:
        return read_as(RunSummary, service.run_summary, db, run_id)
    return read_as(RunRead, service.run_detail, db, run_id)


# --- recording -------------------------------------------------------------------------------


@router.post(
    "/runs",
    status_code=201,
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses=CONFLICT,
)
def record_run(doc: RunCreate, db: SuiteDb, minimal: PrefersMinimal) -> RunRead | RunSummary:
    """Record a whole run (results, steps, metrics, tags, artifacts) atomically."""
    # A new run's child rows join the group's one insert per table (app.core.group_commit).
    recorded = db.write(
        lambda session: service.recorded_run(session, doc), combine=True, key=doc.run_id
    )
    if minimal and recorded.summary is not None:  # a new run's, as its transaction wrote it
        return RunSummary.model_validate(recorded.summary)
    return run_answer(db, recorded.run_id, minimal)


@router.patch(
    "/run/{run_id}",
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def update_run(
    run_id: str, upd: RunUpdate, db: SuiteDb, minimal: PrefersMinimal
) -> RunRead | RunSummary:
    """Change only the fields sent (status, progress, current_step, error, ...)."""
    written = db.write(lambda session: service.update_run(session, run_id, upd, summary=minimal))
    if minimal:  # built in the transaction that wrote it: no second read
        return RunSummary.model_validate(written)
    return run_answer(db, run_id, minimal)


add_child_routes(router, ROUTES)


@router.post("/run/{run_id}/artifacts", status_code=201, dependencies=WRITE, responses=NOT_FOUND)
def add_artifacts(
    run_id: str, artifacts: list[ArtifactIn], db: SuiteDb, minimal: PrefersMinimal
) -> list[ArtifactRead]:
    """Record files a run produced (a known path is updated); answer the run's artifacts (with
    return=minimal, only those sent), read in the transaction that wrote them."""
    rows = db.write(lambda session: service.add_artifacts(session, run_id, artifacts))
    sent = {a.artifact_path for a in artifacts}
    return [
        ArtifactRead.model_validate(a) for a in rows if not minimal or a["artifact_path"] in sent
    ]


@router.put(
    "/run/{run_id}/results",
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
def put_results(
    run_id: str, results: ResultsIn, db: SuiteDb, minimal: PrefersMinimal
) -> RunRead | RunSummary:
    """Replace a run's results (counts derived from test_details when given)."""
    db.write(lambda session: service.put_results(session, run_id, results))
    return run_answer(db, run_id, minimal)


@router.post(
    "/run/{run_id}/cases",
    status_code=201,
    dependencies=[*WRITE, AnswersMinimal],
    responses=NOT_FOUND,
)
def add_cases(
    run_id: str, cases: Annotated[CaseColumns, MaxRows(1_000_000), Body()], db: SuiteDb
) -> dict[str, int]:
    """Append per-test outcomes to a run (as each test finishes)."""
    return {"added": db.write(lambda session: service.add_cases(session, run_id, cases))}


@router.post(
    "/run/{run_id}/complete",
    response_model=RunRead | RunSummary,
    dependencies=WRITE,
    responses={**NOT_FOUND, **CONFLICT},
)
def complete_run(
    run_id: str,
    db: SuiteDb,
    minimal: PrefersMinimal,
    body: RunComplete | None = None,
) -> RunRead | RunSummary:
    """End a run with a terminal status (default completed)."""
    db.write(lambda session: service.complete_run(session, run_id, body or RunComplete()))
    return run_answer(db, run_id, minimal)


add_batch_writes(router, ROUTES)


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


add_read_routes(router, ROUTES)


# --- export, import, delete ------------------------------------------------------------------


add_export_and_delete_routes(router, ROUTES)
