"""A real uvicorn process runs suites: the new user's path, and a crash mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support import Server

SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"


def server_with_suites(folder: Path, **env: str) -> Server:
    """A server whose tests folder is `folder/tests`."""
    (folder / "tests").mkdir(exist_ok=True)
    return Server(folder, {"APP_TESTS_DIR": str(folder / "tests"), **env})


def wait_status(url: str, run_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    """Poll GET /status until the run has one of the statuses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/test/status/{run_id}").json()
        if body["status"] in statuses:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} stayed {body['status']}")


def test_a_new_user_runs_a_plain_test_file_and_watches_it_over_sse(tmp_path: Path) -> None:
    server = server_with_suites(tmp_path)
    shutil.copy(SUITES / "test_passing.py", tmp_path / "tests" / "test_my_model.py")
    server.start()
    try:
        started = httpx.post(f"{server.url}/api/test/run", json={"model_name": "my-model"})
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        events = []
        with httpx.stream("GET", f"{server.url}/api/test/events/{run_id}", timeout=60) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
        detail = httpx.get(f"{server.url}/api/test/db/run/{run_id}").json()
        assert detail["tests_passed"] == 2  # basic: the two tests marked basic
        cases = detail["results"]["test_details"]
        assert all(c["duration_ms"] is not None and c["status"] == "passed" for c in cases)
        assert [m["name"] for m in detail["metrics"]] == ["latency_ms"]
        stats = httpx.get(f"{server.url}/api/test/db/models/stats").json()
        assert stats[0]["model_name"] == "my-model" and stats[0]["tests_passed"] == 2
    finally:
        server.stop()


def test_a_server_killed_mid_run_marks_the_run_error_after_restart(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids.txt"
    server = server_with_suites(tmp_path, FIXTURE_PID_FILE=str(pid_file))
    shutil.copy(SUITES / "test_hanging.py", tmp_path / "tests" / "test_hanging.py")
    server.start()
    try:
        run_id = httpx.post(f"{server.url}/api/test/run", json={"model_name": "hanging"}).json()[
            "run_id"
        ]
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the suite never started"
            time.sleep(0.1)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
        # The orphaned pytest group is the dead server's leftover: end it before going on.
        for pid in (int(p) for p in pid_file.read_text().split()):
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
    restarted = server_with_suites(tmp_path, FIXTURE_PID_FILE=str(pid_file))
    restarted.start()
    try:
        status = httpx.get(f"{restarted.url}/api/test/status/{run_id}").json()
        assert status["status"] == "error"
        assert "server stopped" in status["error"]
    finally:
        restarted.stop()
