"""`Prefer: return=minimal` on every write route of both database APIs (issue 14)."""

from __future__ import annotations

from fastapi.testclient import TestClient

WRITES = {"post", "put", "patch", "delete"}
NOT_DATABASE_WRITES = {
    # Reads sent as POST (a search, a SQL query), writes of files or settings (export, backup,
    # a suite's file) and maintenance (retention): they record no rows to answer with.
    (method, f"/api/{part}/db/{route}")
    for method, route in (
        ("post", "search"),
        ("post", "query"),
        ("post", "export"),
        ("post", "backup"),
        ("post", "retention"),
        ("put", "suites/{name}"),
    )
    for part in ("test", "generator")
}


def test_every_database_write_route_declares_the_prefer_header(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    missing = []
    for path, item in spec["paths"].items():
        if not path.startswith(("/api/test/db/", "/api/generator/db/")):
            continue
        for method, operation in item.items():
            if method not in WRITES or (method, path) in NOT_DATABASE_WRITES:
                continue
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if "Prefer" not in headers:
                missing.append(f"{method.upper()} {path}")
    assert missing == [], "\n".join(missing)


MINIMAL = {"Prefer": "return=minimal"}


def _applied(response: object) -> bool:
    return response.headers.get("Preference-Applied") == "return=minimal"  # type: ignore[attr-defined]


def test_minimal_answers_of_the_smaller_write_routes(client: TestClient) -> None:
    db = "/api/test/db"
    doc = {"run_id": "r", "model_name": "m", "tags": {"a": "1"}}
    assert client.post(f"{db}/runs", json=doc).status_code == 201

    tags = client.put(f"{db}/run/r/tags", json={"z": "2", "b": "3"}, headers=MINIMAL)
    assert _applied(tags) and tags.json() == {"b": "3", "z": "2"}
    merged = client.put(f"{db}/run/r/tags?merge=true", json={"a": "9"}, headers=MINIMAL)
    assert merged.json() == {"a": "9", "b": "3", "z": "2"}
    assert client.get(f"{db}/run/r").json()["tags"] == merged.json()

    first = [{"artifact_type": "log", "artifact_path": "logs/a.txt"}]
    client.post(f"{db}/run/r/artifacts", json=first)
    more = [{"artifact_type": "junit", "artifact_path": "junit.xml"}]
    some = client.post(f"{db}/run/r/artifacts", json=more, headers=MINIMAL)
    assert _applied(some) and [a["artifact_path"] for a in some.json()] == ["junit.xml"]
    every = client.post(f"{db}/run/r/artifacts", json=more)
    assert sorted(a["artifact_path"] for a in every.json()) == ["junit.xml", "logs/a.txt"]

    results = {"test_details": [{"name": "t", "status": "failed"}]}
    summary = client.put(f"{db}/run/r/results", json=results, headers=MINIMAL)
    assert _applied(summary) and "results" not in summary.json()
    assert summary.json()["tests_failed"] == 1

    cases = client.post(
        f"{db}/run/r/cases", json=[{"name": "u", "status": "passed"}], headers=MINIMAL
    )
    assert _applied(cases) and cases.json() == {"added": 1}

    batch = client.post(f"{db}/batches", json={"batch_id": "b", "run_ids": ["r"]}, headers=MINIMAL)
    assert batch.status_code == 201 and _applied(batch)
    assert "runs" not in batch.json() and batch.json()["run_count"] == 1
    whole = client.put(f"{db}/batch/b/runs/r")
    assert [run["run_id"] for run in whole.json()["runs"]] == ["r"]
    short = client.put(f"{db}/batch/b/runs/r", headers=MINIMAL)
    assert short.json() == {k: v for k, v in whole.json().items() if k != "runs"}


def test_minimal_batch_writes_of_the_generator(client: TestClient) -> None:
    db = "/api/generator/db"
    client.post(f"{db}/tasks", json={"task_id": "t", "model_name": "m"})
    batch = client.post(f"{db}/batches", json={"batch_id": "g", "task_ids": ["t"]}, headers=MINIMAL)
    assert batch.status_code == 201 and _applied(batch)
    assert "tasks" not in batch.json() and batch.json()["task_count"] == 1
