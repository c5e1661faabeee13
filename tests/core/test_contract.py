"""Every route that answers with rows_response (no second validation) keeps its declared model."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi import Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from app.components.generator import service as gen_service
from app.components.generator.schemas import BatchCreate as TaskBatchCreate
from app.components.generator.schemas import TaskCreate
from app.components.test_suite import service as suite_service
from app.components.test_suite.schemas import ArtifactIn, RunCreate
from app.main import TrackingApp
from tests.components.generator.support import full_document
from tests.components.test_suite.support import run_doc

IDS = {"run_id": "run-1", "task_id": "task-1", "batch_id": "batch-1"}
# Reports answer only what their filters ask for: ask for what one seeded run can show.
QUERIES = {
    "/api/test/db/flaky": "?verdict=insufficient_data",
    "/api/test/db/regressions": "?verdict=insufficient_data",
    "/api/test/db/compare": "?base=run-1&head=run-1",
    "/api/test/db/tests/history": "?test_id=test_0",
    "/api/test/db/trends": "?metric=latency_ms&by=hardware",
}
# Further forms of the reports' answers (without `by`, with a gate verdict, every verdict).
MORE_QUERIES = {
    "/api/test/db/trends": ["", "?metric=latency_ms", "?by=hardware&hardware=cuda"],
    "/api/test/db/compare": ["?base=run-1&head=batch-1&fail_on=new_failures,regression:5%"],
    "/api/test/db/regressions": [
        "?verdict=regression&verdict=improvement&verdict=changed&verdict=unchanged"
        "&verdict=insufficient_data&min_samples=2&days=1"
    ],
}


def api_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Yield every API route with its full path, walking included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x)
            inner = prefix + str(getattr(route.include_context, "prefix", ""))
            yield from api_routes(route.original_router.routes, inner)


def raw_routes(app: TrackingApp, method: str) -> dict[str, APIRoute]:
    """Return the routes of a method that declare a response model but return a bare Response."""
    found = {}
    for path, route in api_routes(app.routes):
        returns = getattr(route.endpoint, "__annotations__", {}).get("return")
        declared = route.response_model is not None
        if method in route.methods and declared and returns in (Response, "Response"):
            found[path] = route
    return found


def assert_declared(route: APIRoute, response: Any, url: str) -> None:
    """Assert a 200 answer whose JSON round-trips through the route's response model."""
    assert response.status_code == 200, (url, response.text)
    body = response.json()
    assert body, f"{url}: nothing seeded to answer"
    adapter: TypeAdapter[Any] = TypeAdapter(route.response_model)
    value = adapter.validate_json(response.content)
    # Same keys and values once through the model: nothing missing, nothing extra.
    assert adapter.dump_python(value, mode="json") == body, url


def seed(app: TrackingApp) -> None:
    """Record one run and one task using every part of each document, both in batches."""
    metrics = {"cpu": {"latency_ms": 12.5, "throughput": 80.0}}
    doc = run_doc(IDS["run_id"], tags={"team": "nlp"}, metrics=metrics, batch_id="batch-1")
    doc["steps"] = [{"step_name": "load", "status": "completed", "duration": 1.5}]
    doc["metrics"] = [{"name": "memory_mb", "value": 512.0, "unit": "MB", "hardware": "cpu"}]
    doc["artifacts"] = [ArtifactIn(artifact_type="log", artifact_path="/tmp/x.log").model_dump()]
    with app.ctx.database("test_suite").writing() as session:
        suite_service.record_run(session, RunCreate.model_validate(doc))
        running = run_doc("run-2", status="running", hardware=["cpu", "cuda"])
        suite_service.record_run(session, RunCreate.model_validate(running))
    with app.ctx.database("generator").writing() as session:
        gen_service.record_task(session, TaskCreate.model_validate(full_document()))
        queued = full_document("task-2", status="queued", batch_id=None, completed_at=None)
        gen_service.record_task(session, TaskCreate.model_validate(queued))
        gen_service.create_batch(session, TaskBatchCreate(batch_id="empty"))


def test_rows_response_routes_answer_what_their_response_model_declares(
    client: TestClient,
) -> None:
    app = client.app
    assert isinstance(app, TrackingApp)
    seed(app)
    routes = raw_routes(app, "GET")
    paths = set(routes)
    # The walk finds the routes it is meant to check (lists, details, reports of both).
    assert {"/api/test/db/runs", "/api/test/db/run/{run_id}"} <= paths
    assert {"/api/generator/db/tasks", "/api/generator/db/task/{task_id}"} <= paths
    for path, route in sorted(routes.items()):
        params = re.findall(r"{(\w+)}", path)
        assert set(params) <= set(IDS), f"{path}: no seeded id for {params}"
        url = path.format(**IDS) + QUERIES.get(path, "")
        assert_declared(route, client.get(url), url)
        for query in MORE_QUERIES.get(path, []):
            assert_declared(route, client.get(path + query), path + query)
    assert set(MORE_QUERIES) <= paths


def test_rows_response_searches_answer_what_their_response_model_declares(
    client: TestClient,
) -> None:
    app = client.app
    assert isinstance(app, TrackingApp)
    seed(app)
    routes = raw_routes(app, "POST")
    assert set(routes) == {"/api/test/db/search", "/api/generator/db/search"}
    for path, route in routes.items():
        assert_declared(route, client.post(path, json={"query": "bert"}), path)


@pytest.mark.parametrize("path", ["/api/test/db/run/nope", "/api/generator/db/task/nope"])
def test_an_unknown_detail_is_a_404_in_the_error_shape(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
