"""Execute generation tasks in a worker pool, every step recorded through the service."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.components.generator import service, store
from app.components.generator.exec_schemas import TaskStatusRead
from app.components.generator.families import Family, resolve_family
from app.components.generator.models import Task, TaskLease
from app.components.generator.render import (
    MAX_FILENAME_BYTES,
    check_source,
    fix_syntax,
    normalize_hardware,
    render_test_module,
    write_atomically,
)
from app.components.generator.schemas import TaskComplete, TaskUpdate
from app.core.errors import AppError, NotFound, Unprocessable
from app.core.live import json_time
from app.core.models import utcnow
from app.core.naming import module_filename
from app.core.pagination import Page
from app.core.schemas import MetricIn, StepIn
from app.core.statuses import ACTIVE, TERMINAL, StepStatus, TaskStatus
from app.core.workers import Event, PoolJob, Work, WorkerPool, with_end

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
class Job(PoolJob):
    """A task the worker pool executes."""

    task_id: str
    model_name: str
    hardware: tuple[str, ...]
    template_type: str | None
    template_context: dict[str, Any]
    directory: Path
    force: bool
    fix_syntax: bool

    @property
    def key(self) -> str:
        """Return the task's id."""
        return self.task_id


class Stopped(Exception):
    """The task was cancelled, or the server is stopping: record nothing more."""


class StepFailed(Exception):
    """A step failed; the task was already recorded as an error."""


def status_event(task: Task) -> dict[str, Any]:
    """Return a task's state as a live event, JSON-ready and timed as GET /status writes it."""
    started = task.started_at
    end = task.completed_at or utcnow()
    state = TaskStatusRead(
        task_id=task.task_id,
        model_name=task.model_name,
        status=str(task.status),
        progress=task.progress,
        current_step=task.current_step,
        error=task.error,
        started_at=started,
        completed_at=task.completed_at,
        elapsed_time=(end - started).total_seconds() if started else None,
        output_file=task.output_file,
        architecture=task.architecture,
        batch_id=task.batch_id,
    )
    return {"type": "status", **state.model_dump(mode="json")}


def step_event(task_id: str, step: dict[str, Any]) -> dict[str, Any]:
    """Return one stored step's state as a live event, timed as GET /tasks/{id} writes it."""
    return {
        "type": "step",
        "task_id": task_id,
        "step": step["step_name"],
        "status": str(step["status"]),
        "started_at": json_time(step.get("started_at")),
        "completed_at": json_time(step.get("completed_at")),
        "duration": step.get("duration"),
        "error": step.get("error"),
    }


def stored_step_event(session: Session, task_id: str, name: str) -> dict[str, Any]:
    """Return the live event of a step as this session stored it."""
    row = store.get_step(session, task_id, name)
    if row is None:
        raise NotFound(f"step {name} of task {task_id} not found")
    return step_event(task_id, {k: getattr(row, k) for k in store.STEP_FIELDS})


def plan_module(
    model_name: str, template_type: str | None, hardware: Sequence[str] | None, directory: Path
) -> tuple[Family, tuple[str, ...], Path]:
    """Return a model's family, its devices and its test module's path, or raise 422."""
    if not model_name.strip():
        raise Unprocessable("model_name must not be blank", code="invalid_model_name")
    family = resolve_family(model_name, template_type)
    devices = normalize_hardware(family, hardware)
    filename = module_filename(model_name)
    if len(filename.encode()) > MAX_FILENAME_BYTES:
        raise Unprocessable(
            f"model_name is too long for a file name ({filename[:40]}...)",
            code="invalid_model_name",
        )
    return family, devices, directory / filename


def render_module(
    model_name: str,
    family: Family,
    hardware: Sequence[str],
    context: Mapping[str, Any] | None,
    *,
    fix: bool,
) -> tuple[str, float]:
    """Return a model's rendered test module (normalised when `fix`) and the milliseconds taken."""
    started = time.perf_counter()
    source = render_test_module(model_name, family, hardware, context)
    if fix:
        source = fix_syntax(source)
    return source, (time.perf_counter() - started) * 1000


def error_text(exc: AppError) -> str:
    """Return an error as the task records it: HTTP status and code first, then the detail."""
    return f"{exc.status_code} {exc.code}: {exc.detail}"


class GenerationRunner(WorkerPool[Job]):
    """A bounded pool of workers that execute queued generation tasks."""

    component = COMPONENT
    creator = CREATOR
    table = Task
    lease_model = TaskLease
    noun = "task"
    key_field = "task_id"
    thread_prefix = "generate"

    def workers(self) -> int:
        """Return how many tasks run at once (APP_GENERATOR_WORKERS)."""
        return self.ctx.settings.generator_workers

    def list_unfinished(self, session: Session, page: Page) -> list[dict[str, Any]]:
        """Return a page of initializing, queued or running tasks."""
        rows, _ = store.list_tasks(session, store.TaskFilter(status=tuple(sorted(ACTIVE))), page)
        return rows

    def mark_failed(self, session: Session, key: str, reason: str) -> None:
        """End an unfinished task as an error."""
        service.update_task(session, key, TaskUpdate(status=TaskStatus.error, error=reason))

    def mark_cancelled(self, session: Session, key: str) -> bool:
        """End a task as cancelled, unless it already ended (its file is then never written)."""
        if str(service.require_task(session, key).status) in TERMINAL:
            return False
        end = TaskComplete(status=TaskStatus.cancelled, error="cancelled by request")
        service.complete_task(session, key, end)
        return True

    def state_event(self, session: Session, key: str) -> dict[str, Any]:
        """Return a task's status event from this session's view of it."""
        return status_event(service.require_task(session, key))

    def snapshot(self, task_id: str) -> list[dict[str, Any]]:
        """Return the events a new listener starts with: the steps so far, then the state."""
        with self.db.reading() as session:
            steps = service.task_detail(session, task_id)["steps"]
            event = self.state_event(session, task_id)
        return [step_event(task_id, step) for step in steps] + with_end(event)

    def crashed(self, job: Job, error: str) -> None:
        """End a task whose execution raised unexpectedly."""
        self._fail(job, None, None, error)

    # --- execution ---------------------------------------------------------------------------

    def run(self, job: Job) -> None:
        """Resolve, render, check and write the task's test file, step by step."""
        with contextlib.suppress(Stopped, StepFailed):  # both already recorded what counts
            self._run(job)

    def _record(self, job: Job, work: Work) -> None:
        """Write through the service, unless the task was cancelled or the server is stopping."""
        with job.lock:
            if job.cancel.is_set():
                raise Stopped
            self.commit(job.task_id, work)

    def _run(self, job: Job) -> None:
        task_id = job.task_id

        def begin(session: Session) -> list[Event]:
            if str(service.require_task(session, task_id).status) in TERMINAL:
                raise Stopped
            service.update_task(
                session, task_id, TaskUpdate(status=TaskStatus.running, current_step="starting")
            )
            return []

        self._record(job, begin)
        family, _devices, path = self._step(
            job,
            "resolve",
            lambda: plan_module(job.model_name, job.template_type, job.hardware, job.directory),
        )
        source, render_ms = self._step(
            job,
            "render",
            lambda: render_module(
                job.model_name, family, job.hardware, job.template_context, fix=job.fix_syntax
            ),
        )
        self._step(job, "check", lambda: check_source(source, path.name))
        metrics = [
            MetricIn(name="render_ms", value=round(render_ms, 3), unit="ms"),
            MetricIn(name="lines", value=source.count("\n"), unit="lines"),
            MetricIn(name="bytes", value=len(source.encode("utf-8")), unit="B"),
        ]

        def measure(session: Session) -> None:
            service.add_metrics(session, task_id, metrics)
            return None

        self._record(job, measure)
        self._write(job, family, path, source)

    def _start_step(self, job: Job, name: str) -> datetime:
        started = utcnow()
        step = StepIn(status=StepStatus.running, progress=0.0, started_at=started)

        def record(session: Session) -> list[Event]:
            service.put_step(session, job.task_id, name, step)
            service.update_task(session, job.task_id, TaskUpdate(current_step=name))
            return [stored_step_event(session, job.task_id, name)]

        self._record(job, record)
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

        def record(session: Session) -> list[Event]:
            service.put_step(session, job.task_id, name, done)
            service.update_task(session, job.task_id, TaskUpdate(progress=progress))
            return [stored_step_event(session, job.task_id, name)]

        self._record(job, record)
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

                def complete(session: Session) -> list[Event]:
                    service.put_step(session, job.task_id, "write", done)
                    service.complete_task(session, job.task_id, end)
                    return [stored_step_event(session, job.task_id, "write")]

                self.commit(job.task_id, complete)
        if failure is not None:
            self._fail(job, "write", started, failure)
            raise StepFailed

    def _fail(self, job: Job, step: str | None, started: datetime | None, error: str) -> None:
        """Record a failed step and end the task with an error (unless it was cancelled)."""
        failed = StepIn(
            status=StepStatus.error,
            progress=0.0,
            started_at=started,
            completed_at=utcnow(),
            error=error,
        )

        def record(session: Session) -> list[Event] | None:
            if str(service.require_task(session, job.task_id).status) in TERMINAL:
                return None
            events = []
            if step is not None:
                service.put_step(session, job.task_id, step, failed)
                events.append(stored_step_event(session, job.task_id, step))
            service.complete_task(
                session, job.task_id, TaskComplete(status=TaskStatus.error, error=error)
            )
            return events

        try:
            self._record(job, record)
        except Stopped:
            return
        except AppError as exc:
            log.warning("could not record the failure of task %s: %s", job.task_id, exc.detail)
