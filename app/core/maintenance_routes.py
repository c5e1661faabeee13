"""Maintenance routes every component serves: POST <prefix>/retention and POST <prefix>/backup.

No `from __future__ import annotations` here on purpose: FastAPI reads the routes' annotations
when they are declared, and `Depends(database_of(component))` needs the builder's argument.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.core import backup, retention
from app.core.db import Database
from app.core.deps import AdminAccess, ReadAccess, SettingsDep, database_of
from app.core.errors import BadRequest
from app.core.migrate import revision_state

TagName = Annotated[str, Field(min_length=1, max_length=256)]


class RetentionIn(BaseModel):
    """What to delete: ended runs or tasks older than `older_than_days`, except kept tags."""

    model_config = ConfigDict(extra="forbid")

    older_than_days: int | None = Field(
        None, ge=1, le=36500, description="default: APP_<KEY>_RETENTION_DAYS"
    )
    keep_tags: list[TagName] | None = Field(
        None, max_length=64, description="tag names that pin; default APP_RETENTION_KEEP_TAGS"
    )
    dry_run: bool = Field(False, description="count only; delete nothing")


class RetentionResult(BaseModel):
    """Rows deleted (or, on a dry run, that would be) per table."""

    component: str
    cutoff: datetime
    older_than_days: int
    keep_tags: list[str]
    dry_run: bool
    counts: dict[str, int]


class BackupIn(BaseModel):
    """Where the copy goes: a bare file name in the backups folder (default: a stamped name)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=120, description="letters, digits, '.', '_', '-'")


class BackupResult(BaseModel):
    """The copy written."""

    component: str
    file: str
    path: str
    bytes: int
    revision: str | None
    created_at: datetime


def maintenance_router(
    spec: retention.RetentionSpec, prefix: str, tag: str, settings_key: str, title: str
) -> APIRouter:
    """Return a router with `POST {prefix}/retention` and `POST {prefix}/backup` (admin keys)."""
    component = spec.component
    retention.SPECS[component] = spec
    router = APIRouter(prefix=prefix, tags=[tag], dependencies=[ReadAccess, AdminAccess])
    Db = Annotated[Database, Depends(database_of(component))]

    doc = (
        f"Delete the {title}'s ended records older than N days (tagged ones kept), "
        "in bounded batches; answer counts per table."
    )

    @router.post("/retention", response_model=RetentionResult, summary=doc, description=doc)
    def apply_retention(body: RetentionIn, db: Db, settings: SettingsDep) -> RetentionResult:
        days = body.older_than_days or getattr(settings, f"{settings_key}_retention_days", None)
        if days is None:
            raise BadRequest(
                f"send older_than_days (APP_{settings_key.upper()}_RETENTION_DAYS is not set)",
                code="retention_unset",
            )
        keep = settings.retention_keep_tags if body.keep_tags is None else body.keep_tags
        cutoff = retention.cutoff_of(days)
        run = retention.preview if body.dry_run else retention.purge
        counts = run(db, spec, cutoff, keep)
        return RetentionResult(
            component=component,
            cutoff=cutoff,
            older_than_days=days,
            keep_tags=list(keep),
            dry_run=body.dry_run,
            counts=counts,
        )

    backup_doc = (
        f"Copy the {title}'s DuckDB file into the backups folder (consistent while serving)."
    )

    @router.post(
        "/backup",
        status_code=201,
        response_model=BackupResult,
        summary=backup_doc,
        description=backup_doc,
    )
    def make_backup(body: BackupIn, db: Db, settings: SettingsDep) -> BackupResult:
        target = backup.backup_target(settings.folder("backup"), body.name, component)
        size = backup.copy_serving(db, target)
        return BackupResult(
            component=component,
            file=target.name,
            path=str(target),
            bytes=size,
            revision=revision_state(component, db).current,
            created_at=datetime.fromtimestamp(target.stat().st_mtime).astimezone(),
        )

    return router
