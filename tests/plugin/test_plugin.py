"""The pytest-accelerate-tracking plugin: loading, selection, outcomes, sending, spool, upload."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_accelerate_tracking import (
    ERROR_TEXT_LIMIT,
    NAME_LIMIT,
    case_name,
    metric_unit,
    shorten_error,
)

from tests.support import Server

SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120


def run_pytest(
    *args: str, cwd: Path = SUITES, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run pytest in a subprocess (the plugin loads by its entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    """Return the events of a --tracking-events file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def finished(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the test_finished events by test id."""
    return {e["name"]: e for e in events if e["event"] == "test_finished"}


def junit(path: Path) -> dict[str, int]:
    """Return {tests, failed, skipped} of a JUnit XML file (failed = failures + errors)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = Counter[str]()
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            total[key] += int(suite.get(key, "0"))
    return {
        "tests": total["tests"],
        "failed": total["failures"] + total["errors"],
        "skipped": total["skipped"],
    }


def counts(statuses: list[str]) -> dict[str, int]:
    """Return {tests, failed, skipped} of case statuses, as the server counts them."""
    return {
        "tests": len(statuses),
        "failed": sum(s in ("failed", "error") for s in statuses),
        "skipped": sum(s in ("skipped", "xfailed") for s in statuses),
    }


def tracking_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Return the plugin's lines in a session's output."""
    return [line for line in result.stdout.splitlines() if line.startswith("accelerate-tracking")]


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
    """A stand-in for the recording API: logs requests; can fail or stall on purpose."""

    url: str
    status: int = 201
    fail_first: int = 0  # answer 503 to this many requests first
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    def paths(self) -> list[tuple[str, str]]:
        """Return (method, path) of the requests that were answered 2xx."""
        return [(r.method, r.path) for r in self.requests if r.body is not FAILED]


FAILED = object()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """Serve a fake recording API on a free local port for one test."""
    fake = FakeServer(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if fake.delay_s:
                time.sleep(fake.delay_s)
            with lock:
                failing = fake.fail_first > 0
                fake.fail_first -= 1
            status = 503 if failing else fake.status
            body = json.loads(raw) if raw else None
            fake.requests.append(
                Recorded(
                    self.command,
                    self.path,
                    self.headers.get("X-API-Key"),
                    FAILED if status >= 400 else body,
                )
            )
            payload = b'{"detail": "nope"}' if status >= 400 else b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_PATCH = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.delay_s = 0
        server.shutdown()
        server.server_close()
        thread.join()


def record_args(url: str, spool: Path, *extra: str) -> list[str]:
    """Return the options that record a session to `url`, spooling to `spool`."""
    return [
        "--tracking-url",
        url,
        "--tracking-model",
        "gpt2",
        "--tracking-spool",
        str(spool),
        *extra,
    ]


# --- loading ---------------------------------------------------------------------------------


def test_plugin_is_inert_without_tracking_options() -> None:
    result = run_pytest("test_passing.py")

    assert result.returncode == 0, result.stdout
    assert "8 passed" in result.stdout
    assert "accelerate-tracking" not in result.stdout + result.stderr


def test_p_option_works_with_and_without_plugin_autoload(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    args = ["test_passing.py", "--tracking-hardware", "cuda", "--tracking-events", str(events)]
    events.unlink(missing_ok=True)

    both = run_pytest("-p", "pytest_accelerate_tracking", *args)
    assert both.returncode == 0, both.stdout + both.stderr
    assert "already registered" not in both.stderr

    events.unlink()
    no_autoload = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    explicit = run_pytest("-p", "pytest_accelerate_tracking", *args, env=no_autoload)
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr
    assert {e["hardware"] for e in finished(read_events(events)).values()} == {"cuda"}

    # Without -p, and with autoload off, the options do not exist: -p did the loading above.
    without = run_pytest(*args, env=no_autoload)
    assert without.returncode == 4
    assert "--tracking-hardware" in without.stderr


def test_the_app_no_longer_ships_a_plugin() -> None:
    from importlib import metadata

    plugins = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert plugins["pytest_accelerate_tracking"] == "pytest_accelerate_tracking"
    assert not any(value.startswith("app.") for value in plugins.values())
    assert not (ROOT / "app" / "pytest_plugin.py").exists()


def test_tracking_url_without_model_is_a_usage_error() -> None:
    result = run_pytest("test_plain.py", "--tracking-url", "http://127.0.0.1:1")

    assert result.returncode == 4
    assert "--tracking-model" in result.stderr


# --- selection and events --------------------------------------------------------------------


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
    ids = {f"test_passing.py::{name}" for name in expected}
    assert set(events[0]["tests"]) == ids
    assert set(finished(events)) == ids


def test_suite_without_markers_runs_whole_for_any_test_type(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest(
        "test_plain.py", "--tracking-test-type", "basic", "--tracking-events", str(events_path)
    )

    assert result.returncode == 0, result.stdout
    assert "deselected" not in result.stdout
    assert set(finished(read_events(events_path))) == {
        "test_plain.py::test_one",
        "test_plain.py::test_param[a]",
        "test_plain.py::test_param[b]",
        "test_plain.py::TestThing::test_method",
    }


def test_events_carry_outcome_properties_and_utc_times(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest(
        "test_passing.py", "--tracking-hardware", "cuda", "--tracking-events", str(events_path)
    )

    assert result.returncode == 0, result.stdout
    events = read_events(events_path)
    tests = finished(events)
    addition = tests["test_passing.py::test_addition"]
    assert addition["status"] == "passed"
    assert addition["nodeid"] == "test_passing.py::test_addition"
    assert addition["hardware"] == "cuda"
    assert addition["properties"] == {"latency_ms": 1.5}
    assert addition["error"] is None
    assert tests["test_passing.py::TestGroup::test_memory"]["properties"] == {"memory_mb": 12}
    assert tests["test_passing.py::test_square[2]"]["properties"] == {"throughput_per_sec": 200.0}
    started = datetime.fromisoformat(addition["started_at"])
    done = datetime.fromisoformat(addition["finished_at"])
    assert started.utcoffset() == timedelta(0)
    assert started <= done
    assert addition["duration_ms"] >= 0
    assert events[-1] == {**events[-1], "event": "session_finished", "exitstatus": 0}


def test_cases_keep_the_whole_traceback_and_skip_reasons(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    result = run_pytest("test_mixed.py", "--tracking-events", str(events_path))

    assert result.returncode == 1
    tests = finished(read_events(events_path))
    fails = tests["test_mixed.py::test_fails"]["error"]
    assert "one is not two" in fails and "def test_fails" in fails and "test_mixed.py:" in fails
    assert "setup exploded" in tests["test_mixed.py::test_setup_error"]["error"]
    assert tests["test_mixed.py::test_setup_error"]["error"].startswith("setup: ")
    assert "teardown exploded" in tests["test_mixed.py::test_teardown_error"]["error"]
    assert tests["test_mixed.py::test_skipped"]["error"] == "not on this device"
    assert tests["test_mixed.py::test_xfails"]["status"] == "xfailed"
    assert tests["test_mixed.py::test_xpasses"]["status"] == "xpassed"
    assert tests["test_mixed.py::test_passes"]["error"] is None


# --- every outcome, counted as JUnit XML counts it --------------------------------------------


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_cases_equal_junit_with_subtests_and_xdist(xdist: bool, tmp_path: Path) -> None:
    events_path, report = tmp_path / "events.jsonl", tmp_path / "junit.xml"
    extra = ["-n", "2"] if xdist else ["-p", "no:xdist"]

    result = run_pytest(
        "plugin", *extra, "--tracking-events", str(events_path), "--junitxml", str(report)
    )

    assert result.returncode == 1, result.stdout
    events = read_events(events_path)
    cases = [e for e in events if e["event"] == "test_finished"]
    assert counts([c["status"] for c in cases]) == junit(report)
    assert junit(report)["tests"] == 69
    [collected] = [e for e in events if e["event"] == "collected"]
    assert collected["count"] == 56  # test items; subtests are found as they run
    by_name = {c["name"]: c for c in cases}
    assert len(by_name) == len(cases)
    outcomes = "plugin/test_outcomes.py::"
    expected = {
        "test_param[p1]": "passed",
        "TestGroup::test_member": "passed",
        "test_fails": "failed",
        "test_setup_error": "error",
        "test_teardown_error_after_pass": "error",
        "test_teardown_error_after_failure": "failed",
        "test_teardown_error_after_failure [teardown]": "error",
        "test_xfail": "xfailed",
        "test_xpass": "xpassed",
        "test_skipped": "skipped",
        "test_subtests": "failed",
        "test_subtests [square] (i=0)": "passed",
        "test_subtests [square] (i=2)": "failed",
    }
    assert {n: by_name[outcomes + n]["status"] for n in expected} == expected
    units = "plugin/test_unit_subtests.py::NumbersTest::"
    assert by_name[units + "test_even (i=1)"]["status"] == "failed"
    assert by_name[units + "test_even (i=2)"]["status"] == "passed"
    assert "AssertionError" in by_name[units + "test_even (i=3)"]["error"]
    assert by_name[outcomes + "test_passes"]["properties"] == {"latency_ms": 2.5}


def test_ids_are_the_same_for_one_file_or_the_whole_suite(tmp_path: Path) -> None:
    one, whole = tmp_path / "one.jsonl", tmp_path / "whole.jsonl"

    run_pytest("plugin/test_outcomes.py", "--tracking-events", str(one))
    run_pytest(".", "--tracking-events", str(whole), "-p", "no:xdist", cwd=SUITES / "plugin")

    alone = set(finished(read_events(one)))
    together = set(finished(read_events(whole)))
    assert alone and alone < together
    assert all(name.startswith("plugin/test_outcomes.py::") for name in alone)
    assert "plugin/test_outcomes.py::test_param[p2]" in alone


def test_error_text_is_cut_at_the_documented_limit(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"

    run_pytest("plugin/test_outcomes.py::test_huge_error", "--tracking-events", str(events_path))

    [case] = finished(read_events(events_path)).values()
    assert len(case["error"]) == ERROR_TEXT_LIMIT
    assert "characters cut" in case["error"]
    assert case["error"].startswith("def test_huge_error")
    assert "x" * 1000 in case["error"]


def test_long_ids_and_errors_fit_the_server_bounds() -> None:
    long = "tests/test_x.py::test_a[" + "p" * 2000 + "]"
    assert len(case_name(long)) <= NAME_LIMIT
    assert case_name(long) != case_name(long + "q")
    assert case_name("tests/t.py::test_a") == "tests/t.py::test_a"
    assert shorten_error(None) is None
    assert shorten_error("  boom \n") == "boom"
    assert len(shorten_error("e" * 200_000) or "") == ERROR_TEXT_LIMIT <= 100_000


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("latency_ms", "ms"),
        ("throughput_per_sec", "items/s"),
        ("memory_mb", "MB"),
        ("load_time_s", "s"),
        ("accuracy", ""),
    ],
)
def test_metric_unit_follows_the_name_suffix(name: str, unit: str) -> None:
    assert metric_unit(name) == unit


# --- sending ---------------------------------------------------------------------------------


def test_results_go_in_batches_not_one_request_per_test(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    result = run_pytest(
        "plugin/test_many.py",
        *record_args(fake_server.url + "/", tmp_path / "spool.jsonl", "--tracking-run-id", "r-1"),
        "--tracking-hardware",
        "cuda",
        "--tracking-batch",
        "b-1",
        "--tracking-tag",
        "ci=yes",
        "--tracking-api-key",
        "secret",
        "-p",
        "no:xdist",
    )

    assert result.returncode == 1, result.stdout
    assert tracking_lines(result) == [
        f"accelerate-tracking: recorded run r-1, 46 results at {fake_server.url}"
    ]
    requests = fake_server.requests
    assert {r.api_key for r in requests} == {"secret"}
    run = "/api/test/db/run/r-1"
    assert requests[0].method == "POST" and requests[0].path == "/api/test/db/runs"
    start = requests[0].body
    assert {k: v for k, v in start.items() if k != "started_at"} == {
        "run_id": "r-1",
        "model_name": "gpt2",
        "hardware": ["cuda"],
        "test_type": "comprehensive",
        "status": "running",
        "tags": {"ci": "yes"},
        "batch_id": "b-1",
    }
    case_posts = [r for r in requests if r.path == run + "/cases"]
    assert 1 <= len(case_posts) <= 3  # a 46-result session is a request or two, not 46
    cases = [c for r in case_posts for c in r.body]
    assert len(cases) == 46
    assert cases[0] == {
        "name": "plugin/test_many.py::test_number[0]",
        "status": "passed",
        "duration_ms": cases[0]["duration_ms"],
        "error": None,
        "hardware": "cuda",
    }
    assert requests[-1].path == run + "/complete"
    assert requests[-1].body["status"] == "completed"
    assert datetime.fromisoformat(requests[-1].body["completed_at"]).utcoffset() == timedelta(0)
    patches = [r.body for r in requests if r.method == "PATCH"]
    assert patches and patches[-1]["progress"] == 1.0
    assert not (tmp_path / "spool.jsonl").exists()


def test_server_errors_are_retried_with_backoff(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.fail_first = 3

    result = run_pytest("test_plain.py", *record_args(fake_server.url, tmp_path / "s.jsonl"))

    assert result.returncode == 0, result.stdout
    [line] = tracking_lines(result)
    assert line.startswith("accelerate-tracking: recorded run ")
    created = [r for r in fake_server.requests if r.path == "/api/test/db/runs"]
    assert [r.body is FAILED for r in created][:3] == [True, True, True]
    ok = [r for r in fake_server.requests if r.body is not FAILED]
    live = sum(len(r.body) for r in ok if r.path.endswith("/cases"))
    whole = sum(len(r.body.get("results", {}).get("test_details", [])) for r in created[3:])
    assert live + whole == 4  # sent live once the server answered, or as the whole run


def test_a_stalled_server_costs_only_the_flush_timeout(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.delay_s = 30
    spool = tmp_path / "spool.jsonl"

    began = time.monotonic()
    result = run_pytest(
        "test_plain.py", *record_args(fake_server.url, spool, "--tracking-flush-timeout", "1")
    )

    assert time.monotonic() - began < 20
    assert result.returncode == 0, result.stdout
    [line] = tracking_lines(result)
    assert "could not record run" in line and f"spooled to {spool}" in line
    [entry] = [json.loads(x) for x in spool.read_text().splitlines()]
    assert len(entry["run"]["results"]["test_details"]) == 4


def test_unreachable_server_spools_and_leaves_the_session_alone(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    spool = tmp_path / "spool.jsonl"

    result = run_pytest("test_mixed.py", *record_args(url, spool))

    assert result.returncode == 1
    assert "1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 2 errors" in result.stdout
    [line] = tracking_lines(result)
    assert line.startswith("accelerate-tracking: could not record run ")
    assert url in line and "Connection refused" in line and f"upload {spool}" in line
    assert "Traceback" not in result.stdout + result.stderr
    [entry] = [json.loads(x) for x in spool.read_text().splitlines()]
    assert entry["url"] == url and entry["run"]["status"] == "completed"
    assert len(entry["run"]["results"]["test_details"]) == 7


def test_default_spool_is_in_the_pytest_cache_or_the_user_cache(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(SUITES / "test_plain.py", project / "test_plain.py")
    url = f"http://127.0.0.1:{closed_port()}"
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    args = ["--tracking-url", url, "--tracking-model", "gpt2"]

    run_pytest("test_plain.py", *args, cwd=project, env=env)
    cached = project / ".pytest_cache" / "d" / "accelerate-tracking" / "spool.jsonl"
    assert len(cached.read_text().splitlines()) == 1

    run_pytest("test_plain.py", *args, "-p", "no:cacheprovider", cwd=project, env=env)
    fallback = tmp_path / "xdg" / "accelerate-tracking" / "spool.jsonl"
    assert len(fallback.read_text().splitlines()) == 1


# --- against the real server -----------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real uvicorn process on empty databases (a generous start-up bound on a busy box)."""
    srv = Server(tmp_path).start(timeout=START_TIMEOUT_S)
    try:
        yield srv
    finally:
        srv.stop()


def get_run(url: str, run_id: str) -> dict[str, Any]:
    """Return a stored run."""
    response = httpx.get(f"{url}/api/test/db/run/{run_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.e2e
def test_xdist_session_is_one_run_with_every_case(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    spool = tmp_path / "spool.jsonl"

    result = run_pytest(
        "plugin",
        "-n",
        "2",
        *record_args(server.url, spool, "--tracking-run-id", "xd-1", "--tracking-tag", "ci=yes"),
        "--junitxml",
        str(report),
    )

    assert result.returncode == 1, result.stdout
    assert tracking_lines(result) == [
        f"accelerate-tracking: recorded run xd-1, 69 results at {server.url}"
    ]
    run = get_run(server.url, "xd-1")
    details = run["results"]["test_details"]
    assert counts([c["status"] for c in details]) == junit(report)
    results = run["results"]
    expected = junit(report)
    assert results["tests_failed"] == expected["failed"]
    assert results["tests_skipped"] == expected["skipped"]
    assert results["tests_passed"] == expected["tests"] - expected["failed"] - expected["skipped"]
    assert run["status"] == "completed" and run["progress"] == 1.0
    assert run["tags"] == {"ci": "yes"} and run["hardware"] == ["cpu"]
    names = {c["name"] for c in details}
    assert "plugin/test_outcomes.py::test_subtests [square] (i=2)" in names
    assert "plugin/test_unit_subtests.py::NumbersTest::test_even (i=3)" in names
    huge = next(c for c in details if c["name"].endswith("::test_huge_error"))
    assert len(huge["error"]) == ERROR_TEXT_LIMIT
    assert [(m["name"], m["value"]) for m in run["metrics"]] == [("latency_ms", 2.5)]
    runs = httpx.get(f"{server.url}/api/test/db/runs", timeout=10).json()
    assert [r["run_id"] for r in runs] == ["xd-1"]


@pytest.mark.e2e
def test_spooled_run_is_uploaded_later_idempotently(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    down = f"http://127.0.0.1:{closed_port()}"

    first = run_pytest(
        "plugin/test_many.py", *record_args(down, spool, "--tracking-run-id", "sp-1")
    )
    assert "spooled to" in tracking_lines(first)[0]
    copy = tmp_path / "copy.jsonl"
    shutil.copy(spool, copy)

    upload = [sys.executable, "-m", "app", "upload", str(spool), "--url", server.url]
    sent = subprocess.run(upload, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"accelerate-tracking: sent 1 run(s) from {spool}; " + (
        "the spool is now empty"
    )
    assert not spool.exists()
    run = get_run(server.url, "sp-1")
    assert len(run["results"]["test_details"]) == 46 and run["status"] == "completed"

    # Sending the same runs again changes nothing (the upload is an upsert of the whole run).
    again = [sys.executable, "-m", "pytest_accelerate_tracking", "upload", str(copy)]
    resent = subprocess.run([*again, "--url", server.url], capture_output=True, text=True)
    assert resent.returncode == 0, resent.stderr
    assert get_run(server.url, "sp-1")["results"] == run["results"]

    missing = subprocess.run(upload, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert missing.returncode == 2 and "no spool file" in missing.stderr


@pytest.mark.e2e
def test_next_run_sends_what_an_earlier_one_spooled(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    srv = Server(tmp_path)
    # The server is down for the first session: its run is spooled for this server's URL.
    first = run_pytest("test_plain.py", *record_args(srv.url, spool, "--tracking-run-id", "n-1"))
    assert "spooled to" in tracking_lines(first)[0]
    srv.start(timeout=START_TIMEOUT_S)
    try:
        second = run_pytest(
            "test_plain.py", *record_args(srv.url, spool, "--tracking-run-id", "n-2")
        )
        [line] = tracking_lines(second)
        assert line == (
            f"accelerate-tracking: recorded run n-2, 4 results at {srv.url}; "
            f"sent 1 spooled run(s) from {spool}"
        )
        assert not spool.exists()
        for run_id in ("n-1", "n-2"):
            run = get_run(srv.url, run_id)
            assert run["status"] == "completed" and run["results"]["tests_passed"] == 4
    finally:
        srv.stop()


# --- the sender process ----------------------------------------------------------------------

PROBE_CONFTEST = """
import json, sys, threading


def pytest_sessionfinish(session):
    with open("probe-{}.json".format(len(sys.argv)), "w") as f:
        json.dump({"modules": sorted(sys.modules), "threads": threading.active_count()}, f)
"""
KILLS_ITS_SENDER = """
import psutil


def test_before():
    pass


def test_kills_the_sender_process():
    [sender] = [
        child
        for child in psutil.Process().children()
        if "pytest_accelerate_tracking.relay" in " ".join(child.cmdline())
    ]
    sender.kill()
    sender.wait(10)


def test_after():
    pass
"""
DIES_MIDWAY = """
import os


def test_before():
    pass


def test_the_process_dies():
    os._exit(3)
"""


def write_project(folder: Path, **files: str) -> Path:
    """Write a small pytest project (its own pytest.ini) into `folder`; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:hypothesispytest -p no:xdist\n")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_the_test_process_does_no_network_work(fake_server: FakeServer, tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        **{"conftest.py": PROBE_CONFTEST, "test_plain.py": "def test_a():\n    pass\n"},
    )
    inert = run_pytest("test_plain.py", cwd=project)
    recording = run_pytest(
        "test_plain.py", *record_args(fake_server.url, tmp_path / "s.jsonl"), cwd=project
    )

    assert inert.returncode == recording.returncode == 0, recording.stdout
    assert tracking_lines(recording)[0].startswith("accelerate-tracking: recorded run ")
    probes = [json.loads(p.read_text()) for p in sorted(project.glob("probe-*.json"))]
    [alone, recorded] = sorted(probes, key=lambda p: len(p["modules"]))
    # No HTTP client, no sender thread: the sender process does that, out of this GIL.
    assert not {m for m in recorded["modules"] if m.split(".")[0] in ("httpx", "httpcore")} - {
        m for m in alone["modules"]
    }
    assert recorded["threads"] == alone["threads"] == 1


def test_without_an_answer_from_the_sender_process_the_session_spools(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", **{"test_kills.py": KILLS_ITS_SENDER})
    spool = tmp_path / "spool.jsonl"

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}

    result = run_pytest("test_kills.py", *record_args(fake_server.url, spool), cwd=project, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    [line] = tracking_lines(result)
    assert "could not record run" in line and "the sender process did not answer" in line
    assert f"spooled to {spool}" in line
    [entry] = [json.loads(x) for x in spool.read_text().splitlines()]
    assert entry["run"]["status"] == "completed"
    assert [c["name"] for c in entry["run"]["results"]["test_details"]] == [
        "test_kills.py::test_before",
        "test_kills.py::test_kills_the_sender_process",
        "test_kills.py::test_after",
    ]
    assert not list(scratch.iterdir())  # the journal is gone once the run is spooled


def test_a_session_that_dies_is_completed_as_an_error(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", **{"test_dies.py": DIES_MIDWAY})

    scratch = tmp_path / "tmp"
    scratch.mkdir()

    args = record_args(fake_server.url, tmp_path / "s.jsonl", "--tracking-run-id", "dead-1")
    result = run_pytest("test_dies.py", *args, cwd=project, env={"TMPDIR": str(scratch)})

    assert result.returncode == 3
    run = "/api/test/db/run/dead-1"
    deadline = time.monotonic() + 60
    while (run + "/complete") not in {r.path for r in fake_server.requests}:
        assert time.monotonic() < deadline, fake_server.paths()
        time.sleep(0.1)
    [complete] = [r for r in fake_server.requests if r.path == run + "/complete"]
    assert complete.body["status"] == "error"
    assert "ended without finishing" in complete.body["error"]
    cases = [c["name"] for r in fake_server.requests if r.path == run + "/cases" for c in r.body]
    assert cases == ["test_dies.py::test_before"]
    while list(scratch.iterdir()):  # the sender process removes the journal nobody will read
        assert time.monotonic() < deadline
        time.sleep(0.1)
