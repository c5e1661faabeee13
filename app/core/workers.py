"""The worker-pool skeleton both runners share: jobs, executor, start/stop/submit and cancel."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy.orm import DeclarativeBase, Session

from app.core.context import AppContext
from app.core.db import Database
from app.core.errors import AppError, NotFound
from app.core.leases import Leases, new_owner
from app.core.live import EventHub, end_event
from app.core.models import LeaseColumns
from app.core.pagination import Page
from app.core.periodic import Periodic
from app.core.records import ended_keys
from app.core.statuses import TERMINAL

log = logging.getLogger(__name__)

Event = dict[str, Any]
# A write: it changes rows in the session and returns the events it caused (the state event
# of the run or task follows them), or None to publish nothing.
Work = Callable[[Session], list[Event] | None]
Rows = list[dict[str, Any]]


@dataclass(kw_only=True)
class PoolJob:
    """What every queued job carries besides its own work: a cancel flag and a write lock."""

    cancel: threading.Event = field(default_factory=threading.Event)
    # Held around a cancel (and by runners around writes no cancel may split), so a cancel
    # lands between two writes of the job, never inside one.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        """Return the id of the run or task this job executes."""
        raise NotImplementedError


J = TypeVar("J", bound=PoolJob)


class WorkerPool(ABC, Generic[J]):
    """A bounded pool of workers executing queued jobs of one component, with live events."""

    component: ClassVar[str]  # whose database the pool writes
    creator: ClassVar[str]  # the creator of the rows it owns (and fails when it stops)
    noun: ClassVar[str]  # "run" or "task", for messages
    key_field: ClassVar[str]  # the id column of listed rows
    table: ClassVar[type[DeclarativeBase]]  # the rows it executes (runs, tasks)
    lease_model: ClassVar[type[LeaseColumns]]  # its component's lease table (app.core.leases)
    thread_prefix: ClassVar[str]
    # Unfinished rows are failed a page at a time, so a start-up never loads them all.
    page_size: int = 1000
    # How often the pool looks in the database for rows of its jobs that ended elsewhere.
    watch_interval: float = 1.0

    def __init__(self, ctx: AppContext, hub: EventHub) -> None:
        self.ctx = ctx
        self.hub = hub
        self.jobs: dict[str, J] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._watch = JobWatch(self)
        self.leases = Leases(self.lease_model, new_owner(), ctx.settings.lease_timeout)
        self._beaten = 0.0  # when the heartbeat was last written (monotonic)

    @property
    def db(self) -> Database:
        """Return the component's database."""
        return self.ctx.database(self.component)

    @property
    def shared(self) -> bool:
        """Return True if other processes may execute this component's jobs (not DuckDB)."""
        return not self.db.is_duckdb

    @property
    def stopped_reason(self) -> str:
        """Return the error recorded on what a stopped server left unfinished."""
        return f"the server stopped before this {self.noun} finished"

    # --- what each runner provides -----------------------------------------------------------

    @abstractmethod
    def workers(self) -> int:
        """Return how many jobs run at once."""

    @abstractmethod
    def list_unfinished(self, session: Session, page: Page) -> list[dict[str, Any]]:
        """Return a page of unfinished rows (with `creator` and the key field), oldest first."""

    @abstractmethod
    def mark_failed(self, session: Session, key: str, reason: str) -> None:
        """End one unfinished row as an error."""

    @abstractmethod
    def mark_cancelled(self, session: Session, key: str) -> bool:
        """End a row as cancelled; return False if it had already ended (404 if unknown)."""

    @abstractmethod
    def state_event(self, session: Session, key: str) -> Event:
        """Return the live status event of a row as this session sees it (JSON-ready)."""

    @abstractmethod
    def run(self, job: J) -> None:
        """Execute one job (its own work: a subprocess, rendering, ...)."""

    @abstractmethod
    def crashed(self, job: J, error: str) -> None:
        """End a job whose execution raised unexpectedly."""

    def interrupt(self, job: J) -> None:
        """Tell a job to stop (runners add what else stops it, e.g. killing a process)."""
        job.cancel.set()

    def snapshot(self, key: str) -> list[Event]:
        """Return the events a new listener starts with: the current state (and the end)."""
        with self.db.reading() as session:
            event = self.state_event(session, key)
        return with_end(event)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Mark rows a gone server left unfinished as errors, then start the workers."""
        with self.db.writing() as session:
            failed = self.fail_unfinished(session, self._gone)
        if failed:
            log.warning(
                "marked %d unfinished %s(s) as error: %s", len(failed), self.noun, ", ".join(failed)
            )
        self._pool = ThreadPoolExecutor(self.workers(), thread_name_prefix=self.thread_prefix)
        self._watch.start()

    def stop(self) -> None:
        """Stop every job and the workers; what they had not finished becomes an error."""
        self._watch.stop()
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            self.interrupt(job)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self.db.writing() as session:
            self.fail_unfinished(session, self._mine)

    def submit(self, job: J) -> None:
        """Queue a job for the workers."""
        if self._pool is None:
            raise RuntimeError("the runner is not started")
        with self.db.writing() as session:
            self.leases.take(session, job.key)
        with self._lock:
            self.jobs[job.key] = job
        self._pool.submit(self._execute, job)

    def cancel(self, key: str) -> bool:
        """Cancel a run or task: its status becomes final at once and its job is told to stop."""
        with self._lock:
            job = self.jobs.get(key)
        guard: AbstractContextManager[Any] = job.lock if job is not None else nullcontext()
        with guard:
            with self.db.writing() as session:
                if not self.mark_cancelled(session, key):
                    return False
                event = self.state_event(session, key)
            if job is not None:
                self.interrupt(job)
        self.publish(key, [event])
        return True

    def watch(self) -> list[str]:
        """Stop the jobs whose row ended outside this pool; return their keys.

        A cancel through another server process on the same database, or a final status (or a
        delete) through the database API, only changes the row: this is how it reaches the job.
        Listeners here get the final state (the process that changed it published on its own).
        """
        with self._lock:
            jobs = {k: j for k, j in self.jobs.items() if not j.cancel.is_set()}
        if not jobs:
            return []
        events: dict[str, Event] = {}
        with self.db.reading() as session:
            ended = ended_keys(session, self.table, self.key_field, sorted(jobs), TERMINAL)
            for key in ended:
                try:
                    events[key] = self.state_event(session, key)
                except NotFound:  # deleted: nothing to show but the end
                    continue
        for key in ended:
            log.info("%s %s ended outside this server; stopping its job", self.noun, key)
            with jobs[key].lock:
                self.interrupt(jobs[key])
            if key in events:
                self.publish(key, [events[key]])
        return ended

    def fail_unfinished(
        self, session: Session, which: Callable[[Session, Rows], list[str]]
    ) -> list[str]:
        """End as errors the unfinished rows of this pool's creator `which` picks; return them."""
        failed: list[str] = []
        kept = 0  # unfinished rows left alone stay as they are, and stay listed
        while True:
            rows = self.list_unfinished(session, Page(limit=self.page_size, offset=kept))
            if not rows:
                return failed
            ours = [row for row in rows if row["creator"] == self.creator]
            chosen = which(session, ours)
            for key in chosen:
                self.mark_failed(session, key, self.stopped_reason)
            self.leases.drop(session, chosen)
            failed += chosen
            kept += len(rows) - len(chosen)

    def _gone(self, session: Session, rows: Rows) -> list[str]:
        """Pick the rows whose server is gone (on DuckDB, at start-up: every one)."""
        if not self.shared:
            return [row[self.key_field] for row in rows]
        return self.leases.gone(session, rows, self.key_field)

    def _mine(self, session: Session, rows: Rows) -> list[str]:
        """Pick the rows this pool executes (on DuckDB: every one, as nobody else can)."""
        if not self.shared:
            return [row[self.key_field] for row in rows]
        return self.leases.mine(session, (row[self.key_field] for row in rows))

    def keep_alive(self) -> list[str]:
        """On a shared database: refresh this pool's heartbeat and end what gone servers left.

        Runs every `watch_interval`, writing at most every fifth of APP_LEASE_TIMEOUT; returns
        the keys it ended (another process may end the same rows at once: a row that ended
        meanwhile is skipped).
        """
        now = time.monotonic()
        if not self.shared or now - self._beaten < self.leases.timeout / 5:
            return []
        self._beaten = now
        with self.db.writing() as session:
            self.leases.beat(session)
        try:
            with self.db.writing() as session:
                ended = self.fail_unfinished(session, self._gone)
        except AppError as exc:  # another process ended one of them first: look again later
            log.info("ending what a gone server left: %s", exc.detail)
            return []
        for key in ended:
            log.warning("%s %s: its server stopped; ended as error", self.noun, key)
            with self.db.reading() as session, contextlib.suppress(NotFound):
                self.publish(key, [self.state_event(session, key)])
        return ended

    # --- writes and events -------------------------------------------------------------------

    def commit(self, key: str, work: Work) -> None:
        """Write through the group commit; once committed, publish its events and the state
        it left (read in the same transaction). `work` may run more than once before its
        commit (app.core.group_commit): it touches only the session."""

        def grouped(session: Session) -> list[Event] | None:
            events = work(session)
            if events is not None:
                events.append(self.state_event(session, key))
            return events

        events = self.db.write(grouped)
        if events:
            self.publish(key, events)

    def publish(self, key: str, events: list[Event]) -> None:
        """Push events to live listeners; a final status event is followed by the end."""
        for event in events:
            self.hub.publish(key, event)
        if events and events[-1].get("type") == "status" and events[-1]["status"] in TERMINAL:
            self.hub.publish(key, end_event(events[-1]))

    def _execute(self, job: J) -> None:
        try:
            self.run(job)
        except Exception as exc:  # a bug must still end the job, never leave it running
            log.exception("%s %s failed", self.noun, job.key)
            self.crashed(job, f"internal error: {exc}")
        finally:
            with self._lock:
                self.jobs.pop(job.key, None)
            try:
                with self.db.writing() as session:
                    self.leases.drop(session, [job.key])
            except Exception:  # a lease left behind is dropped when its heartbeat ages
                log.exception("dropping the lease of %s %s failed", self.noun, job.key)


class JobWatch(Periodic):
    """Every `watch_interval` seconds, stop a pool's jobs whose rows ended elsewhere."""

    def __init__(self, pool: WorkerPool[Any]) -> None:
        super().__init__(f"{pool.thread_prefix}-watch", pool.watch_interval)
        self.pool = pool

    def tick(self) -> list[str]:
        """Look once (and keep this pool's leases alive)."""
        return self.pool.watch() + self.pool.keep_alive()


def with_end(event: Event) -> list[Event]:
    """Return a status event, followed by the end event when its status is final."""
    return [event, end_event(event)] if event["status"] in TERMINAL else [event]
