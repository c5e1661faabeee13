"""The real loop: generate six families' suites, run them on tiny CPU models, track the results."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.components.generator.families import Family, list_families
from tests.support import Server

pytestmark = pytest.mark.models

FAMILIES = list_families()
SIX_MODELS = [f.example_model for f in FAMILIES]
# Between them the two test types run all seven tests of a generated suite.
TEST_TYPES = ("comprehensive", "fault_tolerance")
RUN_TERMINAL = {"completed", "error", "timeout", "cancelled"}
BATCH_TERMINAL = {"completed", "partial", "error", "cancelled"}


def poll(url: str, done: set[str], timeout: float) -> dict[str, Any]:
    """GET `url` until its `status` is one of `done`; return the body."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(url, timeout=10).json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, f"{url} stayed {body['status']}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Serve offline, generate the six suites, run each with both test types; return it all."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the model loop needs {', '.join(missing)}: pip install -e '.[models]'")
    folder = tmp_path_factory.mktemp("loop")
    # Offline, the generated suites build tiny random models from config (no download).
    server = Server(folder, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}).start()
    try:
        url = server.url
        started = httpx.post(f"{url}/api/generator/batch", json={"model_names": SIX_MODELS})
        assert started.status_code == 202, started.text
        generation = poll(
            f"{url}/api/generator/db/batch/{started.json()['batch_id']}", BATCH_TERMINAL, 120
        )
        runs: dict[tuple[str, str], dict[str, Any]] = {}
        for test_type in TEST_TYPES:
            batch = httpx.post(
                f"{url}/api/test/batch",
                json={"model_names": SIX_MODELS, "hardware": ["cpu"], "test_type": test_type},
                timeout=30,
            )
            assert batch.status_code == 202, batch.text
            for model, run_id in zip(SIX_MODELS, batch.json()["run_ids"], strict=True):
                runs[(model, test_type)] = {"run_id": run_id}
        for key, run in runs.items():
            poll(f"{url}/api/test/status/{run['run_id']}", RUN_TERMINAL, 600)
            runs[key] = httpx.get(f"{url}/api/test/results/{run['run_id']}").json()
        collected = {
            model: {
                t["name"]: t["tests"]
                for t in httpx.get(
                    f"{url}/api/test/types", params={"model_name": model}, timeout=120
                ).json()
            }
            for model in SIX_MODELS
        }
        yield {
            "generation": generation,
            "runs": runs,
            "collected": collected,
            "run_stats": httpx.get(f"{url}/api/test/db/models/stats").json(),
            "task_stats": httpx.get(f"{url}/api/generator/db/models/stats").json(),
            "performance": httpx.get(f"{url}/api/test/db/performance").json(),
            "output": folder / "generated",
        }
    finally:
        server.stop()


def test_generator_batch_writes_six_valid_test_files(loop: dict[str, Any]) -> None:
    generation = loop["generation"]
    assert generation["status"] == "completed", generation
    files = sorted(Path(t["output_file"]).name for t in generation["tasks"])
    assert files == sorted(p.name for p in loop["output"].glob("test_*.py"))
    assert len(files) == 6


@pytest.mark.parametrize("test_type", TEST_TYPES)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_generated_test_passes_on_a_tiny_cpu_model(
    loop: dict[str, Any], family: Family, test_type: str
) -> None:
    run = loop["runs"][(family.example_model, test_type)]
    assert run["status"] == "completed", run["error"]
    results = run["results"]
    failures = [(d["name"], d["error"]) for d in results["test_details"] if d["status"] != "passed"]
    assert failures == []
    collected = loop["collected"][family.example_model][test_type]
    assert results["tests_passed"] == len(collected) == 5
    assert results["tests_failed"] == results["tests_skipped"] == 0


@pytest.mark.parametrize("test_type", TEST_TYPES)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_latency_and_memory_are_recorded_on_cpu(
    loop: dict[str, Any], family: Family, test_type: str
) -> None:
    metrics = loop["runs"][(family.example_model, test_type)]["metrics"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        by_name.setdefault(metric["name"], []).append(metric)
    for name, unit in (
        ("latency_ms", "ms"),
        ("memory_mb", "MB"),
        ("throughput_items_per_sec", "items/s"),
    ):
        assert name in by_name, sorted(by_name)
        assert all(m["value"] > 0 and m["hardware"] == "cpu" for m in by_name[name])
        assert {m["unit"] for m in by_name[name]} == {unit}


def test_both_components_stats_show_the_loop(loop: dict[str, Any]) -> None:
    runs = {r["model_name"]: r for r in loop["run_stats"]}
    tasks = {r["model_name"]: r for r in loop["task_stats"]}
    assert set(runs) == set(tasks) == set(SIX_MODELS)
    for model in SIX_MODELS:
        assert tasks[model]["completed_tasks"] == tasks[model]["total_tasks"] == 1
        row = runs[model]
        assert row["completed_runs"] == row["total_runs"] == len(TEST_TYPES)
        assert row["tests_passed"] == 5 * len(TEST_TYPES)
        assert row["tests_failed"] == row["tests_skipped"] == 0
        assert row["pass_rate"] == 1.0


def test_performance_report_has_real_latency_per_model_on_cpu(loop: dict[str, Any]) -> None:
    latency = {
        row["model_name"]: row
        for row in loop["performance"]["performance_metrics"]
        if row["metric_name"] == "latency_ms" and row["hardware"] == "cpu"
    }
    assert set(latency) == set(SIX_MODELS)
    assert all(row["count"] >= 2 and row["avg"] > 0 for row in latency.values())
