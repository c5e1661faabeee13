"""Generate → run → track against a real uvicorn: the Generator's files run in the Test Suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.components.generator.families import list_families
from tests.support import Server

SIX_MODELS = [f.example_model for f in list_families()]
RUN_TERMINAL = {"completed", "error", "timeout", "cancelled"}
BATCH_TERMINAL = {"completed", "partial", "error", "cancelled"}


def poll(url: str, done: set[str], timeout: float = 120.0) -> dict[str, Any]:
    """GET `url` until its `status` is one of `done`; return the body."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(url, timeout=10).json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, f"{url} stayed {body['status']}"
        time.sleep(0.1)


@pytest.fixture
def torchless_server(tmp_path: Path) -> Iterator[Server]:
    """A real uvicorn whose processes cannot import torch, as on a machine without it."""
    # `make test` needs no torch; where it is installed (for `make test-models`), a package
    # that refuses to import shadows it, so this loop checks the torch-less behaviour anyway.
    hidden = tmp_path / "no_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        'raise ModuleNotFoundError("torch is hidden from this server", name="torch")\n'
    )
    srv = Server(tmp_path, env={"PYTHONPATH": str(hidden.parent)}).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_generated_batch_runs_in_the_test_suite_and_both_track_it(
    torchless_server: Server,
) -> None:
    url = torchless_server.url
    started = httpx.post(f"{url}/api/generator/batch", json={"model_names": SIX_MODELS})
    assert started.status_code == 202, started.text
    batch = poll(f"{url}/api/generator/db/batch/{started.json()['batch_id']}", BATCH_TERMINAL)
    assert batch["status"] == "completed", batch
    assert sorted(t["model_name"] for t in batch["tasks"]) == sorted(SIX_MODELS)
    generated = torchless_server.folder / "generated"
    for task in batch["tasks"]:
        assert Path(task["output_file"]).parent == generated
        assert Path(task["output_file"]).is_file()

    # The Test Suite finds every generated module in its tests folder (the output folder).
    modules = httpx.get(f"{url}/api/test/models").json()
    assert len(modules) == 6
    types = httpx.get(f"{url}/api/test/types", params={"model_name": "gpt2"}, timeout=60).json()
    collected = next(t["tests"] for t in types if t["name"] == "comprehensive")
    assert len(collected) == 5

    run = httpx.post(
        f"{url}/api/test/run",
        json={"model_name": "gpt2", "hardware": ["cpu"], "test_type": "comprehensive"},
    )
    assert run.status_code == 202, run.text
    run_id = run.json()["run_id"]
    assert Path(run.json()["test_file"]) == generated / "test_gpt2.py"
    status = poll(f"{url}/api/test/status/{run_id}", RUN_TERMINAL)
    assert status["status"] == "completed", status
    results = httpx.get(f"{url}/api/test/results/{run_id}").json()["results"]
    # Generated suites need torch: without it every collected test reports itself skipped.
    assert results["tests_skipped"] == len(collected)
    assert results["tests_passed"] == 0 and results["tests_failed"] == 0
    assert sorted(d["name"].rsplit("::", 1)[-1] for d in results["test_details"]) == sorted(
        collected
    )

    run_stats = httpx.get(f"{url}/api/test/db/models/stats").json()
    assert [(r["model_name"], r["completed_runs"], r["tests_skipped"]) for r in run_stats] == [
        ("gpt2", 1, 5)
    ]
    task_stats = {
        r["model_name"]: r for r in httpx.get(f"{url}/api/generator/db/models/stats").json()
    }
    assert set(task_stats) == set(SIX_MODELS)
    assert all(r["completed_tasks"] == 1 for r in task_stats.values())
