"""POST /api/test/db/runs: a whole run in one request, read back unchanged, idempotent."""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from app.components.test_suite.models import RunResult
from app.core.config import Settings
from app.main import create_app
from tests.components.test_suite.support import (
    B,
    app_table_counts,
    assert_matches,
    database,
    file_table_counts,
    instant,
)

T0 = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)


def full_document(run_id: str = "run-full") -> dict[str, Any]:
    """Return a run document with every nested part the recording API takes."""
    return {
        "run_id": run_id,
        "model_name": "bert-base-uncased",
        "hardware": ["cpu", "cuda"],
        "test_type": "comprehensive",
        "timeout": 600,
        "save_results": True,
        "status": "completed",
        "progress": 1.0,
        "current_step": "finished",
        "started_at": T0.isoformat(),
        # Another offset: the same instant is stored and read back as UTC.
        "completed_at": "2026-03-02T11:32:30.623456+02:00",
        "error": None,
        "result_file": "/results/run-full/results.json",
        "creator": "ci-job-17",
        "results": {
            "test_details": [
                {
                    "name": "test_load",
                    "status": "passed",
                    "duration_ms": 120.5,
                    "error": None,
                    "hardware": "cpu",
                },
                {
                    "name": "test_forward",
                    "status": "failed",
                    "duration_ms": 80.0,
                    "error": "AssertionError: shapes differ",
                    "hardware": "cuda",
                },
                {
                    "name": "test_batch",
                    "status": "skipped",
                    "duration_ms": 0.0,
                    "error": None,
                    "hardware": None,
                },
                {
                    "name": "test_half",
                    "status": "xfailed",
                    "duration_ms": 5.0,
                    "error": None,
                    "hardware": "cuda",
                },
                {
                    "name": "test_grad",
                    "status": "error",
                    "duration_ms": 1.0,
                    "error": "boom",
                    "hardware": "cpu",
                },
                {
                    "name": "test_new",
                    "status": "xpassed",
                    "duration_ms": 2.0,
                    "error": None,
                    "hardware": "cpu",
                },
            ],
            "performance_metrics": {
                "cpu": {"latency_ms": 12.5, "throughput_per_sec": 80.25},
                "cuda": {"latency_ms": 2.5},
            },
            "environment": {"python": "3.11", "torch": None, "flags": [1, 2.5, True, "x"]},
        },
        "steps": [
            {
                "step_name": "load model",
                "status": "completed",
                "progress": 1.0,
                "started_at": T0.isoformat(),
                "completed_at": (T0 + timedelta(seconds=4)).isoformat(),
                "duration": 3.5,
                "error": None,
            },
            {
                "step_name": "tests/test_bert.py::test_forward[cuda]",
                "status": "error",
                "progress": 0.5,
                "started_at": (T0 + timedelta(seconds=4)).isoformat(),
                "completed_at": (T0 + timedelta(seconds=6, microseconds=250000)).isoformat(),
                "error": "AssertionError",
            },
            {
                "step_name": "report",
                "status": "pending",
                "progress": 0.0,
                "started_at": None,
                "completed_at": None,
                "duration": None,
                "error": None,
            },
        ],
        "metrics": [
            {
                "name": "memory_mb",
                "value": 512.0,
                "unit": "MB",
                "hardware": "cpu",
                "timestamp": (T0 + timedelta(seconds=5)).isoformat(),
            },
            {
                "name": "memory_mb",
                "value": 640.0,
                "unit": "MB",
                "hardware": "cpu",
                "timestamp": (T0 + timedelta(seconds=9)).isoformat(),
            },
            {
                "name": "gpu_util_pct",
                "value": 93.0,
                "unit": "%",
                "hardware": "cuda",
                "timestamp": (T0 + timedelta(seconds=7)).isoformat(),
            },
        ],
        "tags": {"branch": "main", "commit": "abc123", "empty": ""},
        "artifacts": [
            {
                "artifact_type": "log",
                "artifact_path": "/results/run-full/pytest.log",
                "description": "pytest output",
            },
            {
                "artifact_type": "junit",
                "artifact_path": "/results/run-full/junit.xml",
                "description": "",
            },
        ],
        "batch_id": "nightly-2026-03-02",
    }


def post(client: TestClient, doc: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{B}/runs", json=doc)
    assert response.status_code == 201, response.text
    return response.json()


def test_record_run_reads_back_every_part_unchanged(client: TestClient) -> None:
    doc = full_document()
    created = post(client, doc)
    got = client.get(f"{B}/run/run-full").json()
    assert created == got
    run_fields = {
        k: v
        for k, v in doc.items()
        if k not in {"results", "steps", "metrics", "artifacts", "batch_id"}
    }
    assert_matches(run_fields, got)
    assert instant(got["completed_at"]) == datetime(2026, 3, 2, 9, 32, 30, 623456, tzinfo=UTC)
    assert got["completed_at"].endswith("Z")
    assert got["batch_ids"] == ["nightly-2026-03-02"]
    assert_matches(doc["results"]["test_details"], got["results"]["test_details"])
    assert got["results"]["performance_metrics"] == doc["results"]["performance_metrics"]
    assert got["results"]["environment"] == doc["results"]["environment"]
    assert got["tags"] == doc["tags"]
    assert_matches(doc["artifacts"], got["artifacts"])
    assert all(instant(a["created_at"]) for a in got["artifacts"])


def test_a_new_run_is_written_with_plain_inserts_and_a_repost_replaces_it(
    client: TestClient,
) -> None:
    """A fresh run pays for no DELETE and no upsert; posting it again still replaces it."""
    engine = client.app.ctx.database("test_suite").engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        first = post(client, full_document("fresh"))
        # The run's rows are inserts; its batch's derived status is the one UPDATE.
        writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))]
        rows = [s for s in writes if not s.startswith("UPDATE BATCH_TEST_RUNS")]
        assert len(rows) == 9 and all(s.startswith("INSERT") for s in rows), writes
        assert not [s for s in writes if "ON CONFLICT" in s]
        seen.clear()
        again = post(client, full_document("fresh"))
        assert any(s.startswith("DELETE") for s in seen)  # a known run's children are replaced
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert first == again == client.get(f"{B}/run/fresh").json()
    assert first["batch_ids"] == ["nightly-2026-03-02"]


def test_record_run_derives_counts_from_test_details(client: TestClient) -> None:
    doc = full_document()
    # Counts sent next to test_details are ignored: the details decide.
    doc["results"].update(tests_passed=99, tests_failed=0, tests_skipped=0)
    got = post(client, doc)
    # passed + xpassed, failed + error, skipped + xfailed
    assert (got["tests_passed"], got["tests_failed"], got["tests_skipped"]) == (2, 2, 2)
    results = got["results"]
    assert (results["tests_passed"], results["tests_failed"], results["tests_skipped"]) == (2, 2, 2)
    listed = client.get(f"{B}/runs").json()[0]
    assert (listed["tests_passed"], listed["tests_failed"], listed["tests_skipped"]) == (2, 2, 2)


def test_record_run_keeps_sent_counts_without_details(client: TestClient) -> None:
    got = post(client, {"model_name": "m", "results": {"tests_passed": 7, "tests_failed": 2}})
    assert (got["tests_passed"], got["tests_failed"], got["tests_skipped"]) == (7, 2, 0)
    assert got["results"]["test_details"] == []


def test_record_run_derives_duration_from_its_timestamps(client: TestClient) -> None:
    got = post(client, full_document())
    assert got["duration"] == 150.5
    steps = {s["step_name"]: s for s in got["steps"]}
    # A duration sent wins; otherwise it comes from the step's own timestamps.
    assert steps["load model"]["duration"] == 3.5
    assert steps["tests/test_bert.py::test_forward[cuda]"]["duration"] == 2.25
    assert steps["report"]["duration"] is None


def test_record_run_keeps_steps_in_the_order_sent(client: TestClient) -> None:
    doc = full_document()
    doc["steps"].reverse()
    got = post(client, doc)
    assert_matches(
        [{k: v for k, v in s.items() if k != "duration" or v is not None} for s in doc["steps"]],
        got["steps"],
    )


def test_performance_metrics_become_metric_rows_with_their_device(client: TestClient) -> None:
    doc = full_document()
    got = post(client, doc)
    completed = instant(got["completed_at"])
    perf = [m for m in got["metrics"] if m["name"] in {"latency_ms", "throughput_per_sec"}]
    assert sorted((m["hardware"], m["name"], m["value"], m["unit"]) for m in perf) == [
        ("cpu", "latency_ms", 12.5, "ms"),
        ("cpu", "throughput_per_sec", 80.25, "items/s"),
        ("cuda", "latency_ms", 2.5, "ms"),
    ]
    # Points sent without a time belong to the run: they are stamped with its completion.
    assert {instant(m["timestamp"]) for m in perf} == {completed}
    sent = [m for m in got["metrics"] if m["name"] in {"memory_mb", "gpu_util_pct"}]
    assert_matches(sorted(doc["metrics"], key=lambda m: m["timestamp"]), sent)


def test_metrics_without_timestamp_take_the_runs_start_while_it_runs(client: TestClient) -> None:
    got = post(
        client,
        {
            "run_id": "live",
            "model_name": "m",
            "status": "running",
            "started_at": T0.isoformat(),
            "metrics": [{"name": "rss_mb", "value": 1.0}],
        },
    )
    assert [instant(m["timestamp"]) for m in got["metrics"]] == [T0]


def test_reposting_a_run_is_idempotent_in_every_table(client: TestClient) -> None:
    doc = full_document()
    first = post(client, doc)
    counts = app_table_counts(client)
    second = post(client, copy.deepcopy(doc))
    third = post(client, copy.deepcopy(doc))
    assert app_table_counts(client) == counts
    assert first == second == third
    assert counts == {
        "batch_test_runs": 1,
        "test_run_artifacts": 2,
        "test_run_batch": 1,
        "test_run_cases": 6,
        "test_run_metrics": 6,
        "test_run_results": 1,
        "test_run_steps": 3,
        "test_run_tags": 3,
        "test_runs": 1,
    }


def test_reposting_a_finished_run_without_completed_at_keeps_its_end(client: TestClient) -> None:
    doc = {
        "run_id": "r",
        "model_name": "m",
        "status": "completed",
        "metrics": [{"name": "x", "value": 1.0}],
    }
    first = post(client, doc)
    time.sleep(0.01)
    second = post(client, doc)
    assert first == second
    assert first["metrics"][0]["timestamp"] == first["completed_at"]


def test_reposting_upserts_artifacts_by_path_and_keeps_their_creation_time(
    client: TestClient,
) -> None:
    doc = full_document()
    first = post(client, doc)["artifacts"]
    doc["artifacts"] = [
        {
            "artifact_type": "log",
            "artifact_path": "/results/run-full/pytest.log",
            "description": "pytest output, again",
        },
        {
            "artifact_type": "html",
            "artifact_path": "/results/run-full/report.html",
            "description": "report",
        },
    ]
    time.sleep(0.01)
    second = post(client, doc)["artifacts"]
    assert [a["artifact_path"] for a in second] == [
        "/results/run-full/pytest.log",
        "/results/run-full/report.html",
    ]
    assert second[0]["description"] == "pytest output, again"
    assert second[0]["created_at"] == first[0]["created_at"]
    assert app_table_counts(client)["test_run_artifacts"] == 2


def test_reposting_with_fewer_parts_replaces_only_what_was_sent(client: TestClient) -> None:
    post(client, full_document())
    got = post(
        client,
        {"run_id": "run-full", "model_name": "bert-base-uncased", "tags": {"only": "this"}},
    )
    assert got["tags"] == {"only": "this"}
    assert len(got["steps"]) == 3 and len(got["metrics"]) == 6 and len(got["artifacts"]) == 2
    assert got["status"] == "completed" and got["duration"] == 150.5


def test_reposting_performance_metrics_replaces_only_those_points(client: TestClient) -> None:
    post(client, full_document())
    got = post(
        client,
        {
            "run_id": "run-full",
            "model_name": "bert-base-uncased",
            "results": {"performance_metrics": {"cpu": {"latency_ms": 11.0}}},
        },
    )
    points = sorted((m["hardware"], m["name"], m["value"]) for m in got["metrics"])
    assert points == [
        ("cpu", "latency_ms", 11.0),
        ("cpu", "memory_mb", 512.0),
        ("cpu", "memory_mb", 640.0),
        ("cpu", "throughput_per_sec", 80.25),
        ("cuda", "gpu_util_pct", 93.0),
        ("cuda", "latency_ms", 2.5),
    ]


def test_record_run_generates_a_run_id_when_absent(client: TestClient) -> None:
    first = post(client, {"model_name": "gpt2"})
    second = post(client, {"model_name": "gpt2"})
    assert re.fullmatch(r"[0-9a-f]{32}", first["run_id"])
    assert first["run_id"] != second["run_id"]
    got = client.get(f"{B}/run/{first['run_id']}").json()
    assert got["model_name"] == "gpt2"
    assert got["hardware"] == ["cpu"] and got["status"] == "initializing"
    assert got["progress"] == 0.0 and got["results"] is None
    assert (got["steps"], got["metrics"], got["tags"], got["artifacts"]) == ([], [], {}, [])


def test_record_finished_run_without_start_starts_duration_before_its_end(
    client: TestClient,
) -> None:
    end = T0 + timedelta(minutes=5)
    got = post(client, {"model_name": "m", "completed_at": end.isoformat(), "duration": 60.0})
    assert got["status"] == "completed" and got["progress"] == 1.0
    assert instant(got["started_at"]) == end - timedelta(seconds=60)
    assert got["duration"] == 60.0


def test_record_run_with_batch_id_creates_and_follows_the_batch(client: TestClient) -> None:
    post(client, full_document("a"))
    running = full_document("b")
    running.update(status="running", completed_at=None, progress=0.5)
    post(client, running)
    batch = client.get(f"{B}/batch/nightly-2026-03-02").json()
    assert batch["status"] == "running"
    assert batch["counts"] == {"total": 2, "by_status": {"completed": 1, "running": 1}}
    assert [r["run_id"] for r in batch["runs"]] == ["a", "b"]


def test_large_run_is_stored_with_the_right_counts(client: TestClient) -> None:
    n = 10_000
    outcomes = ["passed", "failed", "skipped", "error", "xfailed"]
    doc = {
        "run_id": "big",
        "model_name": "llama",
        "hardware": ["cpu", "cuda"],
        "status": "completed",
        "started_at": T0.isoformat(),
        "completed_at": (T0 + timedelta(hours=1)).isoformat(),
        "results": {
            "test_details": [
                {
                    "name": f"tests/test_big.py::test_{i}",
                    "status": outcomes[i % 5],
                    "duration_ms": float(i),
                    "error": "e" if i % 5 == 3 else None,
                    "hardware": "cuda" if i % 2 else "cpu",
                }
                for i in range(n)
            ]
        },
        "metrics": [
            {
                "name": "latency_ms",
                "value": float(i % 97),
                "unit": "ms",
                "hardware": "cuda" if i % 2 else "cpu",
                "timestamp": (T0 + timedelta(milliseconds=i)).isoformat(),
            }
            for i in range(n)
        ],
    }
    started = time.monotonic()
    got = post(client, doc)
    elapsed = time.monotonic() - started
    assert (got["tests_passed"], got["tests_failed"], got["tests_skipped"]) == (2000, 4000, 4000)
    assert len(got["results"]["test_details"]) == n and len(got["metrics"]) == n
    assert got["results"]["test_details"][1234]["name"] == "tests/test_big.py::test_1234"
    assert got["metrics"][4321]["value"] == float(4321 % 97)
    assert instant(got["metrics"][4321]["timestamp"]) == T0 + timedelta(milliseconds=4321)
    counts = app_table_counts(client)
    assert counts["test_run_cases"] == n and counts["test_run_metrics"] == n
    post(client, doc)
    assert app_table_counts(client) == counts
    assert elapsed < 60, f"recording 20,000 rows took {elapsed:.1f} s"


def test_rows_counted_on_the_database_file_after_the_server_closes(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        post(client, full_document())
        post(client, full_document())
    counts = file_table_counts(settings.database_url("test_suite"))
    assert counts["test_runs"] == 1 and counts["test_run_cases"] == 6
    assert counts["test_run_metrics"] == 6 and counts["test_run_artifacts"] == 2
    assert counts["test_run_steps"] == 3 and counts["test_run_batch"] == 1


@pytest.mark.parametrize("stored", [[1, 2], "text", 7, None])
def test_get_run_survives_result_data_that_is_not_an_object(
    client: TestClient, stored: Any
) -> None:
    post(client, {"run_id": "r", "model_name": "m", "results": {"tests_passed": 2, "note": "x"}})
    with database(client).writing() as session:
        session.execute(update(RunResult).where(RunResult.run_id == "r").values(result_data=stored))
    response = client.get(f"{B}/run/r")
    assert response.status_code == 200
    results = response.json()["results"]
    assert results == {"tests_passed": 2, "tests_failed": 0, "tests_skipped": 0, "test_details": []}
