"""Execute runs: pytest in a subprocess per device, every event recorded through the service."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.components.test_suite import service
from app.components.test_suite.models import Run
from app.components.test_suite.pytest_exec import (
    ExecOutcome,
    PytestInvocation,
    PytestProcess,
    step_name_for,
)
from app.components.test_suite.schemas import ArtifactIn, CaseIn, RunComplete, RunUpdate
from app.core.context import AppContext
from app.core.errors import AppError
from app.core.live import EventHub
from app.core.models import utcnow
from app.core.naming import metric_unit
from app.core.schemas import MetricIn, StepIn
from app.core.statuses import TERMINAL

log = logging.getLogger(__name__)
CREATOR = "test-suite-runner"
COMPONENT = service.COMPONENT
STEP_STATUS = {
    "passed": "completed",
    "xpassed": "completed",
    "xfailed": "completed",
    "skipped": "skipped",
    "failed": "error",
    "error": "error",
}
# Generated suites run under their own minimal config, not the project's pytest settings.
ISOLATED_INI = (
    "[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest\njunit_family = xunit1\n"
)


@dataclass
class Job:
    """A run the worker pool executes."""

    run_id: str
    test_file: Path
    hardware: list[str]
    test_type: str
    timeout_s: float
    save_results: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    process: PytestProcess | None = None
    collected: int = 0
    finished: int = 0


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return utcnow()


def status_event(run: Run) -> dict[str, Any]:
    """Return a run's state as a live event."""
    started = run.started_at
    end = run.completed_at or utcnow()
    elapsed = (end - started).total_seconds() if started else None
    remaining = None
    if elapsed is not None and str(run.status) == "running" and 0 < run.progress < 1:
        remaining = elapsed / run.progress * (1 - run.progress)
    return {
        "type": "status",
        "run_id": run.run_id,
        "model_name": run.model_name,
        "status": str(run.status),
        "progress": run.progress,
        "current_step": run.current_step,
        "error": run.error,
        "started_at": started,
        "completed_at": run.completed_at,
        "elapsed_time": elapsed,
        "estimated_remaining_time": remaining,
    }


class SuiteRunner:
    """A bounded pool of workers that execute queued runs."""

    def __init__(self, ctx: AppContext, hub: EventHub) -> None:
        self.ctx = ctx
        self.hub = hub
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def db(self) -> Any:
        """Return the Test Suite database."""
        return self.ctx.database(COMPONENT)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Mark runs a previous server left unfinished as errors, then start the workers."""
        with self.db.writing() as session:
            failed = service.fail_unfinished(
                session, CREATOR, "the server stopped before this run finished"
            )
        if failed:
            log.warning("marked %d unfinished run(s) as error: %s", len(failed), ", ".join(failed))
        self._pool = ThreadPoolExecutor(self.ctx.settings.run_workers, thread_name_prefix="run")

    def stop(self) -> None:
        """Stop every running pytest and the workers; unfinished runs become errors."""
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel.set()
            if job.process is not None:
                job.process.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self.db.writing() as session:
            service.fail_unfinished(session, CREATOR, "the server stopped before this run finished")

    def submit(self, job: Job) -> None:
        """Queue a job for the workers."""
        if self._pool is None:
            raise RuntimeError("the runner is not started")
        with self._lock:
            self.jobs[job.run_id] = job
        self._pool.submit(self._execute, job)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run: the status becomes final at once, its process group is killed."""
        with self.db.writing() as session:
            run = service.require_run(session, run_id)
            if str(run.status) in TERMINAL:
                return False
            service.complete_run(
                session, run_id, RunComplete(status="cancelled", error="cancelled by request")
            )
        with self._lock:
            job = self.jobs.get(run_id)
        if job is not None:
            job.cancel.set()
            if job.process is not None:
                job.process.cancel()
        self.publish(run_id)
        return True

    # --- events ------------------------------------------------------------------------------

    def publish(self, run_id: str, extra: dict[str, Any] | None = None) -> None:
        """Push a run's current state (and an extra event first) to live listeners."""
        if extra is not None:
            self.hub.publish(run_id, extra)
        with self.db.reading() as session:
            run = service.require_run(session, run_id)
            event = status_event(run)
        self.hub.publish(run_id, event)
        if event["status"] in TERMINAL:
            self.hub.publish(run_id, {**event, "type": "end"})

    def _write(self, run_id: str, work: Any) -> None:
        with self.db.writing() as session:
            work(session)

    def _progress(self, job: Job) -> float:
        total = job.collected or 1
        return min(job.finished / total, 1.0)

    def _on_event(self, job: Job, device: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        run_id = job.run_id
        if kind == "collected":
            job.collected += int(event.get("count", 0))
            text = f"collected {event.get('count', 0)} tests on {device}"
            upd = RunUpdate(progress=self._progress(job), current_step=text)
            self._write(run_id, lambda s: service.update_run(s, run_id, upd))
            self.publish(run_id)
        elif kind == "test_started":
            name = str(event.get("name"))
            step = StepIn(status="running", progress=0.0, started_at=utcnow())
            upd = RunUpdate(current_step=name)

            def started(session: Any) -> None:
                service.put_step(session, run_id, step_name_for(name, device), step)
                service.update_run(session, run_id, upd)

            self._write(run_id, started)
        elif kind == "test_finished":
            job.finished += 1
            self._record_test(job, device, event)

    def _record_test(self, job: Job, device: str, event: dict[str, Any]) -> None:
        run_id = job.run_id
        name = str(event.get("name"))
        status = str(event.get("status"))
        started, finished = (
            _parse_time(event.get("started_at")),
            _parse_time(event.get("finished_at")),
        )
        duration_ms = float(event.get("duration_ms") or 0.0)
        case = CaseIn(
            name=name,
            status=status,
            duration_ms=duration_ms,
            error=event.get("error"),
            hardware=device,
        )
        step = StepIn(
            status=STEP_STATUS.get(status, "error"),
            progress=1.0,
            started_at=started,
            completed_at=finished,
            duration=duration_ms / 1000.0,
            error=event.get("error"),
        )
        metrics = [
            MetricIn(
                name=key,
                value=float(value),
                unit=metric_unit(key),
                hardware=device,
                timestamp=finished,
            )
            for key, value in (event.get("properties") or {}).items()
        ]
        upd = RunUpdate(progress=self._progress(job), current_step=name)

        def record(session: Any) -> None:
            service.add_cases(session, run_id, [case])
            service.put_step(session, run_id, step_name_for(name, device), step)
            if metrics:
                service.add_metrics(session, run_id, metrics)
            service.update_run(session, run_id, upd)

        self._write(run_id, record)
        self.publish(
            run_id,
            {
                "type": "test",
                "run_id": run_id,
                **case.model_dump(),
                "step": step_name_for(name, device),
            },
        )

    # --- execution ---------------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        try:
            self._run(job)
        except Exception as exc:  # a bug must still end the run, never leave it running
            log.exception("run %s failed", job.run_id)
            self._finish(job, "error", f"internal error: {exc}")
        finally:
            with self._lock:
                self.jobs.pop(job.run_id, None)

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            return
        with self.db.writing() as session:
            run = service.require_run(session, job.run_id)
            if str(run.status) in TERMINAL:
                return
            service.update_run(
                session, job.run_id, RunUpdate(status="running", current_step="starting pytest")
            )
        self.publish(job.run_id)
        workdir = self.ctx.settings.folder("results") / job.run_id
        workdir.mkdir(parents=True, exist_ok=True)
        ini = workdir / "pytest.ini"
        ini.write_text(ISOLATED_INI)
        deadline = time.monotonic() + job.timeout_s
        status, error = "completed", None
        for device in job.hardware:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status, error = "timeout", f"timed out after {job.timeout_s:g} s"
                break
            inv = PytestInvocation(
                test_file=job.test_file,
                device=device,
                test_type=job.test_type,
                workdir=workdir,
                timeout_s=remaining,
                extra_args=["-c", str(ini), "--rootdir", str(job.test_file.parent)],
            )
            process = PytestProcess(inv, functools.partial(self._on_event, job, device))
            job.process = process
            if job.cancel.is_set():
                status = "cancelled"
                break
            outcome = process.run()
            self._record_files(job, device, outcome)
            if outcome.status == "timeout":
                status, error = "timeout", f"timed out after {job.timeout_s:g} s"
                break
            if outcome.status == "cancelled" or job.cancel.is_set():
                status = "cancelled"
                break
            if outcome.status == "crashed":
                status, error = "error", outcome.reason or "pytest crashed"
                break
        self._finish(job, status, error)

    def _record_files(self, job: Job, device: str, outcome: ExecOutcome) -> None:
        files = [
            ("log", outcome.log_path, f"pytest output on {device}"),
            ("junit", outcome.junit_path, f"JUnit XML report on {device}"),
        ]
        artifacts = [
            ArtifactIn(artifact_type=kind, artifact_path=str(path), description=text)
            for kind, path, text in files
            if path.exists()
        ]
        if artifacts:
            self._write(job.run_id, lambda s: service.add_artifacts(s, job.run_id, artifacts))

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        run_id = job.run_id

        def finish(session: Any) -> None:
            # One transaction: counts, final status and the results file land together.
            service.settle_results(session, run_id)
            run = service.require_run(session, run_id)
            if str(run.status) not in TERMINAL:
                service.complete_run(session, run_id, RunComplete(status=status, error=error))
            if job.save_results:
                self._save_results(session, run_id)

        try:
            self._write(run_id, finish)
        except AppError as exc:
            log.warning("could not finish run %s: %s", run_id, exc.detail)
        self.publish(run_id)

    def _save_results(self, session: Any, run_id: str) -> None:
        path = self.ctx.settings.folder("results") / run_id / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(service.run_detail(session, run_id), default=str, indent=2))
        tmp.replace(path)
        artifact = ArtifactIn(
            artifact_type="result_file",
            artifact_path=str(path),
            description="run results (JSON)",
        )
        service.add_artifacts(session, run_id, [artifact])
        service.update_run(session, run_id, RunUpdate(result_file=str(path)))
