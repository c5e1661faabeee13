"""Generator API keys: writes, deletes, export and import need X-API-Key; reads only when asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import make_settings

DB = "/api/generator/db"
GOOD = {"X-API-Key": "k1"}
WRONG = {"X-API-Key": "k2"}


def writes(document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Every write route, in an order in which each succeeds with the key."""
    return [
        ("POST", "/tasks", {"task_id": "t", "model_name": "m", "status": "running"}),
        ("PATCH", "/task/t", {"progress": 0.5}),
        ("PUT", "/task/t/steps/render one", {"status": "running"}),
        ("POST", "/task/t/metrics", [{"name": "x", "value": 1.0}]),
        ("PUT", "/task/t/tags", {"a": "b"}),
        ("POST", "/batches", {"batch_id": "b"}),
        ("PUT", "/batch/b/tasks/t", None),
        ("POST", "/task/t/complete", {}),
        ("POST", "/export", {"filename": "e.json"}),
        ("GET", "/export?format=json", None),
        ("POST", "/import", document),
        ("DELETE", "/task/t", None),
        ("DELETE", "/batch/b", None),
    ]


READS: list[tuple[str, str, Any]] = [
    ("GET", "/tasks", None),
    ("GET", "/task/t", None),
    ("GET", "/batches", None),
    ("GET", "/batch/b", None),
    ("GET", "/models/stats", None),
    ("GET", "/hardware/stats", None),
    ("GET", "/performance", None),
    ("POST", "/search", {"query": "m"}),
]


def empty_export(revision: str | None) -> dict[str, Any]:
    return {
        "format": "accelerate-tracking-export",
        "version": 1,
        "component": "generator",
        "schema_revision": revision,
        "tables": {"generator_tasks": []},
    }


@pytest.fixture
def keyed(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"])
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def closed(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"], protect_reads=True)
    with TestClient(create_app(settings)) as client:
        yield client


def test_writes_need_a_valid_key(keyed: TestClient) -> None:
    for method, path, body in writes(empty_export("gen_0001")):
        missing = keyed.request(method, f"{DB}{path}", json=body)
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.json()["code"] == "unauthorized"
        wrong = keyed.request(method, f"{DB}{path}", json=body, headers=WRONG)
        assert wrong.status_code == 403, (method, path, wrong.text)
        assert wrong.json()["code"] == "forbidden"
        ok = keyed.request(method, f"{DB}{path}", json=body, headers=GOOD)
        assert ok.status_code < 300, (method, path, ok.text)


def test_refused_writes_change_nothing(keyed: TestClient) -> None:
    for method, path, body in writes(empty_export("gen_0001")):
        keyed.request(method, f"{DB}{path}", json=body)
        keyed.request(method, f"{DB}{path}", json=body, headers=WRONG)
    assert keyed.get(f"{DB}/tasks").json() == []
    assert keyed.get(f"{DB}/batches").json() == []


def test_reads_are_open_when_keys_are_set(keyed: TestClient) -> None:
    keyed.post(f"{DB}/tasks", json={"task_id": "t", "model_name": "m"}, headers=GOOD)
    keyed.post(f"{DB}/batches", json={"batch_id": "b"}, headers=GOOD)
    for method, path, body in READS:
        response = keyed.request(method, f"{DB}{path}", json=body)
        assert response.status_code == 200, (path, response.text)


def test_protect_reads_closes_reads(closed: TestClient) -> None:
    closed.post(f"{DB}/tasks", json={"task_id": "t", "model_name": "m"}, headers=GOOD)
    closed.post(f"{DB}/batches", json={"batch_id": "b"}, headers=GOOD)
    for method, path, body in READS:
        assert closed.request(method, f"{DB}{path}", json=body).status_code == 401, path
        wrong = closed.request(method, f"{DB}{path}", json=body, headers=WRONG)
        assert wrong.status_code == 403, path
        ok = closed.request(method, f"{DB}{path}", json=body, headers=GOOD)
        assert ok.status_code == 200, path


def test_without_keys_everything_is_open(client: TestClient) -> None:
    revision = client.get("/health").json()["components"]["generator"]["revision"]
    for method, path, body in writes(empty_export(revision)):
        response = client.request(method, f"{DB}{path}", json=body)
        assert response.status_code < 300, (method, path, response.text)


def test_export_written_with_a_key_imports_with_a_key(keyed: TestClient) -> None:
    keyed.post(f"{DB}/tasks", json={"task_id": "t", "model_name": "m"}, headers=GOOD)
    response = keyed.get(f"{DB}/export", params={"format": "json"}, headers=GOOD)
    document = json.loads(response.content)
    assert keyed.post(f"{DB}/import", json=document).status_code == 401
    assert keyed.post(f"{DB}/import", json=document, headers=GOOD).status_code == 200
