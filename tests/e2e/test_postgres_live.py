"""Three server processes on one PostgreSQL database: a run executed by one is watched live
(SSE) through another and cancelled through a third; 16 clients record across all three."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.servers import record_runs, started_together
from tests.support import Server, alive

pytestmark = [pytest.mark.postgres_only, pytest.mark.e2e]
SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"
TERMINAL = {"completed", "error", "timeout", "cancelled"}


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[Server]]:
    """Three uvicorn processes on the same PostgreSQL databases and the same fixture suites."""
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, tests_dir / suite.name)
    env = {"APP_TESTS_DIR": str(tests_dir), "FIXTURE_PID_FILE": str(tmp_path / "pids.txt")}
    with started_together(tmp_path, 3, env) as servers:
        yield servers


def events_of(url: str, run_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Read a run's SSE stream until its end event (the stream's heartbeats every 15 s keep
    the loop turning, so a missing end fails after `timeout`)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{url}/api/test/events/{run_id}", timeout=timeout) as response:
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"no end event within {timeout} s: {events}"
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["type"] == "end":
                    break
    return events


def start(url: str, model: str) -> str:
    """Start a run of a fixture suite on one server; return its id."""
    response = httpx.post(f"{url}/api/test/run", json={"model_name": model}, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def test_a_run_is_watched_through_another_process_and_cancelled_through_a_third(
    trio: list[Server], tmp_path: Path
) -> None:
    executor, watcher, canceller = (s.url for s in trio)
    # Live progress of a run another process executes, from its first event to its end.
    slow = start(executor, "slow")
    events = events_of(watcher, slow)
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    tests = [e["name"] for e in events if e["type"] == "test"]
    assert tests == [f"test_slow.py::test_slow[{n}]" for n in (1, 2, 3)][-len(tests) :]
    assert tests, "no test event crossed the processes"
    # A cancel through a process that is not executing the run stops it where it runs, and a
    # listener on the third process sees the end.
    pid_file = tmp_path / "pids.txt"
    hanging = start(executor, "hanging")
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the hanging test never started"
        time.sleep(0.1)
    with ThreadPoolExecutor(1) as pool:
        ending = pool.submit(events_of, watcher, hanging)
        time.sleep(0.5)  # the listener is subscribed before the cancel
        cancelled = httpx.post(f"{canceller}/api/test/cancel/{hanging}", timeout=30).json()
        assert cancelled["cancelled"] is True and cancelled["status"] == "cancelled"
        seen = ending.result(timeout=60)
    assert seen[-1]["type"] == "end" and seen[-1]["status"] == "cancelled"
    pids = [int(p) for p in pid_file.read_text().split()]
    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, "pytest still runs after the cancel"
        time.sleep(0.2)
    status = httpx.get(f"{executor}/api/test/status/{hanging}", timeout=30).json()
    assert status["status"] == "cancelled"


def test_sixteen_clients_record_across_three_processes(trio: list[Server]) -> None:
    assert record_runs([s.url for s in trio], 96, "c") == [201] * 96
    for s in trio:
        total = httpx.get(f"{s.url}/api/test/db/runs", params={"limit": 1}, timeout=30)
        assert total.headers["x-total-count"] == "96"
        tests = httpx.get(f"{s.url}/api/test/db/tests", params={"limit": 1}, timeout=60)
        assert tests.status_code == 200 and tests.headers["x-total-count"] == "50"
