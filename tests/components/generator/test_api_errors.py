"""Generator API errors: 404 with a JSON body for missing ids, 422 for invalid bodies, no 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import make_settings, on_postgres

DB = "/api/generator/db"


@pytest.fixture(scope="module")
def existing(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[TestClient]:
    """One app for the module, holding running task `t`; each test proves it changed nothing."""
    settings = make_settings(tmp_path_factory.mktemp("errors"), template_dbs)
    body = {
        "task_id": "t",
        "model_name": "m",
        "status": "running",
        "started_at": "2026-01-01T00:00:00Z",
    }
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{DB}/tasks", json=body).status_code == 201
        yield client


def snapshot(client: TestClient) -> tuple[Any, ...]:
    """Return everything a failed request must leave as it was."""
    tasks = client.get(f"{DB}/tasks")
    return (
        tasks.headers["X-Total-Count"],
        tasks.json(),
        client.get(f"{DB}/task/t").json(),
        client.get(f"{DB}/batches").json(),
    )


MISSING = [
    ("GET", "/task/nope", None),
    ("PATCH", "/task/nope", {"progress": 0.5}),
    ("PUT", "/task/nope/steps/a/b", {"status": "running"}),
    ("POST", "/task/nope/metrics", [{"name": "m", "value": 1.0}]),
    ("PUT", "/task/nope/tags", {"a": "b"}),
    ("POST", "/task/nope/complete", {}),
    ("DELETE", "/task/nope", None),
    ("GET", "/batch/nope", None),
    ("PUT", "/batch/nope/tasks/t", None),
    ("DELETE", "/batch/nope", None),
    ("DELETE", "/batch/nope?delete_tasks=true", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MISSING)
def test_missing_ids_are_404_with_a_json_detail(
    existing: TestClient, method: str, path: str, body: Any
) -> None:
    before = snapshot(existing)
    response = existing.request(method, f"{DB}{path}", json=body)
    assert response.status_code == 404, response.text
    assert snapshot(existing) == before
    payload = response.json()
    assert set(payload) >= {"detail", "code"}
    assert payload["code"] == "not_found" and "nope" in payload["detail"]


INVALID_TASKS: list[tuple[str, Any]] = [
    ("unknown field", {"model_name": "m", "colour": "red"}),
    ("missing model", {"status": "running"}),
    ("empty model", {"model_name": ""}),
    ("bad status", {"model_name": "m", "status": "done"}),
    ("negative duration", {"model_name": "m", "duration": -1}),
    ("progress above one", {"model_name": "m", "progress": 1.5}),
    ("bad task id", {"model_name": "m", "task_id": "../etc"}),
    ("long task id", {"model_name": "m", "task_id": "x" * 65}),
    ("bad batch id", {"model_name": "m", "batch_id": "a b"}),
    ("hardware not a list", {"model_name": "m", "hardware": "cpu"}),
    ("empty hardware", {"model_name": "m", "hardware": []}),
    ("duplicate device", {"model_name": "m", "hardware": ["cpu", "cpu"]}),
    ("bad device", {"model_name": "m", "hardware": ["c p u"]}),
    ("null hardware", {"model_name": "m", "hardware": None}),
    ("null status", {"model_name": "m", "status": None}),
    ("null progress", {"model_name": "m", "progress": None}),
    ("null task type", {"model_name": "m", "task_type": None}),
    ("context not an object", {"model_name": "m", "template_context": [1, 2]}),
    ("bad timestamp", {"model_name": "m", "started_at": "yesterday"}),
    (
        "completed before started",
        {
            "model_name": "m",
            "started_at": "2026-01-02T00:00:00Z",
            "completed_at": "2026-01-01T00:00:00Z",
        },
    ),
    ("duplicate steps", {"model_name": "m", "steps": [{"step_name": "a"}, {"step_name": "a"}]}),
    ("bad step status", {"model_name": "m", "steps": [{"step_name": "a", "status": "ok"}]}),
    ("negative step", {"model_name": "m", "steps": [{"step_name": "a", "duration": -2}]}),
    ("unknown step field", {"model_name": "m", "steps": [{"step_name": "a", "x": 1}]}),
    ("metric without value", {"model_name": "m", "metrics": [{"name": "x"}]}),
    ("metric value text", {"model_name": "m", "metrics": [{"name": "x", "value": "fast"}]}),
    ("metrics not a list", {"model_name": "m", "metrics": {"name": "x", "value": 1}}),
    ("tag value not text", {"model_name": "m", "tags": {"a": {"b": 1}}}),
    ("empty tag name", {"model_name": "m", "tags": {"": "x"}}),
    ("body not an object", [1, 2, 3]),
]

NON_FINITE_TASKS = [
    '{"model_name": "m", "metrics": [{"name": "x", "value": NaN}]}',
    '{"model_name": "m", "metrics": [{"name": "x", "value": Infinity}]}',
    '{"model_name": "m", "duration": Infinity}',
    '{"model_name": "m", "duration": NaN}',
    '{"model_name": "m", "progress": NaN}',
    '{"model_name": "m", "steps": [{"step_name": "a", "duration": Infinity}]}',
    '{"model_name": "m", "template_context": {"a": [1, {"b": NaN}]}}',
    '{"model_name": "m", "template_context": {"a": -Infinity}}',
]


@pytest.mark.parametrize(("case", "body"), INVALID_TASKS, ids=[c for c, _ in INVALID_TASKS])
def test_invalid_task_documents_are_422_and_write_nothing(
    existing: TestClient, case: str, body: Any
) -> None:
    before = snapshot(existing)
    response = existing.post(f"{DB}/tasks", json=body)
    assert response.status_code == 422, (case, response.text)
    assert "detail" in response.json()
    assert snapshot(existing) == before


@pytest.mark.parametrize("raw", NON_FINITE_TASKS)
def test_non_finite_numbers_are_422(existing: TestClient, raw: str) -> None:
    before = snapshot(existing)
    response = existing.post(
        f"{DB}/tasks", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert snapshot(existing) == before


INVALID_PARTS: list[tuple[str, str, Any]] = [
    ("PATCH", "/task/t", {"colour": "red"}),
    ("PATCH", "/task/t", {"status": "done"}),
    ("PATCH", "/task/t", {"model_name": None}),
    ("PATCH", "/task/t", {"status": None}),
    ("PATCH", "/task/t", {"hardware": None}),
    ("PATCH", "/task/t", {"progress": None}),
    ("PATCH", "/task/t", {"duration": -0.5}),
    ("PATCH", "/task/t", {"task_id": "other"}),
    ("PATCH", "/task/t", {"batch_id": "b"}),
    ("PATCH", "/task/t", {"completed_at": "2025-12-31T00:00:00Z"}),
    ("PATCH", "/task/t", [1]),
    ("PUT", "/task/t/steps/a", {"status": "ok"}),
    ("PUT", "/task/t/steps/a", {"duration": -1}),
    ("PUT", "/task/t/steps/a", {"step_name": "b"}),
    ("PUT", "/task/t/steps/", {"status": "running"}),
    ("PUT", "/task/t/steps/" + "s" * 1025, {"status": "running"}),
    (
        "PUT",
        "/task/t/steps/a",
        {"started_at": "2026-01-02T00:00:00Z", "completed_at": "2026-01-01T00:00:00Z"},
    ),
    ("POST", "/task/t/metrics", {"name": "x", "value": 1}),
    ("POST", "/task/t/metrics", [{"name": "x", "value": 1, "extra": True}]),
    ("POST", "/task/t/metrics", [{"name": "", "value": 1}]),
    ("PUT", "/task/t/tags", ["a"]),
    ("PUT", "/task/t/tags", {"a": 1}),
    ("POST", "/task/t/complete", {"status": "done"}),
    ("POST", "/task/t/complete", {"status": "running"}),
    ("POST", "/task/t/complete", {"output": "x"}),
    ("POST", "/batches", {"batch_id": "b", "colour": "red"}),
    ("POST", "/batches", {"batch_id": "a/b"}),
    ("POST", "/batches", {"task_ids": "t"}),
    ("POST", "/export", {"filename": "x.json", "format": "xml"}),
    ("POST", "/export", {"filename": ""}),
    ("POST", "/export", {"filename": "x.json", "unknown": 1}),
    ("POST", "/import", {"format": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), INVALID_PARTS)
def test_invalid_partial_bodies_are_422_and_change_nothing(
    existing: TestClient, method: str, path: str, body: Any
) -> None:
    before = snapshot(existing)
    response = existing.request(method, f"{DB}{path}", json=body)
    assert response.status_code == 422, response.text
    assert snapshot(existing) == before


@pytest.mark.parametrize(
    "raw",
    [
        '[{"name": "x", "value": NaN}]',
        '[{"name": "x", "value": Infinity}]',
        '[{"name": "x", "value": -Infinity}]',
    ],
)
def test_non_finite_metric_points_are_422(existing: TestClient, raw: str) -> None:
    before = snapshot(existing)
    response = existing.post(
        f"{DB}/task/t/metrics", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert snapshot(existing) == before


def test_empty_metric_list_adds_nothing(existing: TestClient) -> None:
    before = snapshot(existing)
    response = existing.post(f"{DB}/task/t/metrics", json=[])
    assert response.status_code == 201 and response.json() == {"added": 0}
    assert snapshot(existing) == before


def test_odd_but_valid_values_are_stored_not_500(existing: TestClient) -> None:
    body = {
        "task_id": "odd",
        "model_name": "nul\x00 and emoji 🚀 and 'quotes'\"",
        "template_context": {"big": 2**70, "tiny": 5e-324, "nested": [[[[]]]], "": None},
        "tags": {"🚀": "x" * 1024},
        "error": "x" * 100_000,
    }
    response = existing.post(f"{DB}/tasks", json=body)
    if on_postgres():  # PostgreSQL stores no NUL in text: a clear 422, then the rest is stored
        assert response.status_code == 422 and response.json()["code"] == "nul_character"
        body["model_name"] = "emoji 🚀 and 'quotes'\""
        response = existing.post(f"{DB}/tasks", json=body)
    assert response.status_code == 201, response.text
    got = existing.get(f"{DB}/task/odd").json()
    assert got["model_name"] == body["model_name"]
    assert got["template_context"] == body["template_context"]
    assert got["tags"] == body["tags"]
    assert got["error"] == body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/tasks?since=2026-13-01",
        "/tasks?limit=-5",
        "/models/stats?days=abc",
        "/hardware/stats?days=0",
        "/performance?days=1000",
        "/batches?limit=1001",
    ],
)
def test_invalid_query_parameters_are_422(existing: TestClient, path: str) -> None:
    assert existing.get(f"{DB}{path}").status_code == 422
