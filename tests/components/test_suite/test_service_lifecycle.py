"""Lifecycle rules (core/lifecycle.py) as the Test Suite service applies them to runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.components.test_suite import service
from app.components.test_suite.schemas import BatchCreate, RunComplete, RunCreate, RunUpdate
from app.core.db import Database
from app.core.errors import Conflict
from app.core.models import utcnow
from app.core.statuses import RunStatus


def record(db: Database, **fields: object) -> str:
    """Record a run through the service and return its id."""
    with db.writing() as session:
        return service.record_run(session, RunCreate.model_validate({"model_name": "m", **fields}))


def test_a_new_run_gets_cpu_initializing_no_progress_and_a_start(db: Database) -> None:
    before = utcnow()
    run_id = record(db)
    with db.reading() as session:
        run = service.require_run(session, run_id)
        assert (run.hardware, str(run.status), run.progress) == (["cpu"], "initializing", 0.0)
        assert run.started_at is not None and run.started_at >= before
        assert run.completed_at is None and run.duration is None


def test_a_run_sent_finished_starts_its_duration_before_its_end(db: Database) -> None:
    end = utcnow().replace(microsecond=0) - timedelta(hours=1)
    run_id = record(db, completed_at=end.isoformat(), duration=30.0)
    with db.reading() as session:
        run = service.require_run(session, run_id)
        assert str(run.status) == "completed" and run.progress == 1.0
        assert run.started_at == end - timedelta(seconds=30)
        assert run.duration == 30.0


def test_completing_closes_the_run_with_end_duration_and_full_progress(db: Database) -> None:
    run_id = record(db, status="running", progress=0.5)
    with db.writing() as session:
        service.complete_run(session, run_id, RunComplete())
    with db.reading() as session:
        run = service.require_run(session, run_id)
        assert str(run.status) == "completed" and run.progress == 1.0
        assert run.current_step == "completed"
        assert run.completed_at is not None and run.started_at is not None
        assert run.duration == (run.completed_at - run.started_at).total_seconds()


def test_an_end_is_never_earlier_than_a_start_sent_in_the_future(db: Database) -> None:
    start = utcnow().replace(microsecond=0) + timedelta(hours=1)
    run_id = record(db, status="running", started_at=start.isoformat())
    with db.writing() as session:
        service.complete_run(session, run_id, RunComplete(status=RunStatus.error))
    with db.reading() as session:
        run = service.require_run(session, run_id)
        assert run.completed_at == start and run.duration == 0.0


@pytest.mark.parametrize(
    ("current", "new"),
    [("running", "queued"), ("queued", "initializing"), ("completed", "running")],
)
def test_a_run_never_moves_back_nor_out_of_a_final_status(
    db: Database, current: str, new: str
) -> None:
    run_id = record(db, status=current)
    with pytest.raises(Conflict) as caught, db.writing() as session:
        service.update_run(session, run_id, RunUpdate.model_validate({"status": new}))
    assert caught.value.code == "invalid_transition"
    with db.reading() as session:
        assert str(service.require_run(session, run_id).status) == current


def test_completing_twice_with_the_same_status_changes_nothing(db: Database) -> None:
    run_id = record(db, status="running")
    with db.writing() as session:
        service.complete_run(session, run_id, RunComplete(status=RunStatus.timeout))
    with db.reading() as session:
        first = service.require_run(session, run_id).completed_at
    with db.writing() as session:
        service.complete_run(session, run_id, RunComplete(status=RunStatus.timeout))
    with pytest.raises(Conflict), db.writing() as session:
        service.complete_run(session, run_id, RunComplete(status=RunStatus.completed))
    with db.reading() as session:
        run = service.require_run(session, run_id)
        assert str(run.status) == "timeout" and run.completed_at == first


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (["completed", "completed"], "completed"),
        (["completed", "error"], "partial"),
        (["cancelled", "cancelled"], "cancelled"),
        (["error", "timeout"], "error"),
        (["completed", "running"], "running"),
        (["initializing", "initializing"], "initializing"),
    ],
)
def test_a_batch_status_and_end_follow_its_runs(
    db: Database, members: list[str], expected: str
) -> None:
    run_ids = [record(db, status=status) for status in members]
    with db.writing() as session:
        batch_id = service.create_batch(session, BatchCreate(run_ids=run_ids))
    with db.reading() as session:
        batch = service.require_batch(session, batch_id)
        runs = [service.require_run(session, r) for r in run_ids]
        assert str(batch.status) == expected and batch.run_count == len(run_ids)
        assert batch.started_at == min(r.started_at for r in runs if r.started_at)
        if expected in {"completed", "partial", "error", "cancelled"}:
            assert batch.completed_at == max(r.completed_at for r in runs if r.completed_at)
        else:
            assert batch.completed_at is None


def test_a_batch_finishes_when_its_last_run_does(db: Database) -> None:
    done, running = record(db, status="completed"), record(db, status="running")
    with db.writing() as session:
        batch_id = service.create_batch(session, BatchCreate(run_ids=[done, running]))
    with db.writing() as session:
        service.complete_run(session, running, RunComplete(status=RunStatus.cancelled))
    with db.reading() as session:
        batch = service.require_batch(session, batch_id)
        assert str(batch.status) == "partial"
        assert batch.completed_at == service.require_run(session, running).completed_at
