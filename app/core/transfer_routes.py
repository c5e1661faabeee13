"""Export, download, import and batch-delete routes that every component's database API shares."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.params import Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app.core.context import AppContext
from app.core.migrate import revision_state
from app.core.models import utcnow
from app.core.schemas import (
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    Deleted,
    ExportFormat,
    ExportResult,
    ImportDocument,
    ImportResult,
)

Export = Callable[[Session, Path, Any, str | None], dict[str, Any]]
Import = Callable[[Session, dict[str, Any]], dict[str, int]]
DeleteBatch = Callable[[Session, str, bool], dict[str, int]]

# The content type of each download format (parquet is binary: application/octet-stream).
DOWNLOAD_TYPES: Mapping[str, str] = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
}


def remove_folder(folder: Path) -> None:
    """Delete a download's scratch folder and the files in it."""
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()


def add_transfer_routes(
    router: APIRouter,
    ctx: AppContext,
    component: str,
    *,
    write: Sequence[Depends],
    export_in: type[BaseModel],
    export: Export,
    import_document: Import,
    media_types: Mapping[str, str] = DOWNLOAD_TYPES,
) -> None:
    """Add POST and GET /export and POST /import of one component's tables to its router."""

    def db() -> Any:
        return ctx.database(component)

    def revision() -> str | None:
        return revision_state(component, db()).current

    def export_route(body: Any) -> ExportResult:
        """Write an export (json, jsonl, csv, parquet) into the export folder."""
        folder = ctx.settings.folder("export")
        rev = revision()
        with db().reading() as session:
            return ExportResult.model_validate(export(session, folder, body, rev))

    # The body is the component's own ExportIn: FastAPI reads the model from the annotation.
    export_route.__annotations__["body"] = export_in
    router.add_api_route(
        "/export",
        export_route,
        methods=["POST"],
        name="export",
        response_model=ExportResult,
        dependencies=write,
        responses={**BAD_REQUEST, **CONFLICT},
    )

    @router.get("/export", dependencies=write, response_class=FileResponse)
    def download(
        format: ExportFormat = Query("json"),
        table: str | None = Query(None, description="jsonl/csv/parquet: the table to write"),
    ) -> FileResponse:
        """Stream an export as a download (the full JSON document, or one table)."""
        folder = Path(tempfile.mkdtemp(prefix="download-", dir=ctx.settings.folder("export")))
        body = export_in(filename=f"{component}-export.{format}", format=format, table=table)
        try:
            rev = revision()
            with db().reading() as session:
                written = export(session, folder, body, rev)
        except BaseException:
            remove_folder(folder)
            raise
        media = media_types.get(format, "application/octet-stream")
        return FileResponse(
            written["path"],
            media_type=media,
            filename=written["filename"],
            background=BackgroundTask(remove_folder, folder),
        )

    @router.post("/import", response_model=ImportResult, dependencies=write)
    def import_(document: ImportDocument) -> ImportResult:
        """Load an export document back, atomically and idempotently."""
        with db().writing() as session:
            rows = import_document(session, document.model_dump())
        return ImportResult(rows=rows, schema_revision=document.schema_revision)


def add_delete_batch_route(
    router: APIRouter,
    ctx: AppContext,
    component: str,
    *,
    write: Sequence[Depends],
    members: str,
    delete_batch: DeleteBatch,
) -> None:
    """Add DELETE /batch/{batch_id}, whose `delete_<members>` flag deletes the members too."""
    flag = f"delete_{members}"

    def delete_batch_route(
        batch_id: str, delete_members: bool = Query(False, alias=flag)
    ) -> Deleted:
        with ctx.database(component).writing() as session:
            counts = delete_batch(session, batch_id, delete_members)
        return Deleted(message=f"batch {batch_id} deleted", timestamp=utcnow(), deleted=counts)

    delete_batch_route.__doc__ = (
        f"Delete a batch; its {members} too with `{flag}=true`, else they are only unlinked."
    )
    router.add_api_route(
        "/batch/{batch_id}",
        delete_batch_route,
        methods=["DELETE"],
        name="delete_batch",
        response_model=Deleted,
        dependencies=write,
        responses=NOT_FOUND,
    )
