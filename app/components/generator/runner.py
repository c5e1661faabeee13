"""Execute generation tasks in a worker pool, every step recorded through the service."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.components.generator import service
from app.components.generator.families import Family, resolve_family
from app.components.generator.models import Task
from app.components.generator.render import (
    MAX_FILENAME_BYTES,
    check_source,
    fix_syntax,
    normalize_hardware,
    render_test_module,
    write_atomically,
)
from app.components.generator.schemas import TaskComplete, TaskUpdate
from app.core.context import AppContext
from app.core.errors import AppError, Unprocessable
from app.core.live import EventHub
from app.core.models import utcnow
from app.core.naming import module_filename
from app.core.schemas import MetricIn, StepIn
from app.core.statuses import TERMINAL, StepStatus, TaskStatus

log = logging.getLogger(__name__)
CREATOR = "generator-runner"
COMPONENT = service.COMPONENT
STOPPED = "the server stopped before this task finished"
# The steps of every task, in order, with the progress reached when each one completes.
STEPS: tuple[tuple[str, float], ...] = (
    ("resolve", 0.25),
    ("render", 0.5),
    ("check", 0.75),
    ("write", 1.0),
)

T = TypeVar("T")


@dataclass
class Job:
    """A task the worker pool executes."""

    task_id: str
    model_name: str
    hardware: tuple[str, ...]
    template_type: str | None
    template_context: dict[str, Any]
    directory: Path
    force: bool
    fix_syntax: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    # Held around every write of the task and around writing its file, so a cancel lands
    # either before the file is written (and nothing is) or after the task completed.
    lock: threading.Lock = field(default_factory=threading.Lock)


class Stopped(Exception):
    """The task was cancelled, or the server is stopping: record nothing more."""


class StepFailed(Exception):
    """A step failed; the task was already recorded as an error."""


def _iso(value: datetime | None) -> str | None:
    # Events go out as JSON over SSE and WebSocket alike: timestamps as ISO 8601 text.
    return value.isoformat() if value is not None else None


def status_event(task: Task) -> dict[str, Any]:
    """Return a task's state as a live event (JSON-ready)."""
    started = task.started_at
    end = task.completed_at or utcnow()
    return {
        "type": "status",
        "task_id": task.task_id,
        "model_name": task.model_name,
        "status": str(task.status),
        "progress": task.progress,
        "current_step": task.current_step,
        "error": task.error,
        "started_at": _iso(started),
        "completed_at": _iso(task.completed_at),
        "elapsed_time": (end - started).total_seconds() if started else None,
        "output_file": task.output_file,
        "architecture": task.architecture,
        "batch_id": task.batch_id,
    }


def step_event(task_id: str, step: dict[str, Any]) -> dict[str, Any]:
    """Return one step's state as a live event (JSON-ready)."""
    return {
        "type": "step",
        "task_id": task_id,
        "step": step["step_name"],
        "status": str(step["status"]),
        "started_at": _iso(step.get("started_at")),
        "completed_at": _iso(step.get("completed_at")),
        "duration": step.get("duration"),
        "error": step.get("error"),
    }


def error_text(exc: AppError) -> str:
    """Return an error as the task records it: HTTP status and code first, then the detail."""
    return f"{exc.status_code} {exc.code}: {exc.detail}"


class GenerationRunner:
    """A bounded pool of workers that execute queued generation tasks."""

    def __init__(self, ctx: AppContext, hub: EventHub) -> None:
        self.ctx = ctx
        self.hub = hub
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def db(self) -> Any:
        """Return the Generator database."""
        return self.ctx.database(COMPONENT)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Mark tasks a previous server left unfinished as errors, then start the workers."""
        with self.db.writing() as session:
            failed = service.fail_unfinished(session, CREATOR, STOPPED)
        if failed:
            log.warning("marked %d unfinished task(s) as error: %s", len(failed), ", ".join(failed))
        self._pool = ThreadPoolExecutor(
            self.ctx.settings.generator_workers, thread_name_prefix="generate"
        )

    def stop(self) -> None:
        """Stop the workers; tasks they had not finished become errors."""
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self.db.writing() as session:
            service.fail_unfinished(session, CREATOR, STOPPED)

    def submit(self, job: Job) -> None:
        """Queue a job for the workers."""
        if self._pool is None:
            raise RuntimeError("the runner is not started")
        with self._lock:
            self.jobs[job.task_id] = job
        self._pool.submit(self._execute, job)

    def cancel(self, task_id: str) -> bool:
        """Cancel a task: its status becomes final at once and its file is not written."""
        with self._lock:
            job = self.jobs.get(task_id)
        guard = job.lock if job is not None else threading.Lock()
        with guard:
            with self.db.writing() as session:
                task = service.require_task(session, task_id)
                if str(task.status) in TERMINAL:
                    return False
                service.complete_task(
                    session,
                    task_id,
                    TaskComplete(status=TaskStatus.cancelled, error="cancelled by request"),
                )
            if job is not None:
                job.cancel.set()
        self.publish(task_id)
        return True

    # --- events ------------------------------------------------------------------------------

    def publish(self, task_id: str) -> None:
        """Push a task's current state to live listeners (and the end, once it is final)."""
        with self.db.reading() as session:
            event = status_event(service.require_task(session, task_id))
        self.hub.publish(task_id, event)
        if event["status"] in TERMINAL:
            self.hub.publish(task_id, {**event, "type": "end"})

    def snapshot(self, task_id: str) -> list[dict[str, Any]]:
        """Return the events a new listener starts with: the steps so far, then the state."""
        with self.db.reading() as session:
            detail = service.task_detail(session, task_id)
            event = status_event(service.require_task(session, task_id))
        events = [step_event(task_id, step) for step in detail["steps"]]
        events.append(event)
        if event["status"] in TERMINAL:
            events.append({**event, "type": "end"})
        return events

    # --- execution ---------------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        try:
            self._run(job)
        except (Stopped, StepFailed):
            pass
        except Exception as exc:  # a bug must still end the task, never leave it running
            log.exception("task %s failed", job.task_id)
            self._fail(job, None, None, f"internal error: {exc}")
        finally:
            with self._lock:
                self.jobs.pop(job.task_id, None)

    def _record(self, job: Job, work: Callable[[Session], None]) -> None:
        """Write through the service, unless the task was cancelled or the server is stopping."""
        with job.lock:
            if job.cancel.is_set():
                raise Stopped
            with self.db.writing() as session:
                work(session)

    def _run(self, job: Job) -> None:
        task_id = job.task_id

        def begin(session: Session) -> None:
            if str(service.require_task(session, task_id).status) in TERMINAL:
                raise Stopped
            service.update_task(
                session, task_id, TaskUpdate(status=TaskStatus.running, current_step="starting")
            )

        self._record(job, begin)
        self.publish(task_id)
        family, path = self._step(job, "resolve", lambda: self._resolve(job))
        source, render_ms = self._step(job, "render", lambda: self._render(job, family))
        self._step(job, "check", lambda: check_source(source, path.name))
        metrics = [
            MetricIn(name="render_ms", value=round(render_ms, 3), unit="ms"),
            MetricIn(name="lines", value=source.count("\n"), unit="lines"),
            MetricIn(name="bytes", value=len(source.encode("utf-8")), unit="B"),
        ]

        def measure(session: Session) -> None:
            service.add_metrics(session, task_id, metrics)

        self._record(job, measure)
        self._write(job, family, path, source)

    def _resolve(self, job: Job) -> tuple[Family, Path]:
        family = resolve_family(job.model_name, job.template_type)
        normalize_hardware(family, job.hardware)
        filename = module_filename(job.model_name)
        if len(filename.encode()) > MAX_FILENAME_BYTES:
            raise Unprocessable(
                f"model_name is too long for a file name ({filename[:40]}...)",
                code="invalid_model_name",
            )
        return family, job.directory / filename

    def _render(self, job: Job, family: Family) -> tuple[str, float]:
        started = time.perf_counter()
        source = render_test_module(job.model_name, family, job.hardware, job.template_context)
        if job.fix_syntax:
            source = fix_syntax(source)
        return source, (time.perf_counter() - started) * 1000

    def _start_step(self, job: Job, name: str) -> datetime:
        started = utcnow()
        step = StepIn(status=StepStatus.running, progress=0.0, started_at=started)

        def record(session: Session) -> None:
            service.put_step(session, job.task_id, name, step)
            service.update_task(session, job.task_id, TaskUpdate(current_step=name))

        self._record(job, record)
        self._publish_step(job.task_id, name, step)
        return started

    def _step(self, job: Job, name: str, work: Callable[[], T]) -> T:
        """Run one step: record it running, do the work, record it done (or the task failed)."""
        started = self._start_step(job, name)
        try:
            value = work()
        except AppError as exc:
            self._fail(job, name, started, error_text(exc))
            raise StepFailed from exc
        done = StepIn(
            status=StepStatus.completed, progress=1.0, started_at=started, completed_at=utcnow()
        )
        progress = dict(STEPS)[name]

        def record(session: Session) -> None:
            service.put_step(session, job.task_id, name, done)
            service.update_task(session, job.task_id, TaskUpdate(progress=progress))

        self._record(job, record)
        self._publish_step(job.task_id, name, done)
        return value

    def _write(self, job: Job, family: Family, path: Path, source: str) -> None:
        """Write the file and complete the task in one step no cancel can split."""
        started = self._start_step(job, "write")
        failure: str | None
        with job.lock:
            if job.cancel.is_set():
                raise Stopped
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, source, force=job.force)
                failure = None
            except AppError as exc:
                failure = error_text(exc)
            except OSError as exc:
                failure = f"500 write_failed: cannot write {str(path)!r}: {exc.strerror or exc}"
            done = StepIn(
                status=StepStatus.completed, progress=1.0, started_at=started, completed_at=utcnow()
            )
            end = TaskComplete(
                status=TaskStatus.completed, output_file=str(path), architecture=family.name
            )
            if failure is None:
                with self.db.writing() as session:
                    service.put_step(session, job.task_id, "write", done)
                    service.complete_task(session, job.task_id, end)
        if failure is not None:
            self._fail(job, "write", started, failure)
            raise StepFailed
        self._publish_step(job.task_id, "write", done)

    def _fail(self, job: Job, step: str | None, started: datetime | None, error: str) -> None:
        """Record a failed step and end the task with an error (unless it was cancelled)."""
        failed = StepIn(
            status=StepStatus.error,
            progress=0.0,
            started_at=started,
            completed_at=utcnow(),
            error=error,
        )

        def record(session: Session) -> None:
            if str(service.require_task(session, job.task_id).status) in TERMINAL:
                return
            if step is not None:
                service.put_step(session, job.task_id, step, failed)
            service.complete_task(
                session, job.task_id, TaskComplete(status=TaskStatus.error, error=error)
            )

        try:
            self._record(job, record)
        except Stopped:
            return
        except AppError as exc:
            log.warning("could not record the failure of task %s: %s", job.task_id, exc.detail)
        if step is not None:
            self._publish_step(job.task_id, step, failed)
        else:
            self.publish(job.task_id)

    def _publish_step(self, task_id: str, name: str, step: StepIn) -> None:
        """Push a step's change, then the task's state it moved."""
        self.hub.publish(task_id, step_event(task_id, {"step_name": name, **step.model_dump()}))
        self.publish(task_id)
