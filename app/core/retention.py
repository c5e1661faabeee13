"""Retention: delete ended runs or tasks older than N days (tagged ones kept), in bounded batches.

Each batch of owners (runs, tasks) is deleted with every child row in one transaction, so a
crash between batches leaves no orphan; batches left with no member go too. A DuckDB file is
checkpointed afterwards so the space is reused. `RetentionSweeper` applies the configured
`APP_<KEY>_RETENTION_DAYS` periodically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session

from app.core.db import Database
from app.core.periodic import Periodic
from app.core.records import delete_owned
from app.core.statuses import TERMINAL

if TYPE_CHECKING:
    from app.core.context import AppContext, Component

log = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Owners deleted per transaction: the write lock is never held for long."""

_BATCH_ENDED = ("completed", "partial", "error", "cancelled")


@dataclass(frozen=True)
class RetentionSpec:
    """What retention deletes for one component.

    `owner` is the run or task table (keyed by `key`, with `status`, `started_at` and
    `created_at`), `children` every table holding `key`, `tags` the tag table (`tag_name`),
    `batches` the batch table and `member_batch` / `member_owner` the columns saying which
    owner belongs to which batch.
    """

    component: str
    owner: type[DeclarativeBase]
    key: str
    children: tuple[type[DeclarativeBase], ...]
    tags: type[DeclarativeBase]
    batches: type[DeclarativeBase]
    member_batch: InstrumentedAttribute[Any]
    member_owner: InstrumentedAttribute[Any]

    def _col(self, model: type[DeclarativeBase], name: str) -> Any:
        return getattr(model, name)

    def old_owners(self, cutoff: datetime, keep_tags: Sequence[str]) -> Select[Any]:
        """Return the ids of ended owners older than `cutoff` without a kept tag."""
        owner_key = self._col(self.owner, self.key)
        owner = self.owner
        when = func.coalesce(self._col(owner, "started_at"), self._col(owner, "created_at"))
        status = self._col(owner, "status")
        query = select(owner_key).where(when < cutoff, status.in_(_ended(status, TERMINAL)))
        if keep_tags:
            pinned = exists().where(
                self._col(self.tags, self.key) == owner_key,
                self._col(self.tags, "tag_name").in_(list(keep_tags)),
            )
            query = query.where(~pinned)
        return query.order_by(owner_key)

    def old_batches(self, cutoff: datetime, leaving: Select[Any] | None) -> Select[Any]:
        """Return the ids of ended batches older than `cutoff` with no member left."""
        batch_key = self._col(self.batches, "batch_id")
        when = func.coalesce(
            self._col(self.batches, "started_at"), self._col(self.batches, "created_at")
        )
        members = select(self.member_batch).where(self.member_batch.is_not(None))
        if leaving is not None:
            members = members.where(self.member_owner.not_in(leaving.order_by(None)))
        return (
            select(batch_key)
            .where(
                when < cutoff,
                self._col(self.batches, "status").in_(
                    _ended(self._col(self.batches, "status"), _BATCH_ENDED)
                ),
                batch_key.not_in(members),
            )
            .order_by(batch_key)
        )


def _ended(status: Any, ended: Iterable[str]) -> list[str]:
    # Only the values the column's enum knows (a task has no `timeout`).
    known = getattr(status.type, "enums", None)
    return sorted(s for s in ended if known is None or s in known)


def cutoff_of(older_than_days: int, now: datetime | None = None) -> datetime:
    """Return the moment before which runs or tasks are old."""
    return (now or datetime.now(UTC)) - timedelta(days=older_than_days)


def _count(session: Session, query: Select[Any]) -> int:
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    return int(session.scalar(counted) or 0)


def _table(model: type[DeclarativeBase]) -> str:
    return str(model.__tablename__)


def preview(
    db: Database, spec: RetentionSpec, cutoff: datetime, keep: Sequence[str]
) -> dict[str, int]:
    """Return how many rows of each table retention would delete (nothing is deleted)."""
    owners = spec.old_owners(cutoff, keep)
    ids = owners.order_by(None)
    counts: dict[str, int] = {}
    with db.reading() as session:
        for child in spec.children:
            column = getattr(child, spec.key)
            counts[_table(child)] = _count(session, select(column).where(column.in_(ids)))
        counts[_table(spec.owner)] = _count(session, owners)
        counts[_table(spec.batches)] = _count(session, spec.old_batches(cutoff, owners))
    return counts


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for name, count in part.items():
        total[name] = total.get(name, 0) + count


def purge(
    db: Database,
    spec: RetentionSpec,
    cutoff: datetime,
    keep: Sequence[str],
    batch_size: int = BATCH_SIZE,
) -> dict[str, int]:
    """Delete what `preview` counts, `batch_size` owners a transaction; then checkpoint."""
    counts = {_table(m): 0 for m in (*spec.children, spec.owner, spec.batches)}
    owners = spec.old_owners(cutoff, keep).limit(batch_size)
    while True:
        with db.writing() as session:
            ids = list(session.scalars(owners))
            if not ids:
                break
            _add(counts, delete_owned(session, spec.children, spec.key, ids))
            _add(counts, delete_owned(session, [spec.owner], spec.key, ids))
    batches = spec.old_batches(cutoff, None).limit(batch_size)
    batch_key = spec._col(spec.batches, "batch_id")
    while True:
        with db.writing() as session:
            ids = list(session.scalars(batches))
            if not ids:
                break
            result = session.execute(delete(spec.batches).where(batch_key.in_(ids)))
            counts[_table(spec.batches)] += int(getattr(result, "rowcount", 0) or 0)
    checkpoint(db)
    return counts


def checkpoint(db: Database) -> None:
    """Write DuckDB's log into its file (so deleted space is reused); nothing elsewhere."""
    if not db.is_duckdb:
        return
    with db.write_lock, db.engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")


SPECS: dict[str, RetentionSpec] = {}
"""Component name -> its retention spec (filled as each component's maintenance router is built)."""


class RetentionSweeper(Periodic):
    """Apply each component's `APP_<KEY>_RETENTION_DAYS` at start and every interval after."""

    def __init__(
        self,
        jobs: Sequence[tuple[Database, RetentionSpec, int]],
        keep: Sequence[str],
        interval: float,
    ) -> None:
        super().__init__("retention", interval, at_start=True)
        self.jobs = list(jobs)
        self.keep = list(keep)
        self.sweeps = 0

    def sweep(self) -> None:
        """Apply retention once to every configured component (errors are logged, not raised)."""
        for db, spec, days in self.jobs:
            try:
                counts = purge(db, spec, cutoff_of(days), self.keep)
                if any(counts.values()):
                    log.info("retention %s (older than %d days): %s", spec.component, days, counts)
            except Exception:
                log.exception("retention of %s failed", spec.component)
        self.sweeps += 1

    def tick(self) -> None:
        """One sweep."""
        self.sweep()

    def start(self) -> None:
        """Start sweeping in a daemon thread (nothing to do without configured components)."""
        if self.jobs:
            super().start()


def sweeper_for(ctx: AppContext, started: Sequence[Component]) -> RetentionSweeper:
    """Return the sweeper of the started components whose retention setting is on."""
    jobs = []
    for comp in started:
        days = getattr(ctx.settings, f"{comp.settings_key}_retention_days", None)
        spec = SPECS.get(comp.name)
        if days is not None and spec is not None:
            jobs.append((ctx.database(comp.name), spec, int(days)))
    settings = ctx.settings
    return RetentionSweeper(jobs, settings.retention_keep_tags, settings.retention_interval_seconds)
