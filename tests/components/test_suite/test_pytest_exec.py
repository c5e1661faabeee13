"""PytestProcess: events, JUnit parity, selection, timeout, cancel and crash of real pytest runs."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.components.test_suite.pytest_exec import (
    ExecOutcome,
    PytestInvocation,
    PytestProcess,
    device_slug,
)
from tests.components.test_suite.support import parse_junit
from tests.support import alive

SUITES = Path(__file__).resolve().parents[2] / "fixtures" / "suites"


def run_suite(
    suite: str,
    workdir: Path,
    *,
    test_type: str = "comprehensive",
    device: str = "cpu",
    timeout_s: float | None = None,
    extra_args: list[str] | None = None,
) -> tuple[ExecOutcome, list[dict[str, Any]]]:
    """Run one fixture suite and return its outcome and the events it streamed."""
    events: list[dict[str, Any]] = []
    inv = PytestInvocation(
        test_file=SUITES / suite,
        device=device,
        test_type=test_type,
        workdir=workdir,
        timeout_s=timeout_s,
        extra_args=extra_args or [],
    )
    outcome = PytestProcess(inv, events.append).run()
    return outcome, events


def finished(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the test_finished events."""
    return [e for e in events if e["event"] == "test_finished"]


def junit_counts_from_events(events: list[dict[str, Any]]) -> dict[str, int]:
    """Count finished tests the way pytest's JUnit XML counts them."""
    statuses = Counter(e["status"] for e in finished(events))
    return {
        "tests": sum(statuses.values()),
        "failures": statuses["failed"],
        "errors": statuses["error"],
        "skipped": statuses["skipped"] + statuses["xfailed"],
        "passed": statuses["passed"] + statuses["xpassed"],
    }


def group_alive(pgid: int) -> list[int]:
    """Return the pids of live processes in a process group."""
    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != 0 and os.getpgid(proc.pid) == pgid and alive(proc.pid):
                pids.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return pids


def read_pids(path: Path, timeout_s: float = 10.0) -> list[int]:
    """Wait for the hanging suite's pid file and return (pytest pid, child pid)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if path.exists() and path.read_text().endswith("\n"):
            return [int(p) for p in path.read_text().split()]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{path} was never written")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "suite",
    ["test_passing.py", "test_mixed.py", "test_slow.py", "test_plain.py", "test_broken_import.py"],
)
def test_event_counts_match_junit_report(suite: str, tmp_path: Path) -> None:
    outcome, events = run_suite(suite, tmp_path)

    assert outcome.status == "finished"
    assert outcome.reason is None
    assert junit_counts_from_events(events) == parse_junit(outcome.junit_path)
    assert events[0]["event"] == "collected"
    assert events[0]["count"] == len(finished(events))
    assert events[-1]["event"] == "session_finished"
    assert events[-1]["exitstatus"] == outcome.exit_code


def test_events_arrive_in_order_one_finish_per_test(tmp_path: Path) -> None:
    outcome, events = run_suite("test_mixed.py", tmp_path)

    kinds = [e["event"] for e in events]
    assert kinds[0] == "collected"
    assert kinds[-1] == "session_finished"
    assert kinds[1:-1] == ["test_started", "test_finished"] * 7
    for started, done in zip(events[1:-1:2], events[2:-1:2], strict=True):
        assert started["name"] == done["name"]
    assert [e["name"] for e in finished(events)] == events[0]["tests"]
    assert outcome.exit_code == 1


def test_mixed_suite_reports_every_outcome(tmp_path: Path) -> None:
    outcome, events = run_suite("test_mixed.py", tmp_path)

    assert {e["name"]: e["status"] for e in finished(events)} == {
        "test_mixed.py::test_passes": "passed",
        "test_mixed.py::test_fails": "failed",
        "test_mixed.py::test_setup_error": "error",
        "test_mixed.py::test_teardown_error": "error",
        "test_mixed.py::test_skipped": "skipped",
        "test_mixed.py::test_xfails": "xfailed",
        "test_mixed.py::test_xpasses": "xpassed",
    }
    assert parse_junit(outcome.junit_path) == {
        "tests": 7,
        "failures": 1,
        "errors": 2,
        "skipped": 2,
        "passed": 2,
    }
    assert "setup exploded" in outcome.log_path.read_text()


@pytest.mark.parametrize(
    ("test_type", "expected"),
    [
        ("basic", 2),
        ("comprehensive", 6),
        ("fault_tolerance", 3),
    ],
)
def test_test_type_selects_marked_tests(test_type: str, expected: int, tmp_path: Path) -> None:
    outcome, events = run_suite("test_passing.py", tmp_path, test_type=test_type)

    assert outcome.status == "finished"
    assert outcome.exit_code == 0
    assert events[0]["count"] == expected
    assert len(finished(events)) == expected
    assert parse_junit(outcome.junit_path)["tests"] == expected


def test_no_selected_tests_is_finished_with_exit_code_5(tmp_path: Path) -> None:
    outcome, events = run_suite("test_plain.py", tmp_path, extra_args=["-k", "nothing_matches"])

    assert outcome.status == "finished"
    assert outcome.exit_code == 5
    assert events[0] == {"event": "collected", "count": 0, "tests": []}


def test_module_that_fails_to_import_is_one_error_test(tmp_path: Path) -> None:
    outcome, events = run_suite("test_broken_import.py", tmp_path)

    assert outcome.status == "finished"
    assert outcome.exit_code == 2
    [broken] = finished(events)
    assert broken["status"] == "error"
    assert broken["name"] == "test_broken_import.py"
    assert "module_that_does_not_exist" in broken["error"]


def test_devices_share_a_workdir_with_separate_files(tmp_path: Path) -> None:
    cpu, cpu_events = run_suite("test_plain.py", tmp_path, test_type="basic")
    gpu, gpu_events = run_suite("test_plain.py", tmp_path, test_type="basic", device="cuda:0")

    assert cpu.status == gpu.status == "finished"
    assert len({cpu.log_path, gpu.log_path, cpu.junit_path, gpu.junit_path}) == 4
    assert cpu.events_path != gpu.events_path
    assert gpu.junit_path.name == f"junit-{device_slug('cuda:0')}.xml"
    assert {e["hardware"] for e in finished(cpu_events)} == {"cpu"}
    assert {e["hardware"] for e in finished(gpu_events)} == {"cuda:0"}
    assert parse_junit(cpu.junit_path)["passed"] == 4


def test_timeout_kills_the_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FIXTURE_PID_FILE", str(pid_file))
    started = time.monotonic()

    # 8 s: pytest must reach the hanging test (and write its pids) before the timeout, and its
    # start-up alone takes 3-5 s on a loaded 2-core machine.
    outcome, events = run_suite("test_hanging.py", tmp_path, timeout_s=8.0)

    assert outcome.status == "timeout"
    assert outcome.reason is not None and "timed out" in outcome.reason
    assert time.monotonic() - started < 20
    pytest_pid, child_pid = read_pids(pid_file, timeout_s=0)
    assert not alive(pytest_pid)
    assert not alive(child_pid)
    assert group_alive(pytest_pid) == []
    assert "session_finished" not in [e["event"] for e in events]


def test_cancel_from_another_thread_kills_the_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FIXTURE_PID_FILE", str(pid_file))
    inv = PytestInvocation(SUITES / "test_hanging.py", "cpu", "basic", tmp_path)
    events: list[dict[str, Any]] = []
    process = PytestProcess(inv, events.append)
    pids: list[int] = []

    def cancel_when_hanging() -> None:
        pids.extend(read_pids(pid_file))
        process.cancel()
        process.cancel()  # idempotent

    canceller = threading.Thread(target=cancel_when_hanging)
    canceller.start()
    started = time.monotonic()
    outcome = process.run()
    canceller.join()

    assert outcome.status == "cancelled"
    assert time.monotonic() - started < 10
    pytest_pid, child_pid = pids
    assert process.pid == pytest_pid
    assert not alive(pytest_pid)
    assert not alive(child_pid)
    assert group_alive(pytest_pid) == []
    assert [e["name"] for e in finished(events)] == ["test_hanging.py::test_quick"]


def test_cancel_before_run_starts_no_process(tmp_path: Path) -> None:
    inv = PytestInvocation(SUITES / "test_plain.py", "cpu", "basic", tmp_path)
    events: list[dict[str, Any]] = []
    process = PytestProcess(inv, events.append)

    process.cancel()
    outcome = process.run()

    assert outcome.status == "cancelled"
    assert outcome.exit_code is None
    assert process.pid is None
    assert events == []


def test_callback_error_still_kills_the_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FIXTURE_PID_FILE", str(pid_file))
    inv = PytestInvocation(SUITES / "test_hanging.py", "cpu", "basic", tmp_path)

    def explode(event: dict[str, Any]) -> None:
        if event.get("name") == "test_hanging.py::test_hangs":
            read_pids(pid_file)
            raise RuntimeError("listener failed")

    process = PytestProcess(inv, explode)
    with pytest.raises(RuntimeError, match="listener failed"):
        process.run()

    pytest_pid, child_pid = read_pids(pid_file, timeout_s=0)
    assert not alive(pytest_pid)
    assert not alive(child_pid)
    assert group_alive(pytest_pid) == []


def test_process_exit_without_session_end_is_a_crash(tmp_path: Path) -> None:
    outcome, events = run_suite("test_crashing.py", tmp_path, test_type="basic")

    assert outcome.status == "crashed"
    assert outcome.exit_code == 3
    assert outcome.reason is not None and "exit code 3" in outcome.reason
    assert [e["event"] for e in events] == [
        "collected",
        "test_started",
        "test_finished",
        "test_started",
    ]
    assert finished(events)[0]["status"] == "passed"
    assert events[0]["count"] == 3
