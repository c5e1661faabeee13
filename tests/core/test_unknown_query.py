"""Unknown query parameters are refused with a 422 that names them, on every route."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def unknown_names(body: dict[str, object]) -> list[str]:
    """Return the query parameter names a 422 body refuses as unknown."""
    detail = body["detail"]
    assert isinstance(detail, list)
    return [e["loc"][1] for e in detail if e["type"] == "extra_forbidden"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/test/db/runs",
        "/api/test/runs",
        "/api/test/db/models/stats",
        "/api/generator/db/tasks",
        "/api/generator/tasks",
        "/api/generator/db/hardware/stats",
    ],
)
def test_a_filter_route_refuses_days_it_does_not_declare(client: TestClient, path: str) -> None:
    if path.endswith("/stats"):
        # The stats routes do declare days: an unknown one there is another name.
        response = client.get(path, params={"days": 7, "since": "2024-01-01"})
        assert response.status_code == 422, response.text
        assert unknown_names(response.json()) == ["since"]
        return
    response = client.get(path, params={"days": 7})
    assert response.status_code == 422, response.text
    assert unknown_names(response.json()) == ["days"]
    assert response.json()["detail"][0]["input"] == "7"


def test_the_recorded_runs_are_not_silently_listed_for_an_unknown_filter(
    client: TestClient,
) -> None:
    run = {"model_name": "bert", "hardware": ["cpu"], "test_type": "basic"}
    assert client.post("/api/test/db/runs", json=run).status_code == 201
    assert len(client.get("/api/test/db/runs").json()) == 1
    response = client.get("/api/test/db/runs?days=7&model_name=bert")
    assert response.status_code == 422
    assert unknown_names(response.json()) == ["days"]


def test_every_unknown_name_is_named_once(client: TestClient) -> None:
    response = client.get("/api/generator/db/tasks?colour=red&colour=blue&size=2&limit=5")
    assert response.status_code == 422
    assert unknown_names(response.json()) == ["colour", "size"]


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/api/test/hardware",
        "/api/test/db/run/nope",
        "/api/generator/templates",
        "/api/generator/db/batch/nope",
    ],
)
def test_routes_without_a_filter_model_refuse_unknown_names_too(
    client: TestClient, path: str
) -> None:
    response = client.get(path, params={"verbose": "1"})
    assert response.status_code == 422, response.text
    assert unknown_names(response.json()) == ["verbose"]


def test_declared_parameters_of_models_dependencies_and_aliases_still_pass(
    client: TestClient,
) -> None:
    assert client.get("/api/test/db/runs?status=queued&limit=5&offset=0").status_code == 200
    assert client.get("/api/test/db/models/stats?days=7&test_type=basic").status_code == 200
    assert client.get("/api/test/db/performance?days=7&model_name=x").status_code == 200
    assert client.get("/api/generator/db/tasks?architecture=x&until=2030-01-01").status_code == 200
    assert client.get("/api/generator/tasks?batch_id=b&since=2020-01-01").status_code == 200
    assert client.get("/api/test/db/export?format=json").status_code == 200
    batch = client.post("/api/generator/db/batches", json={}).json()["batch_id"]
    deleted = client.delete(f"/api/generator/db/batch/{batch}?delete_tasks=true")
    assert deleted.status_code == 200, deleted.text


def test_a_known_name_with_a_bad_value_keeps_fastapis_422_shape(client: TestClient) -> None:
    response = client.get("/api/test/db/runs?status=bogus")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "status", 0]
