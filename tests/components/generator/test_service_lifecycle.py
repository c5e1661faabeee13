"""Lifecycle rules (core/lifecycle.py) as the Generator service applies them to tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.components.generator import service
from app.components.generator.schemas import BatchCreate, TaskComplete, TaskCreate, TaskUpdate
from app.core.db import Database
from app.core.errors import Conflict, Unprocessable
from app.core.models import utcnow
from app.core.statuses import TaskStatus


def record(db: Database, **fields: object) -> str:
    """Record a task through the service and return its id."""
    with db.writing() as session:
        doc = TaskCreate.model_validate({"model_name": "gpt2", **fields})
        return service.record_task(session, doc)


def test_a_new_task_gets_cpu_initializing_no_progress_and_a_start(db: Database) -> None:
    before = utcnow()
    task_id = record(db)
    with db.reading() as session:
        task = service.require_task(session, task_id)
        assert (task.hardware, str(task.status), task.progress) == (["cpu"], "initializing", 0.0)
        assert task.started_at is not None and task.started_at >= before
        assert task.completed_at is None and task.duration is None


def test_a_task_sent_finished_starts_its_duration_before_its_end(db: Database) -> None:
    end = utcnow().replace(microsecond=0) - timedelta(hours=1)
    task_id = record(db, completed_at=end.isoformat(), duration=12.5)
    with db.reading() as session:
        task = service.require_task(session, task_id)
        assert str(task.status) == "completed" and task.progress == 1.0
        assert task.started_at == end - timedelta(seconds=12.5)
        assert task.duration == 12.5


def test_completing_closes_the_task_with_end_duration_and_full_progress(db: Database) -> None:
    task_id = record(db, status="running", progress=0.25)
    with db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(output_file="t.py"))
    with db.reading() as session:
        task = service.require_task(session, task_id)
        assert str(task.status) == "completed" and task.progress == 1.0
        assert task.output_file == "t.py"
        assert task.completed_at is not None and task.started_at is not None
        assert task.duration == (task.completed_at - task.started_at).total_seconds()


def test_an_end_is_never_earlier_than_a_start_sent_in_the_future(db: Database) -> None:
    start = utcnow().replace(microsecond=0) + timedelta(hours=1)
    task_id = record(db, status="running", started_at=start.isoformat())
    with db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(status=TaskStatus.error))
    with db.reading() as session:
        task = service.require_task(session, task_id)
        assert task.completed_at == start and task.duration == 0.0


@pytest.mark.parametrize(
    ("current", "new"),
    [("running", "queued"), ("queued", "initializing"), ("cancelled", "running")],
)
def test_a_task_never_moves_back_nor_out_of_a_final_status(
    db: Database, current: str, new: str
) -> None:
    task_id = record(db, status=current)
    with pytest.raises(Conflict) as caught, db.writing() as session:
        service.update_task(session, task_id, TaskUpdate.model_validate({"status": new}))
    assert caught.value.code == "invalid_transition"
    with db.reading() as session:
        assert str(service.require_task(session, task_id).status) == current


def test_complete_takes_only_a_final_status(db: Database) -> None:
    task_id = record(db, status="queued")
    with pytest.raises(Unprocessable) as caught, db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(status=TaskStatus.running))
    assert caught.value.code == "invalid_status"


def test_completing_twice_with_the_same_status_changes_nothing(db: Database) -> None:
    task_id = record(db, status="running")
    with db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(status=TaskStatus.cancelled))
    with db.reading() as session:
        first = service.require_task(session, task_id).completed_at
    with db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(status=TaskStatus.cancelled))
    with pytest.raises(Conflict), db.writing() as session:
        service.complete_task(session, task_id, TaskComplete(status=TaskStatus.completed))
    with db.reading() as session:
        task = service.require_task(session, task_id)
        assert str(task.status) == "cancelled" and task.completed_at == first


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (["completed", "completed"], "completed"),
        (["completed", "error"], "partial"),
        (["cancelled", "cancelled"], "cancelled"),
        (["error", "cancelled"], "error"),
        (["completed", "running"], "running"),
        (["initializing", "initializing"], "initializing"),
    ],
)
def test_a_batch_status_and_end_follow_its_tasks(
    db: Database, members: list[str], expected: str
) -> None:
    task_ids = [record(db, status=status) for status in members]
    with db.writing() as session:
        batch_id = service.create_batch(session, BatchCreate(task_ids=task_ids))
    with db.reading() as session:
        batch = service.require_batch(session, batch_id)
        tasks = [service.require_task(session, t) for t in task_ids]
        assert str(batch.status) == expected and batch.task_count == len(task_ids)
        assert batch.started_at == min(t.started_at for t in tasks if t.started_at)
        if expected in {"completed", "partial", "error", "cancelled"}:
            assert batch.completed_at == max(t.completed_at for t in tasks if t.completed_at)
        else:
            assert batch.completed_at is None


def test_a_task_moved_to_another_batch_leaves_the_first_one_to_its_others(db: Database) -> None:
    done, moving = record(db, status="completed"), record(db, status="running")
    with db.writing() as session:
        first = service.create_batch(session, BatchCreate(task_ids=[done, moving]))
        second = service.create_batch(session, BatchCreate())
    with db.writing() as session:
        service.add_to_batch(session, second, moving)
    with db.reading() as session:
        old, new = service.require_batch(session, first), service.require_batch(session, second)
        assert (str(old.status), old.task_count) == ("completed", 1)
        assert (str(new.status), new.task_count) == ("running", 1)
