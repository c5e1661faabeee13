"""JUnit XML import over HTTP: POST /api/test/db/import/junit (raw XML or multipart files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.components.test_suite import junit, service, store
from app.core.db import Database
from app.core.deps import AnswersMinimal, ReadAccess, WriteAccess, database_of
from app.core.errors import AppError
from app.core.schemas import Device, Identifier, Name

MAX_UPLOAD_BYTES = 128 * 1024 * 1024
MAX_FILES = 100
_XML_TYPES = ("application/xml", "text/xml", "application/octet-stream", "")

SuiteDb = Annotated[Database, Depends(database_of("test_suite"))]

router = APIRouter(prefix="/api/test/db", tags=["test-db"], dependencies=[ReadAccess])


class TooLarge(AppError):
    """The upload is larger than the documented limit (413)."""

    status_code = 413
    code = "too_large"


class UnsupportedType(AppError):
    """The body is neither XML nor multipart (415)."""

    status_code = 415
    code = "unsupported_media_type"


class JunitParams(BaseModel):
    """Query parameters of a JUnit import: what the XML does not say."""

    model_config = ConfigDict(extra="forbid")

    model_name: Name
    hardware: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1, max_length=16)
    tags: list[Annotated[str, Field(max_length=1281, pattern=r"^[^=]{1,256}=")]] = Field(
        default_factory=list, max_length=64, description="`name=value`, repeatable"
    )
    batch_id: Identifier | None = None
    run_id: Identifier | None = Field(None, description="only when the upload makes one run")
    per_suite: bool = Field(False, description="one run per top-level <testsuite>")


class JunitRun(BaseModel):
    """One imported run and its counts."""

    run_id: str
    source: str
    suite: str
    tests_passed: int
    tests_failed: int
    tests_skipped: int


class JunitImported(BaseModel):
    """What an import wrote."""

    runs: list[JunitRun]
    cases: int


async def _read_capped(chunks: Any, what: str, budget: int) -> bytes:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > budget:
            raise TooLarge(f"{what} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    return bytes(data)


async def _files(request: Request) -> list[tuple[str, bytes]]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        files: list[tuple[str, bytes]] = []
        budget = MAX_UPLOAD_BYTES
        # The context closes the spooled upload files however this ends.
        async with request.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
            for _, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    continue
                data = await value.read(budget + 1)
                budget -= len(data)
                if budget < 0:
                    raise TooLarge(
                        f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"
                    )
                files.append((value.filename or f"file{len(files) + 1}.xml", data))
        if not files:
            raise junit.JunitError("the multipart upload holds no file")
        return files
    if kind not in _XML_TYPES:
        raise UnsupportedType(f"send JUnit XML (application/xml) or multipart files, not {kind}")
    body = await _read_capped(request.stream(), "the body", MAX_UPLOAD_BYTES)
    return [("body.xml", body)]


def _import(db: Database, files: list[tuple[str, bytes]], params: JunitParams) -> JunitImported:
    suites = [
        (source, suite)
        for source, data in files
        for suite in junit.parse(data, source=source, per_suite=params.per_suite)
    ]
    tags = dict(tag.split("=", 1) for tag in params.tags)
    docs = service.junit_documents(
        suites,
        model_name=params.model_name,
        hardware=params.hardware,
        tags=tags or None,
        batch_id=params.batch_id,
        run_id=params.run_id,
    )
    runs = []
    with db.writing() as session:
        run_ids = service.import_junit(session, docs)
        for run_id, (source, suite) in zip(run_ids, suites, strict=True):
            summary = store.run_summary(session, run_id) or {}
            runs.append(
                JunitRun(
                    run_id=run_id,
                    source=source,
                    suite=suite.name,
                    tests_passed=summary.get("tests_passed") or 0,
                    tests_failed=summary.get("tests_failed") or 0,
                    tests_skipped=summary.get("tests_skipped") or 0,
                )
            )
    return JunitImported(runs=runs, cases=sum(len(s.cases) for _, s in suites))


@router.post(
    "/import/junit",
    status_code=201,
    dependencies=[WriteAccess, AnswersMinimal],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string"}},
                        },
                    }
                },
            }
        }
    },
)
async def import_junit(
    request: Request, db: SuiteDb, params: Annotated[JunitParams, Query()]
) -> JunitImported:
    """Import JUnit XML files as runs: all of them, or nothing when one is bad."""
    files = await _files(request)
    return await run_in_threadpool(_import, db, files, params)
