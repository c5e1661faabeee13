"""HTTP routes of the Test Suite database API (/api/test/db): parse → service → commit → respond."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from fastapi import Path as PathParam

from app.components.test_suite import service, store
from app.components.test_suite.schemas import (
    ArtifactIn,
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
    RunOutcome,
    RunRead,
    RunSummary,
    RunUpdate,
    SearchBody,
    StepBody,
    TagsBody,
)
from app.core.context import AppContext
from app.core.models import utcnow
from app.core.pagination import Page, page_params, set_total
from app.core.responses import rows_response
from app.core.schemas import (
    CONFLICT,
    NOT_FOUND,
    Deleted,
    StepRead,
)
from app.core.stats import window_start
from app.core.statuses import BatchStatus, RunStatus
from app.core.transfer_routes import add_delete_batch_route, add_transfer_routes

COMPONENT = service.COMPONENT


def build_db_router(ctx: AppContext) -> APIRouter:
    """Return the /api/test/db router."""
    router = APIRouter(
        prefix="/api/test/db", tags=["test-db"], dependencies=[Depends(ctx.require_read())]
    )
    write = [Depends(ctx.require_write())]

    def db() -> Any:
        return ctx.database(COMPONENT)

    def detail(run_id: str) -> RunRead:
        with db().reading() as session:
            return RunRead.model_validate(service.run_detail(session, run_id))

    # --- recording ---------------------------------------------------------------------------

    @router.post(
        "/runs",
        status_code=201,
        response_model=RunRead | RunSummary,
        dependencies=write,
        responses=CONFLICT,
    )
    def record_run(
        doc: RunCreate,
        response: Response,
        prefer: str | None = Header(
            None,
            description="`return=minimal` answers with the run's summary (no child rows): "
            "the fast path for large documents",
        ),
    ) -> RunRead | RunSummary:
        """Record a whole run (results, steps, metrics, tags, artifacts) atomically."""
        with db().writing() as session:
            run_id = service.record_run(session, doc)
        if prefer and "return=minimal" in prefer.replace(" ", "").lower():
            response.headers["Preference-Applied"] = "return=minimal"
            with db().reading() as session:
                return RunSummary.model_validate(store.run_summary(session, run_id))
        return detail(run_id)

    @router.patch(
        "/run/{run_id}",
        response_model=RunRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def update_run(run_id: str, upd: RunUpdate) -> RunRead:
        """Change only the fields sent (status, progress, current_step, error, ...)."""
        with db().writing() as session:
            service.update_run(session, run_id, upd)
        return detail(run_id)

    @router.put(
        "/run/{run_id}/steps/{step_name:path}",
        response_model=StepRead,
        dependencies=write,
        responses=NOT_FOUND,
    )
    def put_step(
        run_id: str,
        step: StepBody,
        step_name: str = PathParam(
            ..., min_length=1, max_length=1024, description="URL-encoded; may contain '/'"
        ),
    ) -> StepRead:
        """Create or update one step of a run."""
        with db().writing() as session:
            service.put_step(session, run_id, step_name, step)
            row = store.get_step(session, run_id, step_name)
            return StepRead.model_validate(row, from_attributes=True)

    @router.post("/run/{run_id}/metrics", status_code=201, dependencies=write, responses=NOT_FOUND)
    def add_metrics(
        run_id: str, metrics: Annotated[MetricsBody, Body(max_length=1_000_000)]
    ) -> dict[str, int]:
        """Append metric points to a run's series."""
        with db().writing() as session:
            added = service.add_metrics(session, run_id, metrics)
        return {"added": added}

    @router.put("/run/{run_id}/tags", dependencies=write, responses=NOT_FOUND)
    def put_tags(
        run_id: str,
        tags: Annotated[TagsBody, Body()],
        merge: bool = Query(False, description="keep tags not sent"),
    ) -> dict[str, str]:
        """Set a run's tags (replacing them, or merged with `merge=true`)."""
        with db().writing() as session:
            service.put_tags(session, run_id, tags, merge=merge)
        return detail(run_id).tags

    @router.post(
        "/run/{run_id}/artifacts", status_code=201, dependencies=write, responses=NOT_FOUND
    )
    def add_artifacts(run_id: str, artifacts: list[ArtifactIn]) -> list[dict[str, Any]]:
        """Record files a run produced (a known path is updated)."""
        with db().writing() as session:
            service.add_artifacts(session, run_id, artifacts)
        return [a.model_dump() for a in detail(run_id).artifacts]

    @router.put(
        "/run/{run_id}/results", response_model=RunRead, dependencies=write, responses=NOT_FOUND
    )
    def put_results(run_id: str, results: ResultsIn) -> RunRead:
        """Replace a run's results (counts derived from test_details when given)."""
        with db().writing() as session:
            service.put_results(session, run_id, results)
        return detail(run_id)

    @router.post("/run/{run_id}/cases", status_code=201, dependencies=write, responses=NOT_FOUND)
    def add_cases(
        run_id: str, cases: list[CaseIn] = Body(..., max_length=1_000_000)
    ) -> dict[str, int]:
        """Append per-test outcomes to a run (as each test finishes)."""
        with db().writing() as session:
            added = service.add_cases(session, run_id, cases)
        return {"added": added}

    @router.post(
        "/run/{run_id}/complete",
        response_model=RunRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def complete_run(run_id: str, body: RunComplete | None = None) -> RunRead:
        """End a run with a terminal status (default completed)."""
        with db().writing() as session:
            service.complete_run(session, run_id, body or RunComplete())
        return detail(run_id)

    @router.post(
        "/batches",
        status_code=201,
        response_model=BatchRead,
        dependencies=write,
        responses={**NOT_FOUND, **CONFLICT},
    )
    def create_batch(body: BatchCreate) -> BatchRead:
        """Create a batch, optionally with its member runs."""
        with db().writing() as session:
            batch_id = service.create_batch(session, body)
        return get_batch(batch_id)

    @router.put(
        "/batch/{batch_id}/runs/{run_id}",
        response_model=BatchRead,
        dependencies=write,
        responses=NOT_FOUND,
    )
    def add_to_batch(batch_id: str, run_id: str) -> BatchRead:
        """Make a run a member of a batch."""
        with db().writing() as session:
            service.add_to_batch(session, batch_id, run_id)
        return get_batch(batch_id)

    # --- reads -------------------------------------------------------------------------------

    @router.get("/runs", response_model=list[RunSummary])
    def list_runs(
        page: Page = Depends(page_params),
        status: list[RunStatus] = Query(default_factory=list),
        model_name: str | None = None,
        test_type: str | None = None,
        hardware: str | None = None,
        batch_id: str | None = None,
        tag: str | None = Query(None, description="name:value (or name)"),
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: list[RunOutcome] = Query(default_factory=list),
    ) -> Response:
        """List runs, newest first; the total is in X-Total-Count."""
        f = store.RunFilter(
            status=[s.value for s in status],
            model_name=model_name,
            test_type=test_type,
            hardware=hardware,
            batch_id=batch_id,
            tag=tag,
            since=since,
            until=until,
            outcome=[o.value for o in outcome],
        )
        with db().reading() as session:
            rows, total = store.list_runs(session, f, page)
        return rows_response(rows, total=total)

    @router.get("/run/{run_id}", response_model=RunRead, responses=NOT_FOUND)
    def get_run(run_id: str) -> Response:
        """Return a run with its results, per-test details, steps, metrics, tags and artifacts."""
        with db().reading() as session:
            return rows_response(service.run_detail(session, run_id))

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
        """Return a batch, its members counted by status, and its runs."""
        with db().reading() as session:
            return BatchRead.model_validate(service.batch_detail(session, batch_id))

    def scope(
        days: int | None, model_name: str | None, hardware: str | None, test_type: str | None
    ) -> store.Scope:
        return store.Scope(window_start(days), model_name, hardware, test_type)

    @router.get("/models/stats", response_model=list[ModelStats])
    def model_stats(
        days: int | None = Query(None, ge=1, le=3650),
        model_name: str | None = None,
        hardware: str | None = None,
        test_type: str | None = None,
    ) -> Response:
        """Summarise runs per model (counts, tests, pass rate, durations), most runs first."""
        with db().reading() as session:
            rows = store.model_stats(session, scope(days, model_name, hardware, test_type))
        return rows_response(rows)

    @router.get("/hardware/stats", response_model=list[HardwareStats])
    def hardware_stats(
        days: int | None = Query(None, ge=1, le=3650),
        model_name: str | None = None,
        hardware: str | None = None,
        test_type: str | None = None,
    ) -> Response:
        """Summarise runs per device (a run on two devices counts for both)."""
        with db().reading() as session:
            rows = store.hardware_stats(session, scope(days, model_name, hardware, test_type))
        return rows_response(rows)

    @router.get("/performance", response_model=PerformanceReport)
    def performance(days: int = Query(30, ge=1, le=365), model_name: str | None = None) -> Response:
        """Report the last `days` of runs: per day, model, device, latest runs and metrics."""
        s = scope(days, model_name, None, None)
        with db().reading() as session:
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
    def search(body: SearchBody) -> Response:
        """Find runs whose id, model, hardware, test type, status or tag value contain the text."""
        with db().reading() as session:
            rows = store.search_runs(session, body.query, body.limit)
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

    @router.delete("/run/{run_id}", response_model=Deleted, dependencies=write, responses=NOT_FOUND)
    def delete_run(run_id: str) -> Deleted:
        """Delete a run and every row that belongs to it."""
        with db().writing() as session:
            counts = service.delete_run(session, run_id)
        return Deleted(message=f"run {run_id} deleted", timestamp=utcnow(), deleted=counts)

    add_delete_batch_route(
        router,
        ctx,
        COMPONENT,
        write=write,
        members="runs",
        delete_batch=lambda session, batch_id, with_members: service.delete_batch(
            session, batch_id, delete_runs=with_members
        ),
    )

    return router
