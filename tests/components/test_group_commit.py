"""Group commit (app.core.group_commit): many writers, one transaction, a bad write fails alone."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.components.test_suite import service
from app.components.test_suite.models import Run, RunCase, RunTag
from app.components.test_suite.schemas import CaseColumns, CaseIn, RunCreate, RunUpdate
from app.core import bulk
from app.core.config import Settings
from app.core.context import AppContext
from app.core.db import Database
from app.core.errors import AppError, Conflict, NotFound
from app.core.records import insert_fresh, table_of
from app.core.schemas import StepIn


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


# --- combining: a group's fresh runs share one insert per child table --------------------------


def document(run_id: str, k: int = 0, *, details: int = 20, **more: Any) -> RunCreate:
    """A whole run: details, steps, metrics, per-device metrics, tags and artifacts."""
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    body: dict[str, Any] = {
        "run_id": run_id,
        "model_name": f"model-{k % 3}",
        "status": "completed",
        "started_at": at.isoformat(),
        "completed_at": (at + timedelta(seconds=60 + k)).isoformat(),
        "results": {
            "test_details": [
                {
                    "name": f"{run_id}::t{i}",
                    "status": ("passed", "failed")[i % 2],
                    "duration_ms": float(i + k),
                }
                for i in range(details)
            ],
            "performance_metrics": {"gpu-0": {"latency_ms": 1.5 + k}},
            "environment": {"k": k},
        },
        "steps": [{"step_name": f"s{i}", "status": "completed"} for i in range(3)],
        "metrics": [{"name": f"m{i}", "value": i * 10.0 + k} for i in range(4)],
        "tags": {"k": str(k), "source": "combine"},
        "artifacts": [{"artifact_path": f"{run_id}/log.txt", "artifact_type": "log"}],
        **more,
    }
    return RunCreate.model_validate(body)


def recorded(doc: RunCreate, gate: threading.Event | None = None) -> Any:
    def work(session: Session) -> str:
        if gate is not None:
            gate.wait(10)
        return service.record_run(session, doc)

    return work


def stored(db: Database, run_id: str) -> dict[str, Any]:
    """A run as read back, without what differs between two recordings of one document."""
    with db.reading() as session:
        item = service.run_detail(session, run_id)
    assert item is not None
    for key in ("run_id", "created_at", "updated_at"):
        item.pop(key, None)
    for artifact in item["artifacts"]:
        for key in ("id", "created_at", "artifact_path"):
            artifact.pop(key, None)
    item["results"]["test_details"] = [
        {**c, "name": c["name"].split("::")[-1]} for c in item["results"]["test_details"]
    ]
    return item


def hold_writer(db: Database, pool: ThreadPoolExecutor, gate: threading.Event) -> Any:
    """Occupy the writer with a write that is not combinable, so the next ones queue up."""
    held = pool.submit(db.write, record("holder", gate))
    queued_behind(db, 0)
    return held


CHILDREN = (
    "test_run_results",
    "test_run_cases",
    "test_run_steps",
    "test_run_metrics",
    "test_run_tags",
    "test_run_artifacts",
)


def test_fresh_runs_waiting_together_are_stored_with_one_insert_per_child_table(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every insert through SQLAlchemy (no Arrow), so each one shows as a statement.
    monkeypatch.setattr(bulk, "ARROW_THRESHOLD", 10**9)
    monkeypatch.setattr(bulk, "COPY_THRESHOLD", 10**9)
    keys = [f"c{i:02d}" for i in range(12)]
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()).lower())

    gate = threading.Event()
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with ThreadPoolExecutor(16) as pool:
            held = hold_writer(db, pool, gate)
            queued = [
                pool.submit(db.write, recorded(document(k, i)), combine=True, key=k)
                for i, k in enumerate(keys)
            ]
            queued_behind(db, len(keys))
            seen.clear()
            gate.set()
            assert held.result(10) == "holder"
            assert [f.result(10) for f in queued] == keys
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    inserts = Counter(s.split()[2].strip('"') for s in seen if s.startswith("insert into"))
    assert {t: inserts[t] for t in CHILDREN} == dict.fromkeys(CHILDREN, 1), inserts
    assert inserts["test_runs"] == 2  # the holder's, and one for the group's run rows
    # Whether the runs exist is one read for the whole group (and the holder's own).
    lookups = [s for s in seen if s.startswith("select") and "from test_runs" in s]
    assert len(lookups) == 2 and sum(" in (" in s for s in lookups) == 1, lookups
    assert db.group.stats.combined == 1 and db.group.stats.uncombined == 0
    # Each run reads back what the same document gives recorded alone.
    for i, k in enumerate(keys):
        db.write(recorded(document(f"alone-{k}", i)))
        assert stored(db, k) == stored(db, f"alone-{k}")


def test_many_concurrent_fresh_runs_land_in_few_groups_and_read_back_what_was_posted(
    db: Database,
) -> None:
    keys = [f"p{i:03d}" for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(db.write, recorded(document(k, i, details=50)), combine=True)
            for i, k in enumerate(keys)
        ]
        assert [f.result(30) for f in futures] == keys
    stats = db.group.stats
    assert stats.groups < len(keys) and stats.combined >= 1 and stats.uncombined == 0
    for i, k in enumerate(keys[:8]):
        db.write(recorded(document(f"alone-{k}", i, details=50)))
        assert stored(db, k) == stored(db, f"alone-{k}")
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(RunCase)) == 50 * (len(keys) + 8)


def test_a_combined_insert_that_fails_is_retried_uncombined_and_fails_only_its_write(
    db: Database,
) -> None:
    def duplicate_tag(session: Session) -> None:  # its own deferred rows break a unique key
        service.record_run(session, document("dup"))
        for _ in range(2):
            insert_fresh(
                session, table_of(RunTag), [{"tag_name": "x", "tag_value": "1"}], {"run_id": "dup"}
            )

    keys = [f"f{i}" for i in range(6)]
    gate = threading.Event()
    with ThreadPoolExecutor(10) as pool:
        held = hold_writer(db, pool, gate)
        before = [
            pool.submit(db.write, recorded(document(k, i)), combine=True)
            for i, k in enumerate(keys[:3])
        ]
        broken = pool.submit(db.write, duplicate_tag, combine=True)
        after = [
            pool.submit(db.write, recorded(document(k, i)), combine=True)
            for i, k in enumerate(keys[3:], 3)
        ]
        queued_behind(db, len(keys) + 1)
        gate.set()
        assert held.result(10) == "holder"
        assert [f.result(10) for f in before + after] == keys
        with pytest.raises(Exception) as raised:
            broken.result(10)
    if isinstance(raised.value, AppError):  # PostgreSQL's unique violation is a 409
        assert raised.value.status_code == 409
    assert db.group.stats.uncombined == 1
    assert runs_in(db) == {"holder", *keys}
    for i, k in enumerate(keys):
        assert len(stored(db, k)["results"]["test_details"]) == 20
        assert stored(db, k)["tags"] == {"k": str(i), "source": "combine"}


def test_writes_after_a_fresh_run_in_its_group_see_its_rows(db: Database) -> None:
    """A re-post right behind the fresh post, a PATCH and a step PUT follow its rows."""
    gate = threading.Event()
    repost = document("a", 7, details=5)
    with ThreadPoolExecutor(10) as pool:
        held = hold_writer(db, pool, gate)
        writes = [
            pool.submit(db.write, recorded(document("a", 1, details=30)), combine=True),
            pool.submit(db.write, recorded(document("b", 2)), combine=True),
            pool.submit(db.write, recorded(repost), combine=True),
            pool.submit(db.write, recorded(document("d", 4)), combine=True),
            pool.submit(
                db.write,
                lambda s: service.put_step(s, "d", "s1", StepIn(status="error", error="x")),
            ),
            pool.submit(
                db.write, lambda s: service.update_run(s, "b", RunUpdate(test_type="patched"))
            ),
        ]
        queued_behind(db, len(writes))
        gate.set()
        held.result(10)
        for f in writes:
            f.result(10)
    a = stored(db, "a")
    # The re-post replaced the first post's 30 cases with its 5.
    assert [c["name"] for c in a["results"]["test_details"]] == [f"t{i}" for i in range(5)]
    assert a["tags"] == {"k": "7", "source": "combine"}
    assert len(a["metrics"]) == 5 and len(a["steps"]) == 3
    assert stored(db, "b")["test_type"] == "patched"
    assert len(stored(db, "b")["results"]["test_details"]) == 20
    steps = {s["step_name"]: s for s in stored(db, "d")["steps"]}
    assert list(steps) == ["s0", "s1", "s2"] and steps["s1"]["status"] == "error"
    assert db.group.stats.combined >= 1


def test_appended_cases_follow_a_fresh_runs_cases_in_its_group(db: Database) -> None:
    gate = threading.Event()
    with ThreadPoolExecutor(6) as pool:
        held = hold_writer(db, pool, gate)
        writes = [
            pool.submit(db.write, recorded(document("a", 1, details=30)), combine=True),
            pool.submit(db.write, recorded(document("b", 2)), combine=True),
            pool.submit(
                db.write,
                lambda s: service.add_cases(
                    s, "a", CaseColumns.of([CaseIn(name="late", status="passed")])
                ),
            ),
        ]
        queued_behind(db, len(writes))
        gate.set()
        held.result(10)
        for f in writes:
            f.result(10)
    names = [c["name"] for c in stored(db, "a")["results"]["test_details"]]
    assert names == [*(f"t{i}" for i in range(30)), "late"]


def test_fresh_runs_of_one_batch_in_one_group_all_count_as_members(db: Database) -> None:
    keys = [f"m{i}" for i in range(8)]
    gate = threading.Event()
    with ThreadPoolExecutor(10) as pool:
        held = hold_writer(db, pool, gate)
        futures = [
            pool.submit(db.write, recorded(document(k, i, batch_id="nightly")), combine=True)
            for i, k in enumerate(keys)
        ]
        queued_behind(db, len(keys))
        gate.set()
        held.result(10)
        assert [f.result(10) for f in futures] == keys
    with db.reading() as session:
        batch = service.require_batch(session, "nightly")
        assert batch.run_count == len(keys) and str(batch.status) == "completed"
    assert db.group.stats.combined == 1


def test_new_runs_answered_from_a_combined_group_equal_what_is_then_read(db: Database) -> None:
    """POST /runs' minimal answer of a new run in a combined group is built from the rows the
    group buffered (its run row included, creation time taken in Python): it must equal the
    summary read after the commit, field by field."""
    keys = [f"a{i:02d}" for i in range(25)]  # 25 rows: the run rows go in by Arrow

    def answered(doc: RunCreate) -> Any:
        return lambda session: service.recorded_run(session, doc).summary

    gate = threading.Event()
    with ThreadPoolExecutor(len(keys) + 1) as pool:
        held = hold_writer(db, pool, gate)
        queued = [
            pool.submit(db.write, answered(document(k, i)), combine=True, key=k)
            for i, k in enumerate(keys)
        ]
        queued_behind(db, len(keys))
        gate.set()
        held.result(10)
        answers = [f.result(10) for f in queued]
    assert db.group.stats.combined >= 1
    with db.reading() as session:
        for key, answer in zip(keys, answers, strict=True):
            assert answer == service.run_summary(session, key), key
