"""Export, download, import and delete helpers that every component's database router calls."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app.core.config import Settings
from app.core.db import Database
from app.core.migrate import revision_state
from app.core.models import utcnow
from app.core.schemas import Deleted, ExportResult, ImportDocument, ImportResult

Export = Callable[[Session, Path, Any, str | None], dict[str, Any]]
Import = Callable[[Session, dict[str, Any]], dict[str, int]]

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


def write_export(
    db: Database, component: str, folder: Path, body: BaseModel, export: Export
) -> ExportResult:
    """Write one component's export (json, jsonl, csv, parquet) into `folder`."""
    revision = revision_state(component, db).current
    with db.reading() as session:
        return ExportResult.model_validate(export(session, folder, body, revision))


def download(
    db: Database, component: str, settings: Settings, body: BaseModel, export: Export, fmt: str
) -> FileResponse:
    """Write an export into a scratch folder and stream it; the folder goes once it is sent."""
    folder = Path(tempfile.mkdtemp(prefix="download-", dir=settings.folder("export")))
    try:
        revision = revision_state(component, db).current
        with db.reading() as session:
            written = export(session, folder, body, revision)
    except BaseException:
        remove_folder(folder)
        raise
    media = DOWNLOAD_TYPES.get(fmt, "application/octet-stream")
    return FileResponse(
        written["path"],
        media_type=media,
        filename=written["filename"],
        background=BackgroundTask(remove_folder, folder),
    )


def import_into(db: Database, document: ImportDocument, import_document: Import) -> ImportResult:
    """Load an export document back into one component's database in one transaction."""
    with db.writing() as session:
        rows = import_document(session, document.model_dump())
    return ImportResult(rows=rows, schema_revision=document.schema_revision)


def deleted(kind: str, key: str, counts: dict[str, int]) -> Deleted:
    """Return the answer of a delete: what went, and how many rows of each table."""
    return Deleted(message=f"{kind} {key} deleted", timestamp=utcnow(), deleted=counts)
