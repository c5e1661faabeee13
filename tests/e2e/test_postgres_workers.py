"""`uvicorn app.main:app --workers 2` on one PostgreSQL database: a worker that starts again
never ends the run another executes (nor kills its pytest); a worker killed with -9 has its run
ended as `error` by the others (leases and heartbeats, app/core/leases.py)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.servers import record_runs
from tests.support import Server, alive

pytestmark = [pytest.mark.postgres_only, pytest.mark.e2e]
SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"
LEASE_TIMEOUT = 3


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Server]:
    """One uvicorn with two worker processes on PostgreSQL, fixture suites, short leases."""
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, tests_dir / suite.name)
    env = {
        "APP_TESTS_DIR": str(tests_dir),
        "FIXTURE_PID_FILE": str(tmp_path / "pids.txt"),
        "APP_LEASE_TIMEOUT": str(LEASE_TIMEOUT),
    }
    server = Server(tmp_path, env, args=("--workers", "2")).start(120)
    try:
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers")
        wait_for(lambda: started_workers(server) == 2, "both workers' start-up")
        yield server
    finally:
        server.stop()


def wait_for(check: object, what: str, timeout: float = 60) -> None:
    """Poll `check()` until it is true; fail naming `what` after `timeout` s."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def worker_pids(server: Server) -> list[int]:
    """Return the pids of the supervisor's uvicorn worker processes (not its helpers)."""
    assert server.proc is not None
    found = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()) and child.is_running():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def started_workers(server: Server) -> int:
    """Return how many worker start-ups the server's log shows."""
    return server.log.read_text(errors="replace").count("Application startup complete")


def status_of(server: Server, run_id: str) -> dict[str, object]:
    response = httpx.get(f"{server.url}/api/test/status/{run_id}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_restarted_worker_leaves_the_other_workers_run_and_a_killed_ones_run_ends(
    workers: Server, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids.txt"
    started = httpx.post(f"{workers.url}/api/test/run", json={"model_name": "hanging"}, timeout=30)
    assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the hanging test")
    pytest_pids = [int(p) for p in pid_file.read_text().split()]
    lineage = {p.pid for p in psutil.Process(pytest_pids[0]).parents()}
    executor = next(pid for pid in worker_pids(workers) if pid in lineage)
    idle = next(pid for pid in worker_pids(workers) if pid != executor)

    # The idle worker dies; uvicorn starts a new one, whose start-up must leave the run alone.
    before = started_workers(workers)
    os.kill(idle, signal.SIGKILL)
    wait_for(lambda: started_workers(workers) > before, "a new worker")
    time.sleep(LEASE_TIMEOUT * 2)  # heartbeats keep the executor's lease fresh meanwhile
    assert status_of(workers, run_id)["status"] == "running"
    assert all(alive(p) for p in pytest_pids), "a starting worker killed another's pytest"

    # The executing worker dies with -9: pytest dies with it, and the run ends as an error.
    os.kill(executor, signal.SIGKILL)
    wait_for(lambda: status_of(workers, run_id)["status"] == "error", "the run to end", 60)
    ended = status_of(workers, run_id)
    assert ended["error"] == "the server stopped before this run finished"
    wait_for(lambda: not any(alive(p) for p in pytest_pids), "pytest to end", 30)


def test_sixteen_clients_record_through_two_workers(workers: Server) -> None:
    assert record_runs([workers.url], 64, "w") == [201] * 64
    total = httpx.get(f"{workers.url}/api/test/db/runs", params={"limit": 1}, timeout=30)
    assert total.headers["x-total-count"] == "64"
