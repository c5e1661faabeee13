"""The pytest plugin: inert by default, test-type selection, events file and HTTP recording."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from app.pytest_plugin import metric_unit, step_name_for

SUITES = Path(__file__).resolve().parent / "fixtures" / "suites"


def run_pytest(suite: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on one fixture suite in a subprocess (the plugin loads by entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITES / suite), "-q", *args],
        cwd=SUITES,
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    """Return the events of a --tracking-events file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def finished(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the test_finished events by test name."""
    return {e["name"]: e for e in events if e["event"] == "test_finished"}


def closed_port() -> int:
    """Return a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """One request the fake recording server received."""

    method: str
    path: str
    api_key: str | None
    body: Any


@dataclass
class FakeServer:
    """A stand-in for the recording API that logs requests and answers `status`."""

    url: str
    status: int = 201
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """Serve a fake recording API on a free local port for one test."""
    fake = FakeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.requests.append(
                Recorded(self.command, self.path, self.headers.get("X-API-Key"), body)
            )
            payload = b'{"detail": "nope"}' if fake.status >= 400 else b"{}"
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_PATCH = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """Serve the real app with uvicorn on a free port, on databases in tmp_path."""
    port = closed_port()
    env = {
        **os.environ,
        "APP_TEST_DB_PATH": str(tmp_path / "data" / "test_runs.duckdb"),
        "APP_GENERATOR_DB_PATH": str(tmp_path / "data" / "generator_tasks.duckdb"),
    }
    env.pop("APP_API_KEYS", None)
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code < 600:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.e2e
def test_standalone_mode_records_a_run_into_the_real_server(live_server: str) -> None:
    result = run_pytest(
        "test_passing.py",
        "--tracking-test-type",
        "comprehensive",
        "--tracking-url",
        live_server,
        "--tracking-model",
        "bert-base-uncased",
        "--tracking-run-id",
        "plugin-run",
        "--tracking-tag",
        "ci=yes",
    )

    assert result.returncode == 0, result.stdout
    assert f"accelerate-tracking: recorded run plugin-run at {live_server}" in result.stdout
    run = httpx.get(f"{live_server}/api/test/db/run/plugin-run", timeout=5).json()
    assert run["status"] == "completed"
    assert run["model_name"] == "bert-base-uncased"
    assert run["hardware"] == ["cpu"]
    assert run["test_type"] == "comprehensive"
    assert run["tags"] == {"ci": "yes"}
    assert run["progress"] == 1.0
    assert run["results"]["tests_passed"] == 6
    assert run["results"]["tests_failed"] == 0
    assert {c["name"] for c in run["results"]["test_details"]} == {
        "test_addition",
        "test_hardware_option",
        "test_square[1]",
        "test_square[2]",
        "test_square[3]",
        "TestGroup::test_memory",
    }
    assert {s["step_name"] for s in run["steps"]} == {
        step_name_for(c["name"], "cpu") for c in run["results"]["test_details"]
    }
    assert {s["status"] for s in run["steps"]} == {"completed"}
    units = {(m["name"], m["unit"]) for m in run["metrics"]}
    assert units == {("latency_ms", "ms"), ("throughput_per_sec", "items/s"), ("memory_mb", "MB")}
    assert len(run["metrics"]) == 5


def test_plugin_is_inert_without_tracking_options() -> None:
    result = run_pytest("test_passing.py")

    assert result.returncode == 0, result.stdout
    assert "8 passed" in result.stdout
    assert "accelerate-tracking" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("test_type", "expected"),
    [
        ("basic", {"test_addition", "test_hardware_option"}),
        (
            "comprehensive",
            {
                "test_addition",
                "test_hardware_option",
                "test_square[1]",
                "test_square[2]",
                "test_square[3]",
                "TestGroup::test_memory",
            },
        ),
        ("fault_tolerance", {"test_addition", "test_hardware_option", "test_bad_input_raises"}),
    ],
)
def test_test_type_keeps_its_markers_and_basic(
    test_type: str, expected: set[str], tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest(
        "test_passing.py", "--tracking-test-type", test_type, "--tracking-events", str(events_path)
    )

    assert result.returncode == 0, result.stdout
    assert f"{8 - len(expected)} deselected" in result.stdout
    events = read_events(events_path)
    assert set(events[0]["tests"]) == expected
    assert set(finished(events)) == expected


def test_suite_without_markers_runs_whole_for_any_test_type(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest(
        "test_plain.py", "--tracking-test-type", "basic", "--tracking-events", str(events_path)
    )

    assert result.returncode == 0, result.stdout
    assert "4 passed" in result.stdout
    assert "deselected" not in result.stdout
    assert set(finished(read_events(events_path))) == {
        "test_one",
        "test_param[a]",
        "test_param[b]",
        "TestThing::test_method",
    }


def test_events_carry_outcome_properties_and_utc_times(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest(
        "test_passing.py", "--hardware", "cuda", "--tracking-events", str(events_path)
    )

    assert result.returncode == 0, result.stdout
    events = read_events(events_path)
    tests = finished(events)
    addition = tests["test_addition"]
    assert addition["status"] == "passed"
    assert addition["nodeid"] == "test_passing.py::test_addition"
    assert addition["hardware"] == "cuda"
    assert addition["properties"] == {"latency_ms": 1.5}
    assert addition["error"] is None
    assert tests["TestGroup::test_memory"]["properties"] == {"memory_mb": 12}
    assert tests["test_square[2]"]["properties"] == {"throughput_per_sec": 200.0}
    started = datetime.fromisoformat(addition["started_at"])
    done = datetime.fromisoformat(addition["finished_at"])
    assert started.utcoffset() == timedelta(0)
    assert started <= done
    assert addition["duration_ms"] >= 0
    assert events[-1] == {**events[-1], "event": "session_finished", "exitstatus": 0}


def test_events_give_error_text_and_skip_reason(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest("test_mixed.py", "--tracking-events", str(events_path))

    assert result.returncode == 1
    tests = finished(read_events(events_path))
    assert "one is not two" in tests["test_fails"]["error"]
    assert "setup exploded" in tests["test_setup_error"]["error"]
    assert "teardown exploded" in tests["test_teardown_error"]["error"]
    assert tests["test_skipped"]["error"] == "not on this device"
    assert tests["test_xfails"]["status"] == "xfailed"
    assert tests["test_passes"]["error"] is None


def test_unreachable_server_leaves_tests_and_exit_status_alone() -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    result = run_pytest(
        "test_mixed.py", "--tracking-url", url, "--tracking-model", "bert-base-uncased"
    )

    assert result.returncode == 1
    assert "1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 2 errors" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "accelerate-tracking" in line]
    assert len(lines) == 1
    assert lines[0].startswith("accelerate-tracking: could not record run ")
    assert url in lines[0]
    assert "updates not recorded" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_server_error_answers_are_reported_once(fake_server: FakeServer) -> None:
    fake_server.status = 500

    result = run_pytest(
        "test_plain.py", "--tracking-url", fake_server.url, "--tracking-model", "gpt2"
    )

    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "accelerate-tracking" in line]
    assert len(lines) == 1
    assert "answered 500" in lines[0]
    # The run could not be created, so nothing else was attempted.
    assert [(r.method, r.path) for r in fake_server.requests] == [("POST", "/api/test/db/runs")]


def test_standalone_mode_records_the_session_through_the_api(fake_server: FakeServer) -> None:
    result = run_pytest(
        "test_passing.py",
        "--hardware",
        "cuda",
        "--tracking-test-type",
        "basic",
        "--tracking-url",
        fake_server.url + "/",
        "--tracking-model",
        "bert-base-uncased",
        "--tracking-run-id",
        "run-1",
        "--tracking-batch",
        "batch-1",
        "--tracking-tag",
        "ci=yes",
        "--tracking-tag",
        "branch=main",
        "--tracking-api-key",
        "secret",
    )

    assert result.returncode == 0, result.stdout
    assert f"accelerate-tracking: recorded run run-1 at {fake_server.url}" in result.stdout
    requests = fake_server.requests
    assert {r.api_key for r in requests} == {"secret"}
    run = "/api/test/db/run/run-1"
    step = "/steps/" + quote(step_name_for("test_addition", "cuda"), safe="")
    step2 = "/steps/" + quote(step_name_for("test_hardware_option", "cuda"), safe="")
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/api/test/db/runs"),
        ("PATCH", run),
        ("PUT", run + step),
        ("POST", run + "/cases"),
        ("POST", run + "/metrics"),
        ("PATCH", run),
        ("PUT", run + step2),
        ("POST", run + "/cases"),
        ("PATCH", run),
        ("POST", run + "/complete"),
    ]
    start = requests[0].body
    assert {k: v for k, v in start.items() if k != "started_at"} == {
        "run_id": "run-1",
        "model_name": "bert-base-uncased",
        "hardware": ["cuda"],
        "test_type": "basic",
        "status": "running",
        "tags": {"ci": "yes", "branch": "main"},
        "batch_id": "batch-1",
    }
    assert requests[1].body == {"progress": 0.0, "current_step": "collected 2 tests"}
    assert requests[2].body["status"] == "completed"
    assert requests[2].body["progress"] == 1.0
    assert requests[2].body["error"] is None
    assert requests[3].body == [
        {
            "name": "test_addition",
            "status": "passed",
            "duration_ms": requests[3].body[0]["duration_ms"],
            "error": None,
            "hardware": "cuda",
        }
    ]
    [metric] = requests[4].body
    assert {k: v for k, v in metric.items() if k != "timestamp"} == {
        "name": "latency_ms",
        "value": 1.5,
        "unit": "ms",
        "hardware": "cuda",
    }
    assert requests[5].body == {"progress": 0.5, "current_step": "test_addition"}
    assert requests[8].body == {"progress": 1.0, "current_step": "test_hardware_option"}
    assert requests[9].body["status"] == "completed"
    assert datetime.fromisoformat(requests[9].body["completed_at"]).utcoffset() == timedelta(0)


def test_failed_tests_are_error_steps(fake_server: FakeServer) -> None:
    result = run_pytest(
        "test_mixed.py", "--tracking-url", fake_server.url, "--tracking-model", "gpt2"
    )

    assert result.returncode == 1
    steps = {
        r.path.rsplit("/steps/", 1)[1]: r.body["status"]
        for r in fake_server.requests
        if r.method == "PUT"
    }
    expected = {
        "test_passes": "completed",
        "test_fails": "error",
        "test_setup_error": "error",
        "test_teardown_error": "error",
        "test_skipped": "completed",
        "test_xfails": "completed",
        "test_xpasses": "completed",
    }
    assert steps == {quote(step_name_for(n, "cpu"), safe=""): s for n, s in expected.items()}
    start = fake_server.requests[0].body
    assert len(start["run_id"]) == 32
    assert "batch_id" not in start


def test_tracking_url_without_model_is_a_usage_error() -> None:
    result = run_pytest("test_plain.py", "--tracking-url", "http://127.0.0.1:1")

    assert result.returncode == 4
    assert "--tracking-model" in result.stderr


def test_step_names_are_unique_per_device() -> None:
    assert step_name_for("test_a[p1]", "cpu") != step_name_for("test_a[p1]", "cuda")
    assert step_name_for("TestX::test_c", "cuda") == "TestX::test_c @ cuda"


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("latency_ms", "ms"),
        ("first_token_ms", "ms"),
        ("throughput_per_sec", "items/s"),
        ("tokens_per_sec", "items/s"),
        ("memory_mb", "MB"),
        ("peak_gpu_mb", "MB"),
        ("load_time_s", "s"),
        ("accuracy", ""),
    ],
)
def test_metric_unit_follows_the_name_suffix(name: str, unit: str) -> None:
    assert metric_unit(name) == unit
