"""The database routes every component declares alike, written once on shared handlers.

A component's `router.py` keeps the routes that are its own and calls these `add_*` functions
where the shared ones belong, with one `DbRoutes`: its names, models and service functions.
Paths, parameters, models, status codes and OpenAPI operations are each component's own.
"""

# No `from __future__ import annotations`: FastAPI reads these routes' annotations at run time,
# and a body or query model is the component's own class held in `DbRoutes`. Under
# `if TYPE_CHECKING:` mypy sees it as `BaseModel`; FastAPI gets the real class.

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeAlias, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.core import transfer_routes as transfer
from app.core.columns import MaxRows
from app.core.db import Database
from app.core.deps import AnswersMinimal, PrefersMinimal, SettingsDep, WriteAccess, database_of
from app.core.exchange import Exchange
from app.core.models import utcnow
from app.core.pagination import Page, PageDep, set_total
from app.core.records import Children
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
    MetricColumns,
    Metrics,
    SearchIn,
    StepRead,
    Tags,
)
from app.core.stats import Scope, window_start
from app.core.statuses import BatchStatus

WRITE = [WriteAccess]
WRITE_ANSWERS_MINIMAL = [WriteAccess, AnswersMinimal]
"""A write whose answer already is the short form of what it wrote (Prefer is applied as is)."""
M = TypeVar("M", bound=BaseModel)
Rows = list[dict[str, Any]]
Detail = Callable[[Session, str], dict[str, Any]]
STEP_NAME_DOC = "URL-encoded; may contain '/'"
Model = type[BaseModel]


class DbService(Protocol):
    """The functions of a component's `service` module the shared routes call, by name."""

    @property
    def COMPONENT(self) -> str:
        """The component's name."""

    @property
    def EXCHANGE(self) -> Exchange:
        """The component's export and import."""

    def put_step(self, session: Session, key: str, name: str, step: Any, /) -> dict[str, Any]:
        """Create or update one step of an owner row."""

    def add_metrics(self, session: Session, key: str, metrics: Metrics, /) -> int:
        """Append metric points to an owner row."""

    def put_tags(self, session: Session, key: str, tags: dict[str, str], merge: bool, /) -> None:
        """Set an owner row's tags."""

    def create_batch(self, session: Session, body: Any, /) -> str:
        """Create a batch and return its id."""

    def add_to_batch(self, session: Session, batch_id: str, key: str, /) -> None:
        """Make an owner row a member of a batch."""

    def batch_detail(self, session: Session, batch_id: str, /) -> dict[str, Any]:
        """Return a batch with its members."""

    def batch_of(self, session: Session, batch_id: str, /) -> dict[str, Any]:
        """Return a batch without its members."""

    def list_batches(self, session: Session, status: str | None, page: Page, /) -> tuple[Rows, int]:
        """Return a page of batches and the total."""

    def delete_batch(self, session: Session, batch_id: str, members: bool, /) -> dict[str, int]:
        """Delete a batch (and its members when asked)."""


class DbStore(Protocol):
    """The queries of a component's `store` module the shared routes call, by name."""

    @property
    def CHILDREN(self) -> Children[Any]:
        """The owner rows' steps, metrics and tags."""

    @property
    def Scope(self) -> Callable[..., Scope]:
        """The component's statistics scope."""

    def model_stats(self, session: Session, scope: Any, /) -> Rows:
        """Summarise per model."""

    def hardware_stats(self, session: Session, scope: Any, /) -> Rows:
        """Summarise per device."""

    def daily_stats(self, session: Session, scope: Any, /) -> Rows:
        """Summarise per day."""

    def metric_stats(self, session: Session, scope: Any, /) -> Rows:
        """Summarise metrics."""


class DbSchemas(Protocol):
    """The models of a component's `schemas` module the shared routes use, by name."""

    @property
    def ExportIn(self) -> Model:
        """POST /export's body."""

    @property
    def BatchCreate(self) -> Model:
        """POST /batches' body."""

    @property
    def BatchRead(self) -> Model:
        """A batch with its members."""

    @property
    def BatchSummary(self) -> Model:
        """A batch in a list."""

    @property
    def StatsFilter(self) -> Model:
        """The query of the statistics routes."""

    @property
    def ModelStats(self) -> Model:
        """A row of GET /models/stats."""

    @property
    def HardwareStats(self) -> Model:
        """A row of GET /hardware/stats."""

    @property
    def PerformanceReport(self) -> Model:
        """GET /performance's answer."""


@dataclass(frozen=True)
class DbRoutes:
    """One component's part in the shared routes (`noun` names its owner rows: run, task).

    `docs` holds the docstrings of shared routes whose words differ between components.
    """

    noun: str
    service: DbService
    store: DbStore
    schemas: DbSchemas
    step_in: Model
    detail: Detail
    read: Model
    summary: Model
    latest: Callable[[Session, Any], Rows]
    search: Callable[[Session, str, int], Rows]
    delete: Callable[[Session, str], dict[str, int]]
    docs: Mapping[str, str]

    @property
    def component(self) -> str:
        """Return the component's name."""
        return self.service.COMPONENT

    @property
    def key(self) -> str:
        """Return the owner rows' key and path parameter (`run_id`, `task_id`)."""
        return f"{self.noun}_id"

    def database(self) -> Callable[..., Database]:
        """Return the dependency that yields the component's `Database`."""
        return database_of(self.component)


def add_child_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare PUT .../steps/{step_name}, POST .../metrics and PUT .../tags of an owner row."""
    add_step_route(router, spec)
    add_metric_and_tag_routes(router, spec)


def add_step_route(router: APIRouter, spec: DbRoutes) -> None:
    """Declare PUT /<noun>/{key}/steps/{step_name}: create or update one step."""
    noun, db_of = spec.noun, spec.database()
    if TYPE_CHECKING:
        StepBody: TypeAlias = BaseModel
    else:
        StepBody = spec.step_in
    doc = f"Create or update one step of a {noun}."
    step_doc = spec.docs.get("step_name", STEP_NAME_DOC)

    @router.put(
        f"/{noun}/{{{spec.key}}}/steps/{{step_name:path}}",
        response_model=StepRead,
        dependencies=WRITE_ANSWERS_MINIMAL,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def put_step(
        key: Annotated[str, Path(alias=spec.key)],
        step: StepBody,
        step_name: Annotated[
            str,
            Path(
                min_length=1,
                max_length=1024,
                description=step_doc,
            ),
        ],
        db: Annotated[Database, Depends(db_of)],
    ) -> StepRead:
        """Create or update one step of an owner row."""

        # The answer is what the write stored (a PUT sends every field): no read-back.
        row = db.write(lambda session: spec.service.put_step(session, key, step_name, step))
        return StepRead.model_validate(row)


def add_metric_and_tag_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare POST /<noun>/{key}/metrics and PUT /<noun>/{key}/tags."""
    noun, db_of = spec.noun, spec.database()
    Key: TypeAlias = Annotated[str, Path(alias=spec.key)]
    doc = f"Append metric points to a {noun}'s series."

    @router.post(
        f"/{noun}/{{{spec.key}}}/metrics",
        status_code=201,
        dependencies=WRITE_ANSWERS_MINIMAL,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def add_metrics(
        key: Key,
        metrics: Annotated[MetricColumns, MaxRows(1_000_000), Body()],
        db: Annotated[Database, Depends(db_of)],
    ) -> dict[str, int]:
        """Append metric points to an owner row's series."""
        added = db.write(lambda session: spec.service.add_metrics(session, key, metrics))
        return {"added": added}

    doc = f"Set a {noun}'s tags (replacing them, or merged with `merge=true`)."

    @router.put(
        f"/{noun}/{{{spec.key}}}/tags",
        dependencies=WRITE_ANSWERS_MINIMAL,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def put_tags(
        key: Key,
        tags: Annotated[Tags, Body()],
        db: Annotated[Database, Depends(db_of)],
        merge: Annotated[bool, Query(description="keep tags not sent")] = False,
    ) -> dict[str, str]:
        """Set an owner row's tags."""

        def work(session: Session) -> dict[str, str]:
            spec.service.put_tags(session, key, tags, merge)
            if merge:  # what it has now, read in the transaction that wrote it
                return spec.store.CHILDREN.tags_of(session, key)
            return dict(sorted(tags.items()))  # exactly what was written, by name

        return db.write(work)


def add_read_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare the reads after GET /<noun>s: one owner row, batches, statistics, search."""
    add_owner_get(router, spec)
    add_batch_reads(router, spec)
    add_stats_routes(router, spec)
    add_search(router, spec)


def add_owner_get(router: APIRouter, spec: DbRoutes) -> None:
    """Declare GET /<noun>/{key}: one owner row with everything that belongs to it."""
    db_of, doc = spec.database(), spec.docs["get"]

    @router.get(
        f"/{spec.noun}/{{{spec.key}}}",
        response_model=spec.read,
        responses=NOT_FOUND,
        name=f"get_{spec.noun}",
        summary=doc.rstrip("."),
        description=doc,
    )
    def get_owner(
        key: Annotated[str, Path(alias=spec.key)], db: Annotated[Database, Depends(db_of)]
    ) -> Response:
        """Return an owner row with its child rows."""
        with db.reading() as session:
            return rows_response(spec.detail(session, key))


def add_search(router: APIRouter, spec: DbRoutes) -> None:
    """Declare POST /search over the owner rows."""
    db_of, doc = spec.database(), spec.docs["search"]
    if TYPE_CHECKING:
        Summary: TypeAlias = BaseModel
    else:
        Summary = spec.summary

    @router.post("/search", response_model=list[Summary], summary=doc.rstrip("."), description=doc)
    def search(body: SearchIn, db: Annotated[Database, Depends(db_of)]) -> Response:
        """Find owner rows whose fields or tags contain the text."""
        with db.reading() as session:
            return rows_response(spec.search(session, body.query, body.limit))


def add_batch_reads(router: APIRouter, spec: DbRoutes) -> None:
    """Declare GET /batches and GET /batch/{batch_id}."""
    db_of = spec.database()
    if TYPE_CHECKING:
        Summary: TypeAlias = BaseModel
    else:
        Summary = spec.schemas.BatchSummary

    doc = f"Return a batch, its members counted by status, and its {spec.noun}s."

    @router.get("/batches", response_model=list[Summary])
    def list_batches(
        response: Response,
        db: Annotated[Database, Depends(db_of)],
        page: PageDep,
        status: BatchStatus | None = None,
    ) -> list[BaseModel]:
        """List batches, newest first; the total is in X-Total-Count."""
        with db.reading() as session:
            rows, total = spec.service.list_batches(session, status.value if status else None, page)
        set_total(response, total)
        return [spec.schemas.BatchSummary.model_validate(r) for r in rows]

    @router.get(
        "/batch/{batch_id}",
        response_model=spec.schemas.BatchRead,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def get_batch(batch_id: str, db: Annotated[Database, Depends(db_of)]) -> BaseModel:
        """Return a batch with its members."""
        return read_as(spec.schemas.BatchRead, spec.service.batch_detail, db, batch_id)


def read_as(model: type[M], detail: Detail, db: Database, key: str) -> M:
    """Read a row's `detail` as `model` in a fresh session (after a write has committed)."""
    with db.reading() as session:
        return model.model_validate(detail(session, key))


def add_transfer_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare POST /export, GET /export (a download) and POST /import."""
    component, exchange, db_of = spec.component, spec.service.EXCHANGE, spec.database()
    if TYPE_CHECKING:
        ExportIn: TypeAlias = BaseModel
    else:
        ExportIn = spec.schemas.ExportIn

    @router.post(
        "/export",
        response_model=ExportResult,
        dependencies=WRITE,
        responses={**BAD_REQUEST, **CONFLICT},
    )
    def export(
        body: ExportIn, db: Annotated[Database, Depends(db_of)], settings: SettingsDep
    ) -> ExportResult:
        """Write an export (json, jsonl, csv, parquet) into the export folder."""
        folder = settings.folder("export")
        return transfer.write_export(db, component, folder, body, exchange.export)

    @router.get("/export", dependencies=WRITE, response_class=FileResponse)
    def download(
        db: Annotated[Database, Depends(db_of)],
        settings: SettingsDep,
        format: Annotated[ExportFormat, Query()] = "json",
        table: Annotated[
            str | None, Query(description="jsonl/csv/parquet: the table to write")
        ] = None,
    ) -> FileResponse:
        """Stream an export as a download (the full JSON document, or one table)."""
        body = spec.schemas.ExportIn(
            filename=f"{component}-export.{format}", format=format, table=table
        )
        return transfer.download(db, component, settings, body, exchange.export, format)

    @router.post("/import", response_model=ImportResult, dependencies=WRITE_ANSWERS_MINIMAL)
    def import_(document: ImportDocument, db: Annotated[Database, Depends(db_of)]) -> ImportResult:
        """Load an export document back, atomically and idempotently."""
        return transfer.import_into(db, document, exchange.import_document)


def add_export_and_delete_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare export, download and import, then the deletes of an owner row and a batch."""
    add_transfer_routes(router, spec)
    add_owner_delete(router, spec)
    add_batch_delete(router, spec)


def add_owner_delete(router: APIRouter, spec: DbRoutes) -> None:
    """Declare DELETE /<noun>/{key}: an owner row and every row that belongs to it."""
    noun, db_of = spec.noun, spec.database()
    doc = f"Delete a {noun} and every row that belongs to it."

    @router.delete(
        f"/{noun}/{{{spec.key}}}",
        response_model=Deleted,
        dependencies=WRITE_ANSWERS_MINIMAL,
        responses=NOT_FOUND,
        name=f"delete_{noun}",
        summary=doc.rstrip("."),
        description=doc,
    )
    def delete_owner(
        key: Annotated[str, Path(alias=spec.key)], db: Annotated[Database, Depends(db_of)]
    ) -> Deleted:
        """Delete an owner row and its child rows."""
        with db.writing() as session:
            counts = spec.delete(session, key)
        return transfer.deleted(noun, key, counts)


def add_batch_delete(router: APIRouter, spec: DbRoutes) -> None:
    """Declare DELETE /batch/{batch_id} (with `delete_<noun>s` to delete the members too)."""
    nouns, db_of = f"{spec.noun}s", spec.database()
    doc = (
        f"Delete a batch; its {nouns} too with `delete_{nouns}=true`, else they are only unlinked."
    )

    @router.delete(
        "/batch/{batch_id}",
        response_model=Deleted,
        dependencies=WRITE_ANSWERS_MINIMAL,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def delete_batch(
        batch_id: str,
        db: Annotated[Database, Depends(db_of)],
        members: Annotated[bool, Query(alias=f"delete_{nouns}")] = False,
    ) -> Deleted:
        """Delete a batch, and its members when asked."""
        with db.writing() as session:
            counts = spec.service.delete_batch(session, batch_id, members)
        return transfer.deleted("batch", batch_id, counts)


def add_batch_writes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare POST /batches and PUT /batch/{batch_id}/<noun>s/{key}."""
    noun, db_of, batch_read = spec.noun, spec.database(), spec.schemas.BatchRead
    batch_summary = spec.schemas.BatchSummary
    Key: TypeAlias = Annotated[str, Path(alias=spec.key)]
    if TYPE_CHECKING:
        BatchCreate: TypeAlias = BaseModel
    else:
        BatchCreate = spec.schemas.BatchCreate

    def batch_answer(batch_id: str, db: Database, minimal: bool) -> BaseModel:
        """The batch as committed: with its members, or (return=minimal) without them."""
        if minimal:
            return read_as(batch_summary, spec.service.batch_of, db, batch_id)
        return read_as(batch_read, spec.service.batch_detail, db, batch_id)

    doc = f"Create a batch, optionally with its member {noun}s."

    @router.post(
        "/batches",
        status_code=201,
        response_model=batch_read | batch_summary,
        dependencies=WRITE,
        responses={**NOT_FOUND, **CONFLICT},
        summary=doc.rstrip("."),
        description=doc,
    )
    def create_batch(
        body: BatchCreate, db: Annotated[Database, Depends(db_of)], minimal: PrefersMinimal
    ) -> BaseModel:
        """Create a batch, optionally with its members."""
        batch_id = db.write(lambda session: spec.service.create_batch(session, body))
        return batch_answer(batch_id, db, minimal)

    doc = spec.docs["add_to_batch"]

    @router.put(
        f"/batch/{{batch_id}}/{noun}s/{{{spec.key}}}",
        response_model=batch_read | batch_summary,
        dependencies=WRITE,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def add_to_batch(
        batch_id: str, key: Key, db: Annotated[Database, Depends(db_of)], minimal: PrefersMinimal
    ) -> BaseModel:
        """Make an owner row a member of a batch."""
        db.write(lambda session: spec.service.add_to_batch(session, batch_id, key))
        return batch_answer(batch_id, db, minimal)


def add_stats_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare GET /models/stats, GET /hardware/stats and GET /performance."""
    store, schemas, db_of = spec.store, spec.schemas, spec.database()
    if TYPE_CHECKING:
        StatsFilter: TypeAlias = BaseModel
        ModelStats: TypeAlias = BaseModel
        HardwareStats: TypeAlias = BaseModel
    else:
        StatsFilter, ModelStats = schemas.StatsFilter, schemas.ModelStats
        HardwareStats = schemas.HardwareStats

    def scope(f: BaseModel) -> Scope:
        days: int | None = getattr(f, "days", None)
        return store.Scope(window_start(days), **f.model_dump(exclude={"days"}))

    doc = spec.docs["model_stats"]

    @router.get(
        "/models/stats",
        response_model=list[ModelStats],
        summary=doc.rstrip("."),
        description=doc,
    )
    def model_stats(
        db: Annotated[Database, Depends(db_of)], f: Annotated[StatsFilter, Query()]
    ) -> Response:
        """Summarise owner rows per model."""
        with db.reading() as session:
            return rows_response(store.model_stats(session, scope(f)))

    doc = spec.docs["hardware_stats"]

    @router.get(
        "/hardware/stats",
        response_model=list[HardwareStats],
        summary=doc.rstrip("."),
        description=doc,
    )
    def hardware_stats(
        db: Annotated[Database, Depends(db_of)], f: Annotated[StatsFilter, Query()]
    ) -> Response:
        """Summarise owner rows per device."""
        with db.reading() as session:
            return rows_response(store.hardware_stats(session, scope(f)))

    add_performance_route(router, spec)


def add_performance_route(router: APIRouter, spec: DbRoutes) -> None:
    """Declare GET /performance: per day, model, device, the latest owner rows and metrics."""
    noun, store, db_of = spec.noun, spec.store, spec.database()
    doc = f"Report the last `days` of {noun}s: per day, model, device, latest {noun}s and metrics."

    @router.get(
        "/performance",
        response_model=spec.schemas.PerformanceReport,
        summary=doc.rstrip("."),
        description=doc,
    )
    def performance(
        db: Annotated[Database, Depends(db_of)],
        days: Annotated[int, Query(ge=1, le=365)] = 30,
        model_name: str | None = None,
    ) -> Response:
        """Report the last `days` of owner rows."""
        s = store.Scope(window_start(days), model_name)
        with db.reading() as session:
            report = {
                "days": days,
                "model_name": model_name,
                "daily_stats": store.daily_stats(session, s),
                "model_stats": store.model_stats(session, s),
                "hardware_stats": store.hardware_stats(session, s),
                f"latest_{noun}s": spec.latest(session, s),
                "performance_metrics": store.metric_stats(session, s),
                "generated_at": utcnow(),
            }
        return rows_response(report)
