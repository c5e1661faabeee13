"""The database routes every component declares alike, written once on shared handlers.

A component's `router.py` keeps the routes that are its own and calls these `add_*` functions
where the shared ones belong, with one `DbRoutes`: its names, models and service functions.
Paths, parameters, models, status codes and OpenAPI operations are each component's own.
"""

# No `from __future__ import annotations`: FastAPI reads these routes' annotations at run time,
# and some name a component's model held in `DbRoutes` (`Model` below), not a module global.

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.core import transfer_routes as transfer
from app.core.db import Database
from app.core.deps import SettingsDep, WriteAccess, database_of
from app.core.exchange import Exchange
from app.core.pagination import Page, PageDep, set_total
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
    StepRead,
    Tags,
)
from app.core.statuses import BatchStatus

WRITE = [WriteAccess]
M = TypeVar("M", bound=BaseModel)
Detail = Callable[[Session, str], dict[str, Any]]


@dataclass(frozen=True)
class DbRoutes:
    """One component's part in the shared routes (`noun` names its owner rows: run, task)."""

    component: str
    noun: str
    exchange: Exchange
    export_in: type[BaseModel]
    step_in: type[BaseModel]
    batch_read: type[BaseModel]
    batch_summary: type[BaseModel]
    put_step: Callable[[Session, str, str, Any], None]
    get_step: Callable[[Session, str, str], Any]
    add_metrics: Callable[[Session, str, list[MetricIn]], int]
    put_tags: Callable[[Session, str, dict[str, str], bool], None]
    detail: Detail
    batch_detail: Detail
    list_batches: Callable[[Session, str | None, Page], tuple[list[dict[str, Any]], int]]
    delete_batch: Callable[[Session, str, bool], dict[str, int]]
    step_name_doc: str = "URL-encoded; may contain '/'"

    @property
    def key(self) -> str:
        """Return the owner rows' key and path parameter (`run_id`, `task_id`)."""
        return f"{self.noun}_id"

    def database(self) -> Callable[..., Database]:
        """Return the dependency that yields the component's `Database`."""
        return database_of(self.component)


def add_child_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare PUT .../steps/{step_name}, POST .../metrics and PUT .../tags of an owner row."""
    noun, db_of = spec.noun, spec.database()
    Key: TypeAlias = Annotated[str, Path(alias=spec.key)]
    if TYPE_CHECKING:
        StepBody: TypeAlias = BaseModel
    else:
        StepBody = spec.step_in

    doc = f"Create or update one step of a {noun}."

    @router.put(
        f"/{noun}/{{{spec.key}}}/steps/{{step_name:path}}",
        response_model=StepRead,
        dependencies=WRITE,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def put_step(
        key: Key,
        step: StepBody,
        step_name: Annotated[
            str, Path(min_length=1, max_length=1024, description=spec.step_name_doc)
        ],
        db: Annotated[Database, Depends(db_of)],
    ) -> StepRead:
        """Create or update one step of an owner row."""
        with db.writing() as session:
            spec.put_step(session, key, step_name, step)
            row = spec.get_step(session, key, step_name)
            return StepRead.model_validate(row, from_attributes=True)

    doc = f"Append metric points to a {noun}'s series."

    @router.post(
        f"/{noun}/{{{spec.key}}}/metrics",
        status_code=201,
        dependencies=WRITE,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def add_metrics(
        key: Key,
        metrics: Annotated[list[MetricIn], Body(max_length=1_000_000)],
        db: Annotated[Database, Depends(db_of)],
    ) -> dict[str, int]:
        """Append metric points to an owner row's series."""
        with db.writing() as session:
            added = spec.add_metrics(session, key, metrics)
        return {"added": added}

    doc = f"Set a {noun}'s tags (replacing them, or merged with `merge=true`)."

    @router.put(
        f"/{noun}/{{{spec.key}}}/tags",
        dependencies=WRITE,
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
        with db.writing() as session:
            spec.put_tags(session, key, tags, merge)
        with db.reading() as session:
            current: dict[str, str] = spec.detail(session, key)["tags"]
        return current


def add_batch_reads(router: APIRouter, spec: DbRoutes) -> None:
    """Declare GET /batches and GET /batch/{batch_id}."""
    db_of = spec.database()
    if TYPE_CHECKING:
        Summary: TypeAlias = BaseModel
    else:
        Summary = spec.batch_summary

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
            rows, total = spec.list_batches(session, status.value if status else None, page)
        set_total(response, total)
        return [spec.batch_summary.model_validate(r) for r in rows]

    @router.get(
        "/batch/{batch_id}",
        response_model=spec.batch_read,
        responses=NOT_FOUND,
        summary=doc.rstrip("."),
        description=doc,
    )
    def get_batch(batch_id: str, db: Annotated[Database, Depends(db_of)]) -> BaseModel:
        """Return a batch with its members."""
        return read_as(spec.batch_read, spec.batch_detail, db, batch_id)


def read_as(model: type[M], detail: Detail, db: Database, key: str) -> M:
    """Read a row's `detail` as `model` in a fresh session (after a write has committed)."""
    with db.reading() as session:
        return model.model_validate(detail(session, key))


def add_transfer_routes(router: APIRouter, spec: DbRoutes) -> None:
    """Declare POST /export, GET /export (a download) and POST /import."""
    component, exchange, db_of = spec.component, spec.exchange, spec.database()
    if TYPE_CHECKING:
        ExportIn: TypeAlias = BaseModel
    else:
        ExportIn = spec.export_in

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
        body = spec.export_in(filename=f"{component}-export.{format}", format=format, table=table)
        return transfer.download(db, component, settings, body, exchange.export, format)

    @router.post("/import", response_model=ImportResult, dependencies=WRITE)
    def import_(document: ImportDocument, db: Annotated[Database, Depends(db_of)]) -> ImportResult:
        """Load an export document back, atomically and idempotently."""
        return transfer.import_into(db, document, exchange.import_document)


def add_batch_delete(router: APIRouter, spec: DbRoutes) -> None:
    """Declare DELETE /batch/{batch_id} (with `delete_<noun>s` to delete the members too)."""
    nouns, db_of = f"{spec.noun}s", spec.database()
    doc = (
        f"Delete a batch; its {nouns} too with `delete_{nouns}=true`, else they are only unlinked."
    )

    @router.delete(
        "/batch/{batch_id}",
        response_model=Deleted,
        dependencies=WRITE,
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
            counts = spec.delete_batch(session, batch_id, members)
        return transfer.deleted("batch", batch_id, counts)
