"""Execute runs: pytest in a subprocess per device, every event recorded through the service."""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.components.test_suite import estimates, groups, service, store
from app.components.test_suite.exec_schemas import RunStatusRead
from app.components.test_suite.hardware import PROBES
from app.components.test_suite.models import Run, RunLease
from app.components.test_suite.pytest_exec import (
    ExecOutcome,
    PytestInvocation,
    PytestProcess,
    step_name_for,
)
from app.components.test_suite.schemas import (
    ArtifactIn,
    CaseColumns,
    CaseIn,
    RunComplete,
    RunUpdate,
)
from app.components.test_suite.suites import ISOLATED_INI, Suite
from app.core.errors import AppError
from app.core.models import utcnow
from app.core.naming import metric_unit
from app.core.pagination import Page
from app.core.schemas import MetricIn, StepIn
from app.core.statuses import ACTIVE, TERMINAL, StepStatus
from app.core.workers import Event, PoolJob, WorkerPool

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
__all__ = ["ISOLATED_INI", "Job", "SuiteRunner", "status_event"]
UNAVAILABLE = StepStatus.unavailable.value
"""The step status of a device that was not there when its pass was due."""


@dataclass
class Job(PoolJob):
    """A run the worker pool executes."""

    run_id: str
    suite: Suite
    model_name: str
    hardware: list[str]
    test_type: str
    timeout_s: float
    save_results: bool
    process: PytestProcess | None = None
    # Progress: devices done, plus this device's finished share of its collected tests.
    devices_done: int = 0
    # The run's expected duration from its history, looked up once per job.
    expected: float | None = None
    expected_known: bool = False
    collected: int = 0
    finished: int = 0

    @property
    def key(self) -> str:
        """Return the run's id."""
        return self.run_id


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return utcnow()


def status_event(run: Run, expected: float | None = None) -> dict[str, Any]:
    """Return a run's state as a live event, JSON-ready and timed as GET /status writes it.

    `expected` is the run's expected duration from its history (estimates.expected_duration).
    """
    started = run.started_at
    end = run.completed_at or utcnow()
    elapsed = (end - started).total_seconds() if started else None
    remaining = estimates.remaining(elapsed, run.progress, expected, str(run.status) == "running")
    state = RunStatusRead(
        run_id=run.run_id,
        model_name=run.model_name,
        status=str(run.status),
        progress=run.progress,
        current_step=run.current_step,
        error=run.error,
        started_at=started,
        completed_at=run.completed_at,
        elapsed_time=elapsed,
        estimated_remaining_time=remaining,
    )
    return {"type": "status", **state.model_dump(mode="json")}


class SuiteRunner(WorkerPool[Job]):
    """A bounded pool of workers that execute queued runs."""

    component = COMPONENT
    creator = CREATOR
    table = Run
    lease_model = RunLease
    noun = "run"
    key_field = "run_id"
    thread_prefix = "run"

    def start(self) -> None:
        """Kill pytest groups a previous server of this results folder left, then start."""
        killed = groups.reap(self.ctx.settings.folder("results").resolve())
        if killed:
            log.warning("killed pytest process groups a previous server left: %s", killed)
        super().start()

    def workers(self) -> int:
        """Return how many runs execute at once (APP_RUN_WORKERS)."""
        return self.ctx.settings.run_workers

    def list_unfinished(self, session: Session, page: Page) -> list[dict[str, Any]]:
        """Return a page of initializing, queued or running runs."""
        rows, _ = store.list_runs(session, store.RunFilter(status=sorted(ACTIVE)), page)
        return rows

    def mark_failed(self, session: Session, key: str, reason: str) -> None:
        """End an unfinished run as an error."""
        service.update_run(session, key, RunUpdate(status="error", error=reason))

    def mark_cancelled(self, session: Session, key: str) -> bool:
        """End a run as cancelled, unless it already ended."""
        if str(service.require_run(session, key).status) in TERMINAL:
            return False
        service.complete_run(
            session, key, RunComplete(status="cancelled", error="cancelled by request")
        )
        return True

    def state_event(self, session: Session, key: str) -> dict[str, Any]:
        """Return a run's status event from this session's view of it."""
        run = service.require_run(session, key)
        job = self.jobs.get(key)
        if job is None:
            return status_event(run, estimates.expected_duration(session, run))
        if not job.expected_known:
            job.expected = estimates.expected_duration(session, run)
            job.expected_known = True
        return status_event(run, job.expected)

    def interrupt(self, job: Job) -> None:
        """Tell a run to stop and kill its pytest process group."""
        job.cancel.set()
        if job.process is not None:
            job.process.cancel()

    def crashed(self, job: Job, error: str) -> None:
        """End a run whose execution raised unexpectedly."""
        self._finish(job, "error", error)

    # --- events ------------------------------------------------------------------------------

    def _progress(self, job: Job) -> float:
        # Monotonic over devices x tests: each device is an equal share of the run.
        share = min(job.finished / job.collected, 1.0) if job.collected else 0.0
        return min((job.devices_done + share) / max(len(job.hardware), 1), 1.0)

    def _on_event(self, job: Job, device: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        run_id = job.run_id
        if kind == "collected":
            job.collected += int(event.get("count", 0))
            text = f"collected {event.get('count', 0)} tests on {device}"
            upd = RunUpdate(progress=self._progress(job), current_step=text)

            def collected(session: Session) -> list[Event]:
                service.update_run(session, run_id, upd)
                return []

            self.commit(run_id, collected)
        elif kind == "test_started":
            name = str(event.get("name"))
            step = StepIn(status="running", progress=0.0, started_at=utcnow())
            upd = RunUpdate(current_step=name)

            def started(session: Session) -> None:
                service.put_step(session, run_id, step_name_for(name, device), step)
                service.update_run(session, run_id, upd)

            self.commit(run_id, started)
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
        test_event = {
            "type": "test",
            "run_id": run_id,
            **case.model_dump(mode="json"),
            "step": step_name_for(name, device),
        }

        def record(session: Session) -> list[Event]:
            service.add_cases(session, run_id, CaseColumns.of([case]))
            service.put_step(session, run_id, step_name_for(name, device), step)
            if metrics:
                service.add_metrics(session, run_id, metrics)
            service.update_run(session, run_id, upd)
            return [test_event]

        self.commit(run_id, record)

    # --- execution ---------------------------------------------------------------------------

    def run(self, job: Job) -> None:
        """Run pytest once per device of the job, then finish the run."""
        if job.cancel.is_set():
            return
        begun = False

        def begin(session: Session) -> list[Event] | None:
            nonlocal begun
            if str(service.require_run(session, job.run_id).status) in TERMINAL:
                return None
            update = RunUpdate(status="running", current_step="starting pytest")
            service.update_run(session, job.run_id, update)
            begun = True
            return []

        self.commit(job.run_id, begin)
        if not begun:
            return
        workdir = self.ctx.settings.folder("results") / job.run_id
        workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + job.timeout_s
        status, error = "completed", None
        absent: list[str] = []
        for device in job.hardware:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status, error = "timeout", f"timed out after {job.timeout_s:g} s"
                break
            if job.cancel.is_set():
                status = "cancelled"
                break
            job.collected = job.finished = 0
            reason = self._device_missing(job, device)
            if reason is not None:
                absent.append(f"{device}: {reason}")
                job.devices_done += 1
                continue
            try:
                outcome = self._pass(job, device, workdir, remaining)
            except AppError as exc:  # e.g. the generated module was deleted since the request
                status, error = "error", exc.detail
                break
            job.devices_done += 1
            if outcome.status == "timeout":
                status, error = "timeout", f"timed out after {job.timeout_s:g} s"
                break
            if outcome.status == "cancelled" or job.cancel.is_set():
                status = "cancelled"
                break
            if outcome.status == "crashed":
                status, error = "error", outcome.reason or "pytest crashed"
                break
        if status == "completed" and absent and len(absent) == len(job.hardware):
            status, error = "error", "no requested device is available: " + "; ".join(absent)
        self._finish(job, status, error)

    def _device_missing(self, job: Job, device: str) -> str | None:
        """Ask the suite's interpreter whether a device is there; record it when it is not."""
        if device.split(":", 1)[0].lower() == "cpu":
            return None
        answer = PROBES.answer(
            job.suite.python, job.suite.literal_env(), self.ctx.settings.device_probe_ttl
        )
        available, detail = answer.device(device)
        if available:
            return None
        run_id, now = job.run_id, utcnow()
        reason = f"{device} is not available: {detail} (checked {answer.checked_at:%H:%M:%S} UTC)"
        step = StepIn(
            status=StepStatus.unavailable,
            progress=1.0,
            started_at=now,
            completed_at=now,
            error=reason,
        )
        upd = RunUpdate(
            progress=min((job.devices_done + 1) / len(job.hardware), 1.0),
            current_step=f"{device} unavailable",
        )
        event = {"type": "device", "run_id": run_id, "hardware": device, "error": reason}

        def record(session: Session) -> list[Event]:
            service.put_step(session, run_id, step_name_for("device", device), step)
            service.update_run(session, run_id, upd)
            return [{**event, "status": UNAVAILABLE}]

        self.commit(run_id, record)
        return detail

    def _pass(self, job: Job, device: str, workdir: Path, remaining: float) -> ExecOutcome:
        """Run the suite's pytest once on one device; record its files."""
        launch = job.suite.launch(job.model_name, device, job.test_type, job.run_id, workdir)
        inv = PytestInvocation(
            test_file=Path(launch.cwd),
            device=device,
            test_type=job.test_type,
            workdir=workdir,
            timeout_s=remaining,
            python=launch.python,
            cwd=launch.cwd,
            targets=launch.args,
            env=launch.env,
        )
        process = PytestProcess(inv, functools.partial(self._on_event, job, device))
        job.process = process
        if job.cancel.is_set():
            process.cancel()
        outcome = process.run()
        self._record_files(job, device, outcome)
        return outcome

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
        if not artifacts:
            return

        def record(session: Session) -> None:  # no events: the stored rows are not news
            service.add_artifacts(session, job.run_id, artifacts)

        self.commit(job.run_id, record)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        run_id = job.run_id

        def finish(session: Session) -> list[Event]:
            # One transaction: counts, final status and the results file land together.
            service.settle_results(session, run_id)
            run = service.require_run(session, run_id)
            if str(run.status) not in TERMINAL:
                service.complete_run(session, run_id, RunComplete(status=status, error=error))
            if job.save_results:
                self._save_results(session, run_id)
            return []

        try:
            self.commit(run_id, finish)
        except AppError as exc:  # e.g. the run was deleted while it ran
            log.warning("could not finish run %s: %s", run_id, exc.detail)

    def _save_results(self, session: Session, run_id: str) -> None:
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
