"""Leases: a runner ends only what a gone server left, on both backends' own terms."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.config import Settings
from app.core.context import AppContext
from app.core.leases import HOST, gone_here
from app.core.live import EventHub
from app.core.models import utcnow
from app.core.pagination import Page
from tests.core.test_workers import Kind, pool

__all__ = ["pool"]  # the fixture, shared with the pool tests


def dead_pid() -> int:
    """Return the id of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def lease(runner: Any, key: str, owner: str, age: float) -> None:
    """Write a lease of `key` to `owner`, its heartbeat `age` seconds old."""
    with runner.db.writing() as session:
        row = runner.lease_model()
        row.job_key, row.owner = key, owner
        row.heartbeat_at = utcnow() - timedelta(seconds=age)
        session.add(row)


def age_row(runner: Any, key: str, seconds: float) -> None:
    """Move a run's or task's creation `seconds` into the past."""
    table = runner.table
    column = getattr(table, runner.key_field)
    with runner.db.writing() as session:
        moved = utcnow() - timedelta(seconds=seconds)
        session.execute(update(table).where(column == key).values(created_at=moved))


def unfinished(runner: Any) -> list[dict[str, Any]]:
    with runner.db.reading() as session:
        return list(runner.list_unfinished(session, Page(limit=100, offset=0)))


def leased(runner: Any) -> dict[str, str]:
    model = runner.lease_model
    with runner.db.reading() as session:
        return {k: o for k, o in session.execute(select(model.job_key, model.owner))}


def test_gone_picks_what_a_gone_owner_left_and_nothing_a_live_one_holds(
    pool: tuple[Kind, Any],
) -> None:
    kind, runner = pool
    runner.leases.timeout = 30
    with runner.db.writing() as session:
        keys = {name: kind.record(session, "running", runner.creator) for name in NAMES}
    lease(runner, keys["mine"], runner.leases.owner, 100)  # its own: never gone
    lease(runner, keys["elsewhere"], "other-host:4242:beef", 5)
    lease(runner, keys["stale"], "other-host:4242:beef", 31)
    lease(runner, keys["dead_here"], f"{HOST}:{dead_pid()}:beef", 0)
    age_row(runner, keys["old_unleased"], 31)  # "new_unleased" was just queued: not yet leased
    rows = unfinished(runner)
    with runner.db.reading() as session:
        gone = runner.leases.gone(session, rows, runner.key_field)
        mine = runner.leases.mine(session, keys.values())
    assert sorted(gone) == sorted(keys[n] for n in ("stale", "dead_here", "old_unleased"))
    assert mine == [keys["mine"]]
    assert gone_here(f"{HOST}:{dead_pid()}:x") and not gone_here("other-host:1:x")
    assert not gone_here(runner.leases.owner) and not gone_here("no-colons")


NAMES = ("mine", "elsewhere", "stale", "dead_here", "old_unleased", "new_unleased")


@pytest.mark.postgres_only
def test_a_second_server_leaves_the_first_ones_jobs_until_its_heartbeat_stops(
    pool: tuple[Kind, Any], settings: Settings
) -> None:
    kind, first = pool
    ctx = AppContext(settings)
    second = type(first)(ctx, EventHub())
    try:
        with first.db.writing() as session:
            key = kind.record(session, "running", first.creator)
            first.leases.take(session, key)
        second.start()  # another process starting: the first one's job is left alone
        second.stop()  # and stopping: the same
        with first.db.reading() as session:
            assert kind.status(session, key) == ("running", None)
        first.keep_alive()  # its heartbeat: the second sees a fresh lease
        assert second.keep_alive() == []
        with first.db.writing() as session:  # the first stops beating (killed)
            model = first.lease_model
            old = utcnow() - timedelta(seconds=first.leases.timeout + 1)
            session.execute(update(model).values(heartbeat_at=old))
        second._beaten = 0.0
        assert second.keep_alive() == [key]
        with first.db.reading() as session:
            assert kind.status(session, key) == ("error", first.stopped_reason)
        assert leased(first) == {}
    finally:
        ctx.registry.dispose()


@pytest.mark.duckdb_only
def test_on_duckdb_a_start_ends_every_unfinished_row_whatever_its_lease(
    pool: tuple[Kind, Any],
) -> None:
    # One process owns a DuckDB file: whatever held a lease before this start is gone.
    kind, runner = pool
    with runner.db.writing() as session:
        key = kind.record(session, "running", runner.creator)
    lease(runner, key, "other-host:4242:beef", 0)
    assert runner.shared is False and runner.keep_alive() == []
    runner.start()
    runner.stop()
    with runner.db.reading() as session:
        assert kind.status(session, key) == ("error", runner.stopped_reason)
    assert leased(runner) == {}


def test_a_stopping_server_ends_the_jobs_it_holds_and_drops_their_leases(
    pool: tuple[Kind, Any],
) -> None:
    kind, runner = pool
    runner.start()
    with runner.db.writing() as session:
        key = kind.record(session, "queued", runner.creator)
        runner.leases.take(session, key)
    assert leased(runner) == {key: runner.leases.owner}
    runner.stop()
    with runner.db.reading() as session:
        assert kind.status(session, key) == ("error", runner.stopped_reason)
    assert leased(runner) == {}
