"""The unified API on real DuckDB copies: overview, model, search, answered from both components."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.components.test_suite.support import NOW, iso, run_doc
from tests.support import make_settings

T = "/api/test/db"
G = "/api/generator/db"


def task_doc(task_id: str, model: str, status: str, hardware: list[str]) -> dict[str, Any]:
    """Return a minimal generator task document."""
    doc: dict[str, Any] = {
        "task_id": task_id,
        "model_name": model,
        "hardware": hardware,
        "status": status,
        "started_at": iso(NOW - timedelta(hours=2)),
    }
    if status in ("completed", "error", "cancelled"):
        doc["completed_at"] = iso(NOW - timedelta(hours=1))
    return doc


def post(client: TestClient, path: str, doc: dict[str, Any]) -> None:
    """Record a document through the recording API."""
    response = client.post(path, json=doc, headers={"Prefer": "return=minimal"})
    assert response.status_code == 201, response.text


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """12 runs of bert (statuses and outcomes mixed), 2 of gpt2, 5 tasks over two models."""
    for i in range(12):
        status = ["completed", "completed", "completed", "error"][i % 4]
        cases = (3, 1, 1) if i % 3 == 0 else (3, 0, 1) if i % 3 == 1 else (0, 0, 2)
        hardware = ["cpu", "cuda"] if i % 2 else ["cpu"]
        started = NOW - timedelta(hours=20 - i)
        post(
            client,
            f"{T}/runs",
            run_doc(f"b{i:02d}", status=status, cases=cases, hardware=hardware, started=started),
        )
    post(client, f"{T}/runs", run_doc("g0", model="gpt2", hardware=["rocm"], status="running"))
    post(client, f"{T}/runs", run_doc("g1", model="gpt2", status="timeout"))
    tasks = [
        ("t0", "bert-base-uncased", "completed", ["cpu"]),
        ("t1", "bert-base-uncased", "error", ["cuda"]),
        ("t2", "bert-base-uncased", "completed", ["cpu", "mps"]),
        ("t3", "t5-small", "running", ["cpu"]),
        ("t4", "t5-small", "completed", ["openvino"]),
    ]
    for task in tasks:
        post(client, f"{G}/tasks", task_doc(*task))
    return client


def expected_run_counts(client: TestClient, model: str | None) -> dict[str, Any]:
    """Count runs by status and outcome independently, from every run the list route returns."""
    params: dict[str, Any] = {"limit": 1000}
    if model:
        params["model_name"] = model
    runs = client.get(f"{T}/runs", params=params).json()
    by_status: dict[str, int] = {}
    by_outcome = {"passed": 0, "failed": 0, "no_tests": 0}
    for run in runs:
        by_status[run["status"]] = by_status.get(run["status"], 0) + 1
        if run["status"] in ("completed", "error", "timeout", "cancelled"):
            failed = run["tests_failed"] > 0 or run["status"] in ("error", "timeout")
            outcome = "failed" if failed else "passed" if run["tests_passed"] > 0 else "no_tests"
            by_outcome[outcome] += 1
    devices = {d for run in runs for d in run["hardware"]}
    return {
        "total": len(runs),
        "by_status": by_status,
        "by_outcome": by_outcome,
        "models": len({run["model_name"] for run in runs}),
        "devices": len(devices),
    }


def test_overview_counts_both_components_over_the_whole_history(seeded: TestClient) -> None:
    response = seeded.get("/api/db/overview")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["components"] == ["generator", "test_suite"]
    runs = answer["test_suite"]["runs"]
    want = expected_run_counts(seeded, None)
    assert {k: runs[k] for k in want} == want
    assert want["by_status"] == {"completed": 9, "error": 3, "running": 1, "timeout": 1}
    assert runs["success_rate"] == pytest.approx(9 / 14)
    passed, failed = want["by_outcome"]["passed"], want["by_outcome"]["failed"]
    assert runs["pass_rate"] == pytest.approx(passed / (passed + failed))
    assert runs["last_activity"] is not None
    tasks = answer["generator"]["tasks"]
    assert tasks["total"] == 5 and tasks["models"] == 2 and tasks["devices"] == 4
    assert tasks["by_status"] == {"completed": 3, "error": 1, "running": 1}
    assert tasks["success_rate"] == pytest.approx(3 / 5)


def test_overview_of_empty_databases_has_zero_counts(client: TestClient) -> None:
    answer = client.get("/api/db/overview").json()
    assert answer["test_suite"]["runs"]["total"] == 0
    assert answer["test_suite"]["runs"]["success_rate"] is None
    assert answer["generator"]["tasks"]["last_activity"] is None


def test_model_rates_cover_the_whole_history_not_ten_rows(seeded: TestClient) -> None:
    response = seeded.get("/api/db/model/bert-base-uncased", params={"recent": 5})
    assert response.status_code == 200, response.text
    answer = response.json()
    ts = answer["test_suite"]
    want = expected_run_counts(seeded, "bert-base-uncased")
    assert {k: ts["runs"][k] for k in want} == want
    assert ts["runs"]["total"] == 12  # more than the original's 10 fetched rows
    assert ts["runs"]["success_rate"] == pytest.approx(9 / 12)
    assert [r["run_id"] for r in ts["recent_runs"]] == ["b11", "b10", "b09", "b08", "b07"]
    assert ts["regressions"] == [] and ts["regression_count"] == 0
    gen = answer["generator"]
    assert gen["tasks"]["total"] == 3 and gen["tasks"]["success_rate"] == pytest.approx(2 / 3)
    assert {t["task_id"] for t in gen["recent_tasks"]} == {"t0", "t1", "t2"}
    only_gen = seeded.get("/api/db/model/t5-small").json()
    assert only_gen["test_suite"]["runs"]["total"] == 0
    assert only_gen["generator"]["tasks"]["total"] == 2


def test_model_unknown_to_both_components_is_404_in_the_error_shape(seeded: TestClient) -> None:
    response = seeded.get("/api/db/model/no-such-model")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and "no-such-model" in response.json()["detail"]
    assert seeded.get("/api/db/model/x", params={"recent": 0}).status_code == 422
    assert seeded.get("/api/db/model/x", params={"recent": 101}).status_code == 422
    assert seeded.get("/api/db/model/" + "m" * 257).status_code == 422
    assert seeded.get("/api/db/overview", params={"bogus": 1}).status_code == 422


def test_model_lists_regressions_and_counts_flaky_tests(client: TestClient) -> None:
    for i in range(8):  # baseline: 10-17 days ago, latency ~100 ms
        started = NOW - timedelta(days=10 + i)
        doc = run_doc(
            f"base{i}",
            model="m",
            started=started,
            cases=(3, 1, 1) if i % 2 else (4, 0, 1),
            metrics={"cpu": {"latency_ms": 100.0 + i}},
        )
        post(client, f"{T}/runs", doc)
    for i in range(6):  # recent: 1-6 days ago, latency doubled
        started = NOW - timedelta(days=1 + i)
        doc = run_doc(
            f"new{i}",
            model="m",
            started=started,
            cases=(3, 1, 1) if i % 2 else (4, 0, 1),
            metrics={"cpu": {"latency_ms": 200.0 + i}},
        )
        post(client, f"{T}/runs", doc)
    answer = client.get("/api/db/model/m").json()["test_suite"]
    report = client.get(f"{T}/regressions", params={"model_name": "m", "verdict": "regression"})
    series = report.json()["series"]
    assert [r["metric"] for r in series] == ["latency_ms"]
    assert answer["regressions"] == series and answer["regression_count"] == 1
    flaky = client.get(f"{T}/flaky", params={"model_name": "m", "verdict": "flaky"})
    assert int(flaky.headers["x-total-count"]) >= 1  # test_3 flips between passed and failed
    assert answer["flaky_count"] == int(flaky.headers["x-total-count"])


def test_search_labels_results_by_component(seeded: TestClient) -> None:
    response = seeded.post("/api/db/search", params={"query": "t5", "limit": 10})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["results"]["test_suite"] == []
    assert {t["task_id"] for t in answer["results"]["generator"]} == {"t3", "t4"}
    assert answer["counts"] == {"test_suite": 0, "generator": 2, "total": 2}
    both = seeded.post("/api/db/search", params={"query": "bert", "limit": 3}).json()
    assert both["counts"] == {"test_suite": 3, "generator": 3, "total": 6}
    own = seeded.post(f"{T}/search", json={"query": "bert", "limit": 3}).json()
    assert both["results"]["test_suite"] == own
    body = seeded.post("/api/db/search", json={"query": "bert", "limit": 3}).json()
    assert body["results"] == both["results"]


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({}, None),
        ({"query": ""}, None),
        ({"query": "x" * 257}, None),
        ({"query": "x", "limit": 0}, None),
        ({"query": "x", "limit": 1001}, None),
        ({"query": "x"}, {"query": "x"}),
        ({}, {"query": "x", "limit": 5000}),
        ({}, {"query": "x", "extra": 1}),
        ({"query": "x", "other": "y"}, None),
    ],
)
def test_search_refuses_bad_input_with_422(
    client: TestClient, params: dict[str, Any], body: dict[str, Any] | None
) -> None:
    response = client.post("/api/db/search", params=params, json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


@pytest.fixture
def generator_only(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app serving the generator alone."""
    settings: Settings = make_settings(tmp_path / "gen", template_dbs, components=["generator"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_only_enabled_components_are_answered(generator_only: TestClient) -> None:
    post(generator_only, f"{G}/tasks", task_doc("t0", "bert", "completed", ["cpu"]))
    answer = generator_only.get("/api/db/overview").json()
    assert answer["components"] == ["generator"] and "test_suite" not in answer
    assert answer["generator"]["tasks"]["total"] == 1
    assert "test_suite" not in generator_only.get("/api/db/model/bert").json()
    found = generator_only.post("/api/db/search", params={"query": "bert"}).json()
    assert list(found["results"]) == ["generator"]
    assert generator_only.get("/api/db/test/runs").status_code == 404
    assert generator_only.get("/api/db/generator/tasks").status_code == 200


def test_no_component_no_unified_routes(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    settings = make_settings(tmp_path / "none", template_dbs, components=[])
    with TestClient(create_app(settings)) as bare:
        assert bare.get("/api/db/overview").status_code == 404


def test_model_names_with_a_slash_are_one_model(client: TestClient) -> None:
    post(client, f"{T}/runs", run_doc("h1", model="google/bert-tiny"))
    post(client, f"{G}/tasks", task_doc("h2", "google/bert-tiny", "completed", ["cpu"]))
    answer = client.get("/api/db/model/google/bert-tiny").json()
    assert answer["model_name"] == "google/bert-tiny"
    assert answer["test_suite"]["runs"]["total"] == answer["generator"]["tasks"]["total"] == 1


@pytest.fixture
def keyed_reads(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app with an API key; reads protected or not is set per test."""
    settings = make_settings(tmp_path / "k", template_dbs, api_keys=["k1"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_unified_routes_are_reads(
    keyed_reads: TestClient, tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    # Open reads: no key needed, a POST search included (the body guard's read rule).
    assert keyed_reads.get("/api/db/overview").status_code == 200
    assert keyed_reads.post("/api/db/search", params={"query": "x"}).status_code == 200
    assert keyed_reads.post("/api/db/search", json={"query": "x"}).status_code == 200
    settings = make_settings(tmp_path / "p", template_dbs, api_keys=["k1"], protect_reads=True)
    with TestClient(create_app(settings)) as guarded:
        for response in (
            guarded.get("/api/db/overview"),
            guarded.get("/api/db/model/m"),
            guarded.post("/api/db/search", json={"query": "x"}),
        ):
            assert response.status_code == 401 and response.json()["code"] == "unauthorized"
        wrong = guarded.get("/api/db/overview", headers={"X-API-Key": "no"})
        assert wrong.status_code == 403
        assert guarded.get("/api/db/overview", headers={"X-API-Key": "k1"}).status_code == 200


def test_unified_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/db/overview"]["get"]["summary"].startswith("Count each enabled")
    assert "/api/db/model/{model_name}" in paths and "post" in paths["/api/db/search"]
