"""Group commit (app.core.group_commit): many writers, one transaction, a bad write fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.components.test_suite import service
from app.components.test_suite.models import Run, RunTag
from app.components.test_suite.schemas import RunCreate, RunUpdate
from app.core.config import Settings
from app.core.context import AppContext
from app.core.db import Database
from app.core.errors import AppError, Conflict, NotFound


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The Test Suite's database, fresh and migrated."""
    ctx = AppContext(settings)
    yield ctx.database("test_suite")
    ctx.registry.dispose()


def record(run_id: str, gate: threading.Event | None = None) -> object:
    """A write recording one run (waiting for `gate` first, so writes pile up behind it)."""

    def work(session: Session) -> str:
        if gate is not None:
            gate.wait(10)
        return service.record_run(session, RunCreate(run_id=run_id, model_name="bert"))

    return work


def refused_after_writing(session: Session) -> None:
    """A write whose rules refuse it after it wrote a run (that run must not stay)."""
    service.record_run(session, RunCreate(run_id="bad", model_name="bert"))
    session.flush()
    raise Conflict("refused after writing", code="refused")


def queued_behind(db: Database, count: int) -> None:
    """Wait until the writer took its first write and `count` more wait in its queue."""
    deadline = time.monotonic() + 30
    while db.group.pending() != count or db.group.stats.groups + db.group.busy() == 0:
        assert time.monotonic() < deadline, f"{db.group.pending()} queued, not {count}"
        time.sleep(0.01)


def runs_in(db: Database) -> set[str]:
    with db.reading() as session:
        return set(session.scalars(select(Run.run_id)))


def test_writes_waiting_together_commit_in_one_group_and_a_bad_one_fails_alone(
    db: Database,
) -> None:
    gate = threading.Event()
    keys = [f"r{i:02d}" for i in range(24)]
    with ThreadPoolExecutor(27) as pool:
        first = pool.submit(db.write, record("first", gate))  # holds the writer meanwhile
        queued_behind(db, 0)
        queued = [pool.submit(db.write, record(k)) for k in keys]
        bad = pool.submit(db.write, refused_after_writing)
        missing = pool.submit(db.write, lambda s: service.update_run(s, "nope", RunUpdate()))
        queued_behind(db, 26)
        gate.set()
        assert first.result(10) == "first"
        assert [f.result(10) for f in queued] == keys
        with pytest.raises(Conflict):
            bad.result(10)
        with pytest.raises(NotFound):
            missing.result(10)
    assert runs_in(db) == {"first", *keys}
    stats = db.group.stats
    assert stats.largest > 2 and stats.groups < stats.writes and stats.retried >= 2


def test_a_statement_the_database_refuses_fails_only_its_own_write(db: Database) -> None:
    def duplicate_tag(session: Session) -> None:  # the unique (run, tag name) key, twice
        session.add_all([RunTag(run_id="t", tag_name="x", tag_value="1") for _ in range(2)])

    gate = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        held = pool.submit(db.write, record("t", gate))
        queued_behind(db, 0)
        broken = pool.submit(db.write, duplicate_tag)
        fine = pool.submit(db.write, record("u"))
        queued_behind(db, 2)
        gate.set()
        assert held.result(10) == "t" and fine.result(10) == "u"
        with pytest.raises(Exception) as raised:
            broken.result(10)
    if isinstance(raised.value, AppError):  # PostgreSQL's unique violation is a 409
        assert raised.value.status_code == 409
    assert runs_in(db) == {"t", "u"}
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(RunTag)) == 0


def test_one_writers_updates_keep_their_order(db: Database) -> None:
    db.write(record("ordered"))

    def progress(value: float) -> object:
        return lambda s: service.update_run(s, "ordered", RunUpdate(progress=value))

    def noise(i: int) -> None:
        db.write(record(f"n{i}"))

    with ThreadPoolExecutor(8) as pool:
        others = [pool.submit(noise, i) for i in range(40)]
        for step in range(1, 41):
            db.write(progress(step / 40))
        for f in others:
            f.result(10)
    with db.reading() as session:
        assert service.require_run(session, "ordered").progress == 1.0


def test_a_grouped_write_inside_a_write_transaction_is_refused(db: Database) -> None:
    with db.writing(), pytest.raises(RuntimeError, match="inside a write"):
        db.write(record("x"))
    assert runs_in(db) == set()
