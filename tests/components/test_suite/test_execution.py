"""The Test Suite runs real pytest suites: outcomes, metrics, cancel, timeout, crash, live."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.config import Settings
from app.main import create_app
from tests.components.test_suite.support import parse_junit
from tests.support import alive, make_settings

SUITES = Path(__file__).resolve().parents[2] / "fixtures" / "suites"
TERMINAL = {"completed", "error", "timeout", "cancelled"}


@pytest.fixture
def suite_settings(tmp_path: Path, template_dbs: dict[str, Path]) -> Settings:
    """Settings whose tests folder holds the fixture suites (model name = file stem)."""
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, tests_dir / suite.name)
    return make_settings(tmp_path, template_dbs, tests_dir=tests_dir)


@pytest.fixture
def runner_client(suite_settings: Settings) -> Iterator[TestClient]:
    """The app with the fixture suites in its tests folder."""
    with TestClient(create_app(suite_settings)) as client:
        yield client


def start(client: TestClient, model: str, **body: Any) -> str:
    """Start a run and return its id."""
    response = client.post("/api/test/run", json={"model_name": model, **body})
    assert response.status_code == 202, response.text
    assert response.json()["status"] in {"queued", "running"}
    return str(response.json()["run_id"])


def wait(client: TestClient, run_id: str, until: Any = None, timeout: float = 60) -> dict[str, Any]:
    """Poll a run's status until `until(status)` (default: terminal) holds."""
    check = until or (lambda s: s["status"] in TERMINAL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/test/status/{run_id}").json()
        if check(status):
            return dict(status)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not get there: {status}")


def artifact(detail: dict[str, Any], kind: str) -> Path:
    """Return the path of a run's artifact of a kind."""
    paths = [a["artifact_path"] for a in detail["artifacts"] if a["artifact_type"] == kind]
    assert paths, f"no {kind} artifact in {detail['artifacts']}"
    return Path(paths[0])


def test_run_counts_equal_pytests_own_junit_xml(runner_client: TestClient) -> None:
    run_id = start(runner_client, "mixed")
    assert wait(runner_client, run_id)["status"] == "completed"
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    junit = parse_junit(artifact(detail, "junit"))
    assert detail["tests_passed"] == junit["passed"]
    assert detail["tests_failed"] == junit["failures"] + junit["errors"]
    assert detail["tests_skipped"] == junit["skipped"]
    assert len(detail["results"]["test_details"]) == junit["tests"]
    assert artifact(detail, "log").read_text()


@pytest.mark.parametrize(
    ("test_type", "expected"),
    [("basic", 2), ("comprehensive", 6), ("fault_tolerance", 3)],
)
def test_test_type_selects_tests_by_marker(
    runner_client: TestClient, test_type: str, expected: int
) -> None:
    run_id = start(runner_client, "passing", test_type=test_type)
    wait(runner_client, run_id)
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    assert detail["status"] == "completed"
    assert detail["tests_passed"] == expected
    assert len(detail["steps"]) == expected


def test_unmarked_suite_runs_every_test_whatever_the_type(runner_client: TestClient) -> None:
    run_id = start(runner_client, "plain", test_type="basic")
    wait(runner_client, run_id)
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    junit = parse_junit(artifact(detail, "junit"))
    assert junit["tests"] > 0
    assert len(detail["results"]["test_details"]) == junit["tests"]


def test_each_test_becomes_a_case_a_step_and_its_numbers_metrics(runner_client: TestClient) -> None:
    # Two names of the CPU backend: both are always there, so both passes run.
    run_id = start(runner_client, "passing", test_type="comprehensive", hardware=["cpu", "cpu:1"])
    wait(runner_client, run_id)
    detail = runner_client.get(
        f"/api/test/run/{run_id}".replace("/test/run", "/test/db/run")
    ).json()
    cases = detail["results"]["test_details"]
    assert {c["hardware"] for c in cases} == {"cpu", "cpu:1"}
    assert len(cases) == 12 and detail["tests_passed"] == 12
    assert {s["step_name"] for s in detail["steps"]} >= {
        "test_passing.py::test_addition @ cpu",
        "test_passing.py::test_addition @ cpu:1",
    }
    latency = [m for m in detail["metrics"] if m["name"] == "latency_ms"]
    assert {(m["value"], m["unit"], m["hardware"]) for m in latency} == {
        (1.5, "ms", "cpu"),
        (1.5, "ms", "cpu:1"),
    }
    assert [m["unit"] for m in detail["metrics"] if m["name"] == "memory_mb"] == ["MB", "MB"]
    assert detail["progress"] == 1.0
    stats = {r["hardware"]: r for r in runner_client.get("/api/test/db/hardware/stats").json()}
    assert stats["cpu"]["tests_passed"] == stats["cpu:1"]["tests_passed"] == 12


def test_saved_results_file_holds_the_run(runner_client: TestClient) -> None:
    run_id = start(runner_client, "slow", save_results=True)
    wait(runner_client, run_id)
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    saved = json.loads(artifact(detail, "result_file").read_text())
    assert detail["result_file"] == str(artifact(detail, "result_file"))
    assert saved["run_id"] == run_id and saved["tests_passed"] == 3


def test_missing_test_module_is_a_clear_404(runner_client: TestClient) -> None:
    response = runner_client.post("/api/test/run", json={"model_name": "no-such-model"})
    assert response.status_code == 404
    assert response.json()["code"] == "no_test_module"
    assert "test_no_such_model.py" in response.json()["detail"]


def _group_alive(pid_file: Path) -> list[int]:
    pids = [int(p) for p in pid_file.read_text().split()]
    return [p for p in pids if alive(p)]


def start_hanging(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """Start the hanging suite and wait until its pytest wrote its pids; return both."""
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FIXTURE_PID_FILE", str(pid_file))
    run_id = start(client, "hanging")
    wait(client, run_id, lambda s: pid_file.exists() and pid_file.read_text().strip())
    return run_id, pid_file


def wait_group_gone(pid_file: Path, timeout: float = 15) -> None:
    """Wait until no process of the run's pytest group is alive."""
    deadline = time.monotonic() + timeout
    while _group_alive(pid_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_alive(pid_file) == []


def test_cancel_kills_the_process_group_and_stays_final(
    runner_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, pid_file = start_hanging(runner_client, tmp_path, monkeypatch)
    response = runner_client.post(f"/api/test/cancel/{run_id}")
    assert response.json() == {**response.json(), "cancelled": True, "status": "cancelled"}
    wait_group_gone(pid_file)
    time.sleep(0.5)
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    assert detail["status"] == "cancelled"
    assert detail["tests_passed"] == 1  # test_quick finished before the cancel
    again = runner_client.post(f"/api/test/cancel/{run_id}").json()
    assert again["cancelled"] is False and again["status"] == "cancelled"


def test_a_cancel_written_through_the_database_api_stops_the_run(
    runner_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a cancel through another server process on the same database would: only the row
    # changes; the pool that executes the run sees it and kills pytest.
    run_id, pid_file = start_hanging(runner_client, tmp_path, monkeypatch)
    ended = runner_client.post(
        f"/api/test/db/run/{run_id}/complete", json={"status": "cancelled", "error": "elsewhere"}
    )
    assert ended.status_code == 200, ended.text
    wait_group_gone(pid_file)
    runner = runner_client.app.state.runtimes["test_suite"].runner  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while runner.jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.jobs == {}
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    assert (detail["status"], detail["error"]) == ("cancelled", "elsewhere")
    events = []
    with runner_client.stream("GET", f"/api/test/events/{run_id}") as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert events[-1] == {**events[-1], "type": "end", "status": "cancelled"}


def test_timeout_kills_the_process_group_and_records_timeout(
    runner_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FIXTURE_PID_FILE", str(pid_file))
    run_id = start(runner_client, "hanging", timeout=10)
    status = wait(runner_client, run_id)
    assert status["status"] == "timeout"
    assert "timed out after 10 s" in status["error"]
    assert _group_alive(pid_file) == []
    assert runner_client.get(f"/api/test/results/{run_id}").json()["tests_passed"] == 1


def test_a_crashing_interpreter_ends_the_run_in_error(runner_client: TestClient) -> None:
    run_id = start(runner_client, "crashing")
    status = wait(runner_client, run_id)
    assert status["status"] == "error"
    assert "3" in status["error"]
    detail = runner_client.get(f"/api/test/results/{run_id}").json()
    assert detail["tests_passed"] == 1


def test_sse_streams_every_step_in_order_until_the_end(runner_client: TestClient) -> None:
    run_id = start(runner_client, "slow")
    events: list[dict[str, Any]] = []
    with runner_client.stream("GET", f"/api/test/events/{run_id}") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    tests = [e["name"] for e in events if e["type"] == "test"]
    assert tests == [f"test_slow.py::test_slow[{n}]" for n in (1, 2, 3)]
    progress = [e["progress"] for e in events if e["type"] == "status"]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_websocket_answers_ping_status_and_sees_the_end(runner_client: TestClient) -> None:
    run_id = start(runner_client, "slow")
    with runner_client.websocket_connect(f"/api/test/ws/{run_id}") as ws:
        ws.send_text("ping")
        seen = []
        while True:
            message = ws.receive_json()
            seen.append(message)
            if message["type"] == "pong":
                ws.send_json({"type": "status"})
            if message["type"] == "end":
                break
    kinds = [m["type"] for m in seen]
    assert "pong" in kinds and kinds.count("test") == 3
    assert seen[-1]["status"] == "completed"


def test_websocket_cancel_stops_the_run(runner_client: TestClient) -> None:
    run_id = start(runner_client, "hanging")
    wait(runner_client, run_id, lambda s: str(s["current_step"]).endswith("::test_hangs"))
    with runner_client.websocket_connect(f"/api/test/ws/{run_id}") as ws:
        ws.send_text("cancel")
        messages = []
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                messages.append(ws.receive_json())
    kinds = [m["type"] for m in messages]
    assert "end" in kinds
    assert any(m["type"] == "cancel" and m["cancelled"] for m in messages)
    assert wait(runner_client, run_id)["status"] == "cancelled"


def test_websocket_for_an_unknown_run_says_so(runner_client: TestClient) -> None:
    with runner_client.websocket_connect("/api/test/ws/nope") as ws:
        assert ws.receive_json()["code"] == "not_found"


def test_batch_runs_one_run_per_model_and_follows_them(runner_client: TestClient) -> None:
    response = runner_client.post(
        "/api/test/batch", json={"model_names": ["slow", "crashing"], "description": "two"}
    )
    assert response.status_code == 202
    body = response.json()
    for run_id in body["run_ids"]:
        wait(runner_client, run_id)
    batch = runner_client.get(f"/api/test/db/batch/{body['batch_id']}").json()
    assert batch["status"] == "partial"
    assert batch["counts"]["by_status"] == {"completed": 1, "error": 1}
    assert sorted(r["run_id"] for r in batch["runs"]) == sorted(body["run_ids"])


def test_models_hardware_and_types_describe_what_can_run(runner_client: TestClient) -> None:
    run_id = start(runner_client, "slow")
    wait(runner_client, run_id)
    models = {m["model_name"]: m for m in runner_client.get("/api/test/models").json()}
    assert models["slow"]["last_run_id"] == run_id and models["slow"]["last_status"] == "completed"
    assert "passing" in models and models["passing"]["last_run_id"] is None
    hardware = {h["name"]: h for h in runner_client.get("/api/test/hardware").json()}
    assert hardware["cpu"]["available"] is True and "cuda" in hardware
    types = {t["name"]: t for t in runner_client.get("/api/test/types?model_name=passing").json()}
    assert types["basic"]["tests"] == ["test_addition", "test_hardware_option"]
    assert len(types["comprehensive"]["tests"]) == 6
    assert "test_bad_input_raises" in types["fault_tolerance"]["tests"]


def test_runs_list_and_status_come_from_the_database(
    suite_settings: Settings,
) -> None:
    with TestClient(create_app(suite_settings)) as client:
        run_id = start(client, "slow")
        wait(client, run_id)
    with TestClient(create_app(suite_settings)) as client:
        assert client.get(f"/api/test/status/{run_id}").json()["status"] == "completed"
        listed = client.get("/api/test/runs").json()
        assert [r["run_id"] for r in listed] == [run_id]


def test_live_events_carry_the_timestamps_rest_answers(runner_client: TestClient) -> None:
    run_id = start(runner_client, "slow")
    events: list[dict[str, Any]] = []
    with runner_client.stream("GET", f"/api/test/events/{run_id}") as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    # Test events are only ever pushed live: the stream saw the run while it ran.
    assert [e["type"] for e in events].count("test") == 3
    status = runner_client.get(f"/api/test/status/{run_id}").json()
    detail = runner_client.get(f"/api/test/db/run/{run_id}").json()
    for event in events:
        if event["type"] in {"status", "end"}:
            assert event["started_at"] == status["started_at"] == detail["started_at"]
    end = events[-1]
    assert end["type"] == "end"
    assert end["completed_at"] == status["completed_at"] == detail["completed_at"]
    assert end["completed_at"] is not None and end["completed_at"].endswith("Z")
    same = ("run_id", "model_name", "status", "progress", "current_step", "error")
    assert {k: end[k] for k in same} == {k: status[k] for k in same}
