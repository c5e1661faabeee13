"""Generator execution API: tasks that render, check and write test files, and what they record."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components.generator import runner as runner_module
from app.components.generator.families import list_families
from app.components.generator.runner import CREATOR, GenerationRunner, Job
from app.components.test_suite.runner import ISOLATED_INI
from app.core.config import Settings
from app.core.naming import module_filename
from app.main import create_app
from tests.support import make_settings

API = "/api/generator"
FAMILIES = list_families()
SIX_MODELS = [f.example_model for f in FAMILIES]
ALL_TESTS = {
    "test_load_model",
    "test_basic_inference",
    "test_batch_inference",
    "test_model_attributes",
    "test_save_load",
    "test_error_handling",
    "test_resource_cleanup",
}
BY_MARKER = {
    "basic": {"test_load_model", "test_basic_inference", "test_model_attributes"},
    "comprehensive": {
        "test_load_model",
        "test_basic_inference",
        "test_batch_inference",
        "test_model_attributes",
        "test_save_load",
    },
    "fault_tolerance": {"test_error_handling", "test_resource_cleanup"},
}
TERMINAL = {"completed", "error", "cancelled"}


def wait_for_task(client: TestClient, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll GET /status until the task is terminal; return its status."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"{API}/status/{task_id}").json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, f"task did not finish: {body}"
        time.sleep(0.02)


def generate(client: TestClient, **body: Any) -> dict[str, Any]:
    """POST /model, wait for the task, and return its result."""
    started = client.post(f"{API}/model", json=body)
    assert started.status_code == 202, started.text
    wait_for_task(client, started.json()["task_id"])
    return client.get(f"{API}/result/{started.json()['task_id']}").json()


def collect(folder: Path, *args: str) -> dict[str, set[str]]:
    """Collect the test files in `folder` as the Test Suite would: {file name: test names}."""
    ini = folder.parent / "isolated.ini"
    ini.write_text(ISOLATED_INI)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--collect-only", "-q", "--strict-markers"),
            *("-c", str(ini), "--rootdir", str(folder), *args, str(folder)),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        if "::" in line:
            file, test = line.split("::", 1)
            tests.setdefault(Path(file).name, set()).add(test)
    return tests


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Hold every task inside its render step until the returned event is set."""
    release = threading.Event()
    render = runner_module.render_test_module

    def held(*args: Any, **kwargs: Any) -> str:
        assert release.wait(30), "the gate was never opened"
        return render(*args, **kwargs)

    monkeypatch.setattr(runner_module, "render_test_module", held)
    yield release
    release.set()


class Finished:
    """Tells when the worker is done with a task (whatever the task's status says)."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, task_id: str) -> threading.Event:
        """Return the task's event (the worker and the test may ask first, in any order)."""
        with self._lock:
            return self._events.setdefault(task_id, threading.Event())

    def wait(self, task_id: str, timeout: float = 30.0) -> bool:
        """Wait until the worker is done with the task."""
        return self.event(task_id).wait(timeout)


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Finished:
    """Signal when the worker is done with each task."""
    done = Finished()
    execute = GenerationRunner._execute

    def tracked(self: GenerationRunner, job: Job) -> None:
        try:
            execute(self, job)
        finally:
            done.event(job.task_id).set()

    monkeypatch.setattr(GenerationRunner, "_execute", tracked)
    return done


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `predicate` until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


# --- the six families, generated and collected --------------------------------------------------


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]) -> dict[str, Any]:
    """Generate the six families' example models through POST /batch, once per module."""
    settings = make_settings(tmp_path_factory.mktemp("six"), template_dbs)
    with TestClient(create_app(settings)) as client:
        started = client.post(f"{API}/batch", json={"model_names": SIX_MODELS})
        assert started.status_code == 202, started.text
        body = started.json()
        results = {}
        for name, task_id in zip(SIX_MODELS, body["task_ids"], strict=True):
            wait_for_task(client, task_id)
            results[name] = client.get(f"{API}/result/{task_id}").json()
        files = {name: client.get(f"{API}/file/{r['task_id']}") for name, r in results.items()}
        batch = client.get(f"{API}/db/batch/{body['batch_id']}").json()
        stats = client.get(f"{API}/db/models/stats").json()
    return {
        "folder": settings.folder("output"),
        "started": body,
        "results": results,
        "files": files,
        "batch": batch,
        "stats": stats,
    }


@pytest.fixture(scope="module")
def collected(six: dict[str, Any]) -> dict[str | None, dict[str, set[str]]]:
    """Collect the generated files without a marker and with each marker."""
    folder = six["folder"]
    return {
        marker: collect(folder, *(["-m", marker] if marker else []))
        for marker in (None, *BY_MARKER)
    }


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_batch_of_six_writes_each_family_s_test_file(six: dict[str, Any], family: Any) -> None:
    result = six["results"][family.example_model]
    assert result["status"] == "completed", result["error"]
    assert result["architecture"] == family.name
    assert result["creator"] == CREATOR
    assert result["task_type"] == "batch"
    assert result["batch_id"] == six["started"]["batch_id"]
    path = Path(result["output_file"])
    assert path == six["folder"] / module_filename(family.example_model)
    assert path.is_file()
    assert f"FAMILY = {family.name!r}".replace("'", '"') in path.read_text()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_task_records_four_steps_in_order_and_render_metrics(
    six: dict[str, Any], family: Any
) -> None:
    result = six["results"][family.example_model]
    assert [(s["step_name"], s["status"]) for s in result["steps"]] == [
        ("resolve", "completed"),
        ("render", "completed"),
        ("check", "completed"),
        ("write", "completed"),
    ]
    assert result["progress"] == 1.0
    assert result["current_step"] == "completed"
    metrics = {m["name"]: m for m in result["metrics"]}
    assert set(metrics) == {"render_ms", "lines", "bytes"}
    content = Path(result["output_file"]).read_text()
    assert metrics["lines"]["value"] == content.count("\n")
    assert metrics["bytes"]["value"] == len(content.encode())
    assert metrics["render_ms"]["value"] >= 0 and metrics["render_ms"]["unit"] == "ms"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_file_route_returns_exactly_the_written_file(six: dict[str, Any], family: Any) -> None:
    response = six["files"][family.example_model]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/x-python")
    path = Path(six["results"][family.example_model]["output_file"])
    assert response.content == path.read_bytes()


def test_batch_status_follows_its_six_completed_tasks(six: dict[str, Any]) -> None:
    batch = six["batch"]
    assert batch["status"] == "completed"
    assert batch["task_count"] == 6
    assert batch["counts"]["by_status"] == {"completed": 6}
    assert batch["creator"] == CREATOR
    rows = {row["model_name"]: row for row in six["stats"]}
    assert set(rows) == set(SIX_MODELS)
    assert all(r["completed_tasks"] == 1 and r["total_tasks"] == 1 for r in rows.values())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("marker", [None, *BY_MARKER], ids=str)
def test_generated_file_collects_seven_tests_with_the_right_markers(
    collected: dict[str | None, dict[str, set[str]]], family: Any, marker: str | None
) -> None:
    tests = collected[marker][module_filename(family.example_model)]
    assert tests == (BY_MARKER[marker] if marker else ALL_TESTS)


# --- single tasks -------------------------------------------------------------------------------


def test_post_model_answers_202_with_the_planned_file(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(f"{API}/model", json={"model_name": "gpt2"})
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {"task_id", "status", "message", "started_at"}
    assert body["status"] in {"queued", "running", "completed"}
    assert body["architecture"] == "decoder-only"
    assert body["output_file"] == str(settings.folder("output") / "test_gpt2.py")
    assert wait_for_task(client, body["task_id"])["status"] == "completed"


def test_unknown_model_without_template_type_is_422_listing_the_families(
    client: TestClient,
) -> None:
    response = client.post(f"{API}/model", json={"model_name": "acme/mystery-net"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "unknown_architecture"
    assert body["families"] == [f.name for f in FAMILIES]
    assert client.get(f"{API}/tasks").headers["x-total-count"] == "0"


def test_unknown_model_with_template_type_uses_that_family(client: TestClient) -> None:
    result = generate(client, model_name="acme/mystery-net", template_type="bert")
    assert result["status"] == "completed"
    assert result["architecture"] == "encoder-only"
    assert result["template_type"] == "bert"
    assert Path(result["output_file"]).name == "test_acme_mystery_net.py"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model_name": "gpt2", "template_type": "lstm"}, "unknown_template_type"),
        ({"model_name": "gpt2", "hardware": ["tpu"]}, "unsupported_hardware"),
        ({"model_name": "t5-small", "hardware": ["webgpu"]}, "unsupported_hardware"),
        ({"model_name": "gpt2", "template_context": {"batch_size": 0}}, "invalid_template_context"),
        ({"model_name": "gpt2", "template_context": {"colour": 1}}, "invalid_template_context"),
        ({"model_name": "   "}, "invalid_model_name"),
    ],
    ids=["template-type", "hardware", "family-hardware", "context-range", "context-key", "blank"],
)
def test_invalid_generation_options_are_422_and_queue_nothing(
    client: TestClient, body: dict[str, Any], code: str
) -> None:
    response = client.post(f"{API}/model", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert client.get(f"{API}/tasks").headers["x-total-count"] == "0"


def test_unknown_request_fields_are_422(client: TestClient) -> None:
    response = client.post(f"{API}/model", json={"model_name": "gpt2", "colour": "red"})
    assert response.status_code == 422


@pytest.mark.parametrize("output_dir", ["..", "../elsewhere", "/tmp", "a/../../b"])
def test_output_dir_outside_the_output_folder_is_400(
    client: TestClient, settings: Settings, output_dir: str
) -> None:
    response = client.post(f"{API}/model", json={"model_name": "gpt2", "output_dir": output_dir})
    assert response.status_code == 400
    assert response.json()["code"] == "path_outside_root"
    assert client.get(f"{API}/tasks").headers["x-total-count"] == "0"
    assert list(settings.folder("output").iterdir()) == []


def test_output_dir_inside_the_output_folder_is_used(
    client: TestClient, settings: Settings
) -> None:
    result = generate(client, model_name="gpt2", output_dir="nested/dir")
    path = settings.folder("output") / "nested" / "dir" / "test_gpt2.py"
    assert result["output_file"] == str(path)
    assert result["output_dir"] == str(path.parent)
    assert client.get(f"{API}/file/{result['task_id']}").content == path.read_bytes()


def test_existing_file_without_force_is_a_409_task_error(
    client: TestClient, settings: Settings
) -> None:
    first = generate(client, model_name="gpt2")
    path = Path(first["output_file"])
    before = path.read_text()
    second = generate(client, model_name="gpt2", template_context={"batch_size": 8})
    assert second["status"] == "error"
    assert second["error"].startswith("409 file_exists: ")
    assert "already exists; pass force=true to overwrite it" in second["error"]
    assert second["output_file"] is None and second["architecture"] is None
    assert [(s["step_name"], s["status"]) for s in second["steps"]][-1] == ("write", "error")
    assert path.read_text() == before
    missing = client.get(f"{API}/file/{second['task_id']}")
    assert missing.status_code == 404 and missing.json()["code"] == "no_file"
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_gpt2.py"]


def test_force_overwrites_the_existing_file(client: TestClient) -> None:
    first = generate(client, model_name="gpt2")
    forced = generate(client, model_name="gpt2", force=True, template_context={"batch_size": 8})
    assert forced["status"] == "completed"
    assert forced["output_file"] == first["output_file"]
    assert "BATCH_SIZE = 8\n" in Path(forced["output_file"]).read_text()
    assert forced["template_context"] == {"batch_size": 8, "sequence_length": 8, "repeats": 3}


def test_fix_syntax_false_writes_the_rendered_source(client: TestClient) -> None:
    result = generate(client, model_name="gpt2", fix_syntax=False, hardware=["cpu", "cuda"])
    assert result["status"] == "completed"
    assert result["hardware"] == ["cpu", "cuda"]
    assert 'HARDWARE = ("cpu", "cuda")' in Path(result["output_file"]).read_text()


def test_task_and_tags_are_kept_as_tags(client: TestClient) -> None:
    result = generate(client, model_name="gpt2", task="text-generation", tags={"team": "nlp"})
    assert result["tags"] == {"task": "text-generation", "team": "nlp"}


def test_hostile_model_name_stays_a_safe_file_in_the_output_folder(
    client: TestClient, settings: Settings
) -> None:
    result = generate(client, model_name='../../evil"\nimport os\n', template_type="gpt2")
    assert result["status"] == "completed"
    assert Path(result["output_file"]).parent == settings.folder("output")


# --- GET /file serves only the task's own file ---------------------------------------------------


def record(client: TestClient, **fields: Any) -> str:
    """Record a task through the recording API; return its id."""
    response = client.post(f"{API}/db/tasks", json={"model_name": "gpt2", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def test_file_route_refuses_a_recorded_path_outside_the_output_folder(
    client: TestClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 1\n")
    for output_file in (str(secret), f"{tmp_path}/generated/../secret.py"):
        task_id = record(client, status="completed", output_file=output_file)
        response = client.get(f"{API}/file/{task_id}")
        assert response.status_code == 404
        assert response.json()["code"] == "file_not_served"
        assert "TOKEN" not in response.text


def test_file_route_refuses_a_symlink_leading_out_of_the_output_folder(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    result = generate(client, model_name="gpt2")
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 1\n")
    path = Path(result["output_file"])
    path.unlink()
    path.symlink_to(secret)
    response = client.get(f"{API}/file/{result['task_id']}")
    assert response.status_code == 404
    assert "TOKEN" not in response.text


def test_file_route_is_404_when_the_file_is_gone(client: TestClient) -> None:
    result = generate(client, model_name="gpt2")
    Path(result["output_file"]).unlink()
    response = client.get(f"{API}/file/{result['task_id']}")
    assert response.status_code == 404
    assert response.json()["code"] == "file_gone"


def test_file_route_serves_one_task_s_file_not_another_s(client: TestClient) -> None:
    bert = generate(client, model_name="bert-base-uncased")
    gpt2 = generate(client, model_name="gpt2")
    assert client.get(f"{API}/file/{bert['task_id']}").content == (
        Path(bert["output_file"]).read_bytes()
    )
    assert client.get(f"{API}/file/{gpt2['task_id']}").content == (
        Path(gpt2["output_file"]).read_bytes()
    )


@pytest.mark.parametrize(
    "route",
    ["status/nope", "result/nope", "file/nope", "events/nope"],
)
def test_unknown_task_is_404(client: TestClient, route: str) -> None:
    response = client.get(f"{API}/{route}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_cancel_of_an_unknown_task_is_404(client: TestClient) -> None:
    assert client.post(f"{API}/cancel/nope").status_code == 404


# --- cancel ---------------------------------------------------------------------------------------


def start_held(client: TestClient) -> str:
    """Start a gpt2 task and wait until it is held inside its render step; return its id."""
    task_id = str(client.post(f"{API}/model", json={"model_name": "gpt2"}).json()["task_id"])
    wait_until(lambda: client.get(f"{API}/status/{task_id}").json()["current_step"] == "render")
    return task_id


def test_cancel_makes_a_running_task_final_and_writes_no_file(
    client: TestClient,
    settings: Settings,
    gate: threading.Event,
    finished: Finished,
) -> None:
    task_id = start_held(client)
    response = client.post(f"{API}/cancel/{task_id}")
    assert response.status_code == 200
    assert response.json() == {
        "task_id": task_id,
        "cancelled": True,
        "status": "cancelled",
        "message": "task cancelled",
    }
    gate.set()
    assert finished.wait(task_id)
    result = client.get(f"{API}/result/{task_id}").json()
    assert result["status"] == "cancelled"
    assert result["error"] == "cancelled by request"
    assert result["completed_at"] is not None
    assert [s["step_name"] for s in result["steps"]] == ["resolve", "render"]
    assert not (settings.folder("output") / "test_gpt2.py").exists()
    again = client.post(f"{API}/cancel/{task_id}").json()
    assert again["cancelled"] is False
    assert again["message"] == "task already finished (cancelled)"


def test_a_cancel_written_through_the_database_api_stops_the_task(
    client: TestClient,
    settings: Settings,
    gate: threading.Event,
    finished: Finished,
) -> None:
    # As a cancel through another server process on the same database would: only the row
    # changes; the pool that executes the task sees it and writes nothing more.
    task_id = start_held(client)
    ended = client.post(
        f"/api/generator/db/task/{task_id}/complete",
        json={"status": "cancelled", "error": "elsewhere"},
    )
    assert ended.status_code == 200, ended.text
    runner = client.app.state.runtimes["generator"].runner  # type: ignore[attr-defined]
    # The job is held at the gate (up to 30 s): it must be told to stop well before.
    wait_until(lambda: runner.jobs[task_id].cancel.is_set(), timeout=10)
    gate.set()
    assert finished.wait(task_id)
    result = client.get(f"{API}/result/{task_id}").json()
    assert (result["status"], result["error"]) == ("cancelled", "elsewhere")
    assert [s["step_name"] for s in result["steps"]] == ["resolve", "render"]
    assert not (settings.folder("output") / "test_gpt2.py").exists()


def test_cancel_of_a_queued_task_keeps_it_from_running(
    client: TestClient,
    settings: Settings,
    gate: threading.Event,
    finished: Finished,
) -> None:
    # Two workers: two tasks hold them, the third waits in the queue.
    ids = [
        client.post(f"{API}/model", json={"model_name": name}).json()["task_id"]
        for name in ("gpt2", "t5-small", "bert-base-uncased")
    ]
    assert client.get(f"{API}/status/{ids[2]}").json()["status"] == "queued"
    assert client.post(f"{API}/cancel/{ids[2]}").json()["cancelled"] is True
    gate.set()
    for task_id in ids:
        assert finished.wait(task_id)
    statuses = [client.get(f"{API}/status/{i}").json()["status"] for i in ids]
    assert statuses == ["completed", "completed", "cancelled"]
    assert client.get(f"{API}/result/{ids[2]}").json()["steps"] == []
    assert not (settings.folder("output") / "test_bert_base_uncased.py").exists()


def test_cancel_of_a_completed_task_changes_nothing(client: TestClient) -> None:
    result = generate(client, model_name="gpt2")
    response = client.post(f"{API}/cancel/{result['task_id']}").json()
    assert response["cancelled"] is False and response["status"] == "completed"
    assert Path(result["output_file"]).is_file()


# --- batches ----------------------------------------------------------------------------------


def test_batch_with_an_unknown_model_is_422_naming_it_and_queues_nothing(
    client: TestClient,
) -> None:
    response = client.post(f"{API}/batch", json={"model_names": ["gpt2", "acme/mystery"]})
    assert response.status_code == 422
    body = response.json()
    assert body["models"] == ["acme/mystery"]
    assert body["families"] == [f.name for f in FAMILIES]
    assert client.get(f"{API}/tasks").headers["x-total-count"] == "0"
    assert client.get(f"{API}/db/batches").headers["x-total-count"] == "0"


def test_batch_with_repeated_models_is_422(client: TestClient) -> None:
    response = client.post(f"{API}/batch", json={"model_names": ["gpt2", "gpt2"]})
    assert response.status_code == 422


def test_batch_is_partial_when_one_file_exists_without_force(client: TestClient) -> None:
    generate(client, model_name="gpt2")
    body = client.post(f"{API}/batch", json={"model_names": ["gpt2", "t5-small"]}).json()
    for task_id in body["task_ids"]:
        wait_for_task(client, task_id)
    batch = client.get(f"{API}/db/batch/{body['batch_id']}").json()
    assert batch["status"] == "partial"
    assert batch["counts"]["by_status"] == {"completed": 1, "error": 1}


# --- lists -------------------------------------------------------------------------------------


def test_tasks_lists_newest_first_with_a_total_and_filters(client: TestClient) -> None:
    first = generate(client, model_name="gpt2")
    second = generate(client, model_name="gpt2")
    response = client.get(f"{API}/tasks")
    assert response.headers["x-total-count"] == "2"
    assert [t["task_id"] for t in response.json()] == [second["task_id"], first["task_id"]]
    errors = client.get(f"{API}/tasks", params={"status": "error"}).json()
    assert [t["task_id"] for t in errors] == [second["task_id"]]


def test_templates_lists_the_six_families_with_their_hardware(client: TestClient) -> None:
    templates = client.get(f"{API}/templates").json()
    assert [t["name"] for t in templates] == [f.name for f in FAMILIES]
    assert all("cpu" in t["hardware"] for t in templates)
    speech = templates[-1]
    assert speech["example_model"] == "openai/whisper-tiny"
    assert speech["config_class"] == "WhisperConfig"


def test_hardware_lists_cpu_as_available(client: TestClient) -> None:
    backends = client.get(f"{API}/hardware").json()
    assert backends[0]["name"] == "cpu" and backends[0]["available"] is True
    assert {"cuda", "rocm", "mps"} <= {b["name"] for b in backends}
