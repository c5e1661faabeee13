"""Import refuses rows that point at missing tasks, unknown step statuses and repeated devices."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

DB = "/api/generator/db"


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """An export document of one task with a step, a metric and a tag."""
    task = {
        "task_id": "t1",
        "model_name": "gpt2",
        "steps": [{"step_name": "render", "status": "completed"}],
        "metrics": [{"name": "render_ms", "value": 2.0}],
        "tags": {"k": "v"},
    }
    assert client.post(f"{DB}/tasks", json=task).status_code == 201
    written = client.post(f"{DB}/export", json={"filename": "d.json"}).json()
    exported = client.get(f"{DB}/export", params={"format": "json"}).json()
    assert written["rows"]["generator_tasks"] == 1
    assert client.delete(f"{DB}/task/t1").status_code == 200
    return dict(exported)


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("generator_task_steps", {"task_id": "ghost"}),
        ("generator_task_metrics", {"task_id": "ghost"}),
        ("generator_task_tags", {"task_id": "ghost"}),
        ("generator_task_steps", {"status": "exploded"}),
        ("generator_tasks", {"hardware": ["cpu", "cpu"]}),
    ],
)
def test_import_with_a_broken_row_is_422_and_writes_nothing(
    client: TestClient, document: dict[str, Any], table: str, change: dict[str, Any]
) -> None:
    broken = copy.deepcopy(document)
    broken["tables"][table][0].update(change)
    response = client.post(f"{DB}/import", json=broken)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_import"
    assert client.get(f"{DB}/tasks").headers["X-Total-Count"] == "0"
    assert client.get(f"{DB}/task/t1").status_code == 404


def test_the_same_document_imports_cleanly(client: TestClient, document: dict[str, Any]) -> None:
    assert client.post(f"{DB}/import", json=document).status_code == 200
    task = client.get(f"{DB}/task/t1").json()
    assert task["tags"] == {"k": "v"} and task["steps"][0]["step_name"] == "render"
