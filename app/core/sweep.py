"""End runs and tasks nobody finishes: a periodic sweep marks them `error` ("no update for N s").

A run or task recorded from outside (the pytest plugin, the recording API) that stays
initializing, queued or running with no update for longer than its own `timeout` (runs), or
APP_STALE_AFTER seconds when it has none, is ended as `error`. An update is any change of its
status, progress, current step, or of its cases, steps or metrics; rows seen first after the
server started count from the later of their last recorded time and that start. Runs and tasks
the server's own runners hold are theirs to end, never the sweep's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.context import AppContext, Runtime
from app.core.models import utcnow
from app.core.periodic import Periodic
from app.core.statuses import ACTIVE
from app.core.workers import WorkerPool

log = logging.getLogger(__name__)
BATCH = 1000
"""Rows looked at per component per sweep (oldest first); the rest wait for the next sweep."""

Fingerprint = tuple[Any, ...]


@dataclass(frozen=True)
class Watched:
    """What the sweep reads of one component: its run or task table and their child rows."""

    component: str
    table: Any
    key: Any
    children: tuple[tuple[Any, Any, tuple[Any, ...]], ...]  # (model, key column, time columns)


WATCHED: dict[str, Watched] = {}
"""Component name -> what the sweep reads of it (each component's maintenance module adds it)."""


def watch(spec: Watched) -> Watched:
    """Register a component's run or task table with the stale sweep; return the spec."""
    WATCHED[spec.component] = spec
    return spec


@dataclass
class Seen:
    """A row's fingerprint and since when it has been unchanged."""

    fingerprint: Fingerprint
    since: datetime


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def observe(
    session: Session, spec: Watched, keys: list[str] | None = None
) -> dict[str, tuple[dict[str, Any], Fingerprint, datetime | None]]:
    """Return the active rows (or these keys): creator and timeout, fingerprint, last time."""
    table = spec.table
    query = select(table).where(table.status.in_(sorted(ACTIVE)))
    if keys is not None:
        query = query.where(spec.key.in_(keys))
    rows = list(session.scalars(query.order_by(table.created_at).limit(BATCH)))
    ids = [getattr(row, spec.key.key) for row in rows]
    extra: dict[str, list[Any]] = {i: [] for i in ids}
    moments: dict[str, list[datetime | None]] = {i: [] for i in ids}
    for model, column, times in spec.children:
        del model
        columns = [func.count(), *[func.max(t) for t in times]]
        grouped = select(column, *columns).where(column.in_(ids)).group_by(column)
        found = {r[0]: r[1:] for r in session.execute(grouped)} if ids else {}
        for i in ids:
            values = found.get(i, (0, *[None] * len(times)))
            extra[i].extend(values)
            moments[i].extend(values[1:])
    out = {}
    for row, i in zip(rows, ids, strict=True):
        fingerprint = (str(row.status), row.progress, row.current_step, *extra[i])
        last = _latest(row.created_at, row.started_at, *moments[i])
        facts = {"creator": row.creator, "timeout": getattr(row, "timeout", None)}
        out[i] = (facts, fingerprint, last)
    return out


class StaleSweeper(Periodic):
    """A daemon thread that ends stale runs and tasks every APP_STALE_SWEEP_INTERVAL seconds."""

    def __init__(self, ctx: AppContext, runtimes: dict[str, Runtime]) -> None:
        super().__init__("stale-sweep", ctx.settings.stale_sweep_interval)
        self.ctx = ctx
        self.runtimes = runtimes
        self.specs = tuple(s for name, s in WATCHED.items() if name in runtimes)
        self._seen: dict[tuple[str, str], Seen] = {}
        self.started_at = utcnow()
        self.swept: list[str] = []

    def start(self) -> None:
        """Start sweeping in the background (rows count as unchanged from now at the earliest)."""
        self.started_at = utcnow()
        super().start()

    def tick(self) -> None:
        """One sweep."""
        self.sweep()

    def _runner(self, component: str) -> WorkerPool[Any] | None:
        runner = self.runtimes[component].runner
        return runner if isinstance(runner, WorkerPool) else None

    def sweep(self) -> list[str]:
        """Look once: end every stale row; return the keys ended."""
        ended: list[str] = []
        now = utcnow()
        for spec in self.specs:
            runner = self._runner(spec.component)
            owned = set(runner.jobs) if runner is not None else set()
            creator = runner.creator if runner is not None else None
            with self.ctx.database(spec.component).reading() as session:
                active = observe(session, spec)
            for gone in [k for k in self._seen if k[0] == spec.component and k[1] not in active]:
                del self._seen[gone]
            for key, (row, fingerprint, last) in active.items():
                if key in owned or (creator is not None and row["creator"] == creator):
                    continue
                limit = int(row["timeout"] or self.ctx.settings.stale_after)
                seen = self._seen.get((spec.component, key))
                if seen is None or seen.fingerprint != fingerprint:
                    since = now if seen is not None else (_latest(last, self.started_at) or now)
                    seen = self._seen[(spec.component, key)] = Seen(fingerprint, since)
                if now - seen.since > timedelta(seconds=limit) and self._end(
                    spec, key, fingerprint, limit
                ):
                    ended.append(key)
                    self._seen.pop((spec.component, key), None)
        self.swept += ended
        return ended

    def _end(self, spec: Watched, key: str, fingerprint: Fingerprint, limit: int) -> bool:
        """End one row as `error`, unless it changed since it was looked at."""
        runner = self._runner(spec.component)
        reason = f"no update for {limit} s"
        done = False

        if runner is None:
            return False

        def work(session: Session) -> list[dict[str, Any]] | None:
            nonlocal done
            now = observe(session, spec, [key]).get(key)
            if now is None or now[1] != fingerprint:
                return None
            runner.mark_failed(session, key, reason)
            done = True
            return []

        runner.commit(key, work)
        if done:
            log.warning("%s %s ended: %s", spec.component, key, reason)
        return done


def start_sweeper(ctx: AppContext, runtimes: dict[str, Runtime], started: list[Any]) -> Any:
    """Start sweeping the components whose runtimes started; return the sweeper (to stop)."""
    sweeper = StaleSweeper(ctx, {n: r for n, r in runtimes.items() if r in started})
    sweeper.start()
    return sweeper
