"""Runs and tasks nobody finishes are ended by the periodic sweep, never live ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import make_settings


@pytest.fixture
def sweeping(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app sweeping every 0.1 s; rows without a timeout go stale after 2 s."""
    settings = make_settings(tmp_path, template_dbs, stale_after=2, stale_sweep_interval=0.1)
    with TestClient(create_app(settings)) as client:
        yield client


def run_of(client: TestClient, run_id: str) -> dict[str, Any]:
    """Return a run's stored fields."""
    return dict(client.get(f"/api/test/db/run/{run_id}").json())


def wait_for(check: Any, timeout: float = 15.0) -> None:
    """Poll until `check()` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_a_silent_run_ends_as_error_after_its_timeout(sweeping: TestClient) -> None:
    doc = {"run_id": "quiet", "model_name": "m", "status": "running", "timeout": 1}
    # The clock starts before the POST: the run's silence starts at its commit, and a loaded
    # machine may answer the POST a good part of a second after that.
    started = time.monotonic()
    assert sweeping.post("/api/test/db/runs", json=doc).status_code == 201
    wait_for(lambda: run_of(sweeping, "quiet")["status"] == "error")
    assert time.monotonic() - started >= 1.0
    run = run_of(sweeping, "quiet")
    assert run["error"] == "no update for 1 s" and run["completed_at"] is not None


def test_a_run_posted_without_status_or_timeout_does_not_stay_initializing(
    sweeping: TestClient,
) -> None:
    doc = {"run_id": "fresh", "model_name": "m", "status": "initializing"}
    assert sweeping.post("/api/test/db/runs", json=doc).status_code == 201
    wait_for(lambda: run_of(sweeping, "fresh")["status"] == "error")
    assert run_of(sweeping, "fresh")["error"] == "no update for 2 s"


def test_a_run_that_keeps_reporting_is_left_alone_until_it_stops(sweeping: TestClient) -> None:
    doc = {"run_id": "busy", "model_name": "m", "status": "running", "timeout": 1}
    assert sweeping.post("/api/test/db/runs", json=doc).status_code == 201
    for step in range(1, 9):  # 2.4 s of updates, each well within the 1 s timeout
        time.sleep(0.3)
        patch = {"progress": step / 10, "current_step": f"step {step}"}
        assert sweeping.patch("/api/test/db/run/busy", json=patch).status_code == 200
        assert run_of(sweeping, "busy")["status"] == "running"
    wait_for(lambda: run_of(sweeping, "busy")["status"] == "error")


def test_a_run_whose_cases_arrive_is_live(sweeping: TestClient) -> None:
    doc = {"run_id": "talky", "model_name": "m", "status": "running", "timeout": 1}
    assert sweeping.post("/api/test/db/runs", json=doc).status_code == 201
    for n in range(8):
        time.sleep(0.3)
        case = [{"name": f"t{n}", "status": "passed"}]
        assert sweeping.post("/api/test/db/run/talky/cases", json=case).status_code < 300
    assert run_of(sweeping, "talky")["status"] == "running"


def test_a_silent_generator_task_ends_as_error(sweeping: TestClient) -> None:
    doc = {"task_id": "gen1", "model_name": "m", "status": "running"}
    assert sweeping.post("/api/generator/db/tasks", json=doc).status_code == 201

    def task() -> dict[str, Any]:
        return dict(sweeping.get("/api/generator/db/task/gen1").json())

    wait_for(lambda: task()["status"] == "error")
    assert task()["error"] == "no update for 2 s"


def test_finished_runs_are_never_touched(sweeping: TestClient) -> None:
    doc = {"run_id": "done", "model_name": "m", "status": "completed", "timeout": 1}
    assert sweeping.post("/api/test/db/runs", json=doc).status_code == 201
    time.sleep(1.8)
    run = run_of(sweeping, "done")
    assert run["status"] == "completed" and run["error"] is None
