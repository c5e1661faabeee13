"""The worker-pool skeleton as both runners use it: start-up paging, cancel, submit, events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.components.generator import service as gen_service
from app.components.generator.runner import GenerationRunner
from app.components.generator.schemas import TaskCreate
from app.components.test_suite import service as suite_service
from app.components.test_suite.runner import SuiteRunner
from app.components.test_suite.schemas import RunCreate
from app.core.config import Settings
from app.core.context import AppContext
from app.core.errors import NotFound
from app.core.live import EventHub
from app.core.workers import WorkerPool


@dataclass(frozen=True)
class Kind:
    """How to build one component's pool and record and read its rows."""

    pool: type[WorkerPool[Any]]
    record: Callable[[Session, str, str], str]
    status: Callable[[Session, str], tuple[str, str | None]]


def _run(session: Session, status: str, creator: str) -> str:
    doc = RunCreate(model_name="bert", status=status, creator=creator)  # type: ignore[arg-type]
    return suite_service.record_run(session, doc)


def _task(session: Session, status: str, creator: str) -> str:
    doc = TaskCreate(model_name="gpt2", status=status, creator=creator)  # type: ignore[arg-type]
    return gen_service.record_task(session, doc)


def _run_status(session: Session, key: str) -> tuple[str, str | None]:
    run = suite_service.require_run(session, key)
    return str(run.status), run.error


def _task_status(session: Session, key: str) -> tuple[str, str | None]:
    task = gen_service.require_task(session, key)
    return str(task.status), task.error


KINDS = {
    "test_suite": Kind(SuiteRunner, _run, _run_status),
    "generator": Kind(GenerationRunner, _task, _task_status),
}


@pytest.fixture(params=sorted(KINDS))
def pool(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[Kind, Any]]:
    """A pool of one component on fresh databases, not started."""
    kind = KINDS[request.param]
    ctx = AppContext(settings)
    yield kind, kind.pool(ctx, EventHub())
    ctx.registry.dispose()


def test_start_fails_every_unfinished_row_of_its_creator_page_by_page(
    pool: tuple[Kind, Any],
) -> None:
    kind, runner = pool
    runner.page_size = 2  # more unfinished rows than a page, foreign ones between them
    with runner.db.writing() as session:
        own = [kind.record(session, s, runner.creator) for s in ("queued", "running") * 3]
        foreign = [kind.record(session, "running", "ci-job") for _ in range(3)]
        done = kind.record(session, "completed", runner.creator)
    pages: list[int] = []
    listed = runner.list_unfinished

    def spy(session: Session, page: Any) -> list[dict[str, Any]]:
        rows = listed(session, page)
        pages.append(len(rows))
        return list(rows)

    runner.list_unfinished = spy
    runner.start()
    assert max(pages) == 2 and len(pages) > 3 and pages[-1] == 0
    runner.stop()
    with runner.db.reading() as session:
        for key in own:
            assert kind.status(session, key) == ("error", runner.stopped_reason)
        for key in foreign:
            assert kind.status(session, key) == ("running", None)
        assert kind.status(session, done)[0] == "completed"


def test_cancel_ends_a_row_once_and_refuses_an_unknown_one(pool: tuple[Kind, Any]) -> None:
    kind, runner = pool
    with runner.db.writing() as session:
        key = kind.record(session, "queued", runner.creator)
    assert runner.cancel(key) is True
    assert runner.cancel(key) is False
    with runner.db.reading() as session:
        assert kind.status(session, key) == ("cancelled", "cancelled by request")
    with pytest.raises(NotFound):
        runner.cancel("nope")


def test_submit_before_start_is_refused(pool: tuple[Kind, Any]) -> None:
    _kind, runner = pool
    with pytest.raises(RuntimeError, match="not started"):
        runner.submit(object())


def test_a_cancel_publishes_the_committed_state_then_the_end(pool: tuple[Kind, Any]) -> None:
    kind, runner = pool
    with runner.db.writing() as session:
        key = kind.record(session, "running", runner.creator)

    async def listen() -> list[dict[str, Any]]:
        sub = runner.hub.subscribe(key)
        await asyncio.to_thread(runner.cancel, key)
        events = [await sub.get(5), await sub.get(5)]
        sub.close()
        return [e for e in events if e is not None]

    events = asyncio.run(listen())
    assert [e["type"] for e in events] == ["status", "end"]
    # A new listener starts from the same state, read back: the same values, the same text.
    assert runner.snapshot(key)[-2:] == events
    assert events[0]["status"] == "cancelled" and events[0]["completed_at"] is not None
