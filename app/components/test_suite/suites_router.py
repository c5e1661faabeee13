"""HTTP routes of suites and run artifacts (/api/test): what can run, and the files runs left."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from app.components.test_suite import service, store
from app.components.test_suite.exec_schemas import ArtifactFile, SuiteRead
from app.components.test_suite.models import RunArtifact
from app.components.test_suite.suites import SuiteConfig, all_suites, get_suite, put_suite
from app.core.db import Database
from app.core.deps import SettingsDep, WriteAccess, database_of
from app.core.errors import Forbidden, NotFound
from app.core.schemas import CONFLICT, NOT_FOUND, ErrorBody

SuiteDb = Annotated[Database, Depends(database_of(service.COMPONENT))]
"""The Test Suite's database."""
CONTENT_TYPES = {
    "log": "text/plain; charset=utf-8",
    "junit": "application/xml",
    "result_file": "application/json",
}
"""The content type of each artifact type the runner writes; others are guessed by name."""
MAX_ARTIFACTS = 1000
"""At most this many artifacts are listed per run."""
UNUSABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the suites file is unusable (`suites_file_invalid`)"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"model": ErrorBody, "description": "the file is outside the results folder"},
}

router = APIRouter()


@router.get("/suites", response_model=list[SuiteRead], responses=UNUSABLE)
def suites(settings: SettingsDep) -> list[SuiteRead]:
    """List the suites: the built-in `generated` one, then those of APP_SUITES_FILE."""
    return [SuiteRead(**s.describe()) for s in all_suites(settings).values()]


@router.get("/suites/{name}", response_model=SuiteRead, responses={**NOT_FOUND, **UNUSABLE})
def suite(name: Annotated[str, PathParam(max_length=64)], settings: SettingsDep) -> SuiteRead:
    """Return one suite as the operator configured it."""
    return SuiteRead(**get_suite(settings, name).describe())


@router.put(
    "/suites/{name}",
    response_model=SuiteRead,
    dependencies=[WriteAccess],  # admin: app.core.keys.ADMIN_WRITE_PATHS
    responses={
        **CONFLICT,
        **UNUSABLE,
        403: {"model": ErrorBody, "description": "no keys set, or not admin"},
    },
)
def replace_suite(
    name: Annotated[str, PathParam(max_length=64)], body: SuiteConfig, settings: SettingsDep
) -> SuiteRead:
    """Create or replace a suite in APP_SUITES_FILE (admin key; only when keys are set)."""
    return SuiteRead(**put_suite(settings, name, body).describe())


def _artifacts(session: Session, run_id: str) -> list[RunArtifact]:
    """Return a run's artifacts in recorded order (404 when the run does not exist)."""
    service.require_run(session, run_id)
    return store.artifacts_of(session, run_id, MAX_ARTIFACTS)


@router.get("/run/{run_id}/artifacts", response_model=list[ArtifactFile], responses=NOT_FOUND)
def artifacts(run_id: str, db: SuiteDb, settings: SettingsDep) -> list[ArtifactFile]:
    """List a run's artifacts with their download links (none for a file outside results)."""
    with db.reading() as session:
        rows = _artifacts(session, run_id)
        return [
            ArtifactFile(
                artifact_id=row.id,
                artifact_type=row.artifact_type,
                artifact_path=row.artifact_path,
                description=row.description,
                created_at=row.created_at,
                download_url=(
                    f"/api/test/run/{run_id}/artifacts/{row.id}"
                    if service.inside_results(settings, row.artifact_path)
                    else None
                ),
            )
            for row in rows
        ]


@router.get("/run/{run_id}/artifacts/{artifact_id}", response_class=FileResponse, responses=REFUSED)
def download(
    run_id: str,
    artifact_id: Annotated[int, PathParam(ge=1, le=2**62)],
    db: SuiteDb,
    settings: SettingsDep,
) -> FileResponse:
    """Download a run's log, JUnit XML or results file (only from inside the results folder)."""
    with db.reading() as session:
        service.require_run(session, run_id)
        row = store.get_artifact(session, run_id, artifact_id)
        if row is None:
            raise NotFound(f"run {run_id} has no artifact {artifact_id}", code="not_found")
        kind, stored = row.artifact_type, row.artifact_path
    path = service.inside_results(settings, stored)
    if path is None:
        raise Forbidden(
            f"artifact {artifact_id} is stored at {stored}, outside the results folder; "
            "only files inside it are served",
            code="outside_results",
        )
    if not path.is_file():
        raise NotFound(f"artifact {artifact_id}'s file {stored} no longer exists", code="gone")
    media = CONTENT_TYPES.get(kind) or mimetypes.guess_type(path.name)[0]
    return FileResponse(
        path,
        media_type=media or "application/octet-stream",
        filename=path.name,
        content_disposition_type="inline",
    )
